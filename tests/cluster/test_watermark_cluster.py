"""Early lock release on a 2-worker cluster (storage/watermark.py): writers in different rooms share
only the stream counter, whose commits no longer wait for the WAL flush with its row held.

- a message acknowledged by one worker is in a /sync served by the other at once;
- incremental /syncs on both workers, while writers on both write into four rooms, get every
  message exactly once, each inside the range (since, next_batch] of the response that carries it:
  no event is delivered below a token already handed out (none skipped by committing late).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.cluster.cluster_support import (
    Client,
    drop_database,
    pg_url,
    require_services,
    start_cluster,
    timeline_of,
)

pytestmark = pytest.mark.postgres

ROOMS, WRITERS_PER_WORKER, PER_WRITER = 4, 2, 15


def position(token: str) -> int:
    found = re.match(r"s(\d+)", token)
    assert found, token
    return int(found.group(1))


async def streams(database: str, event_ids: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(pg_url(database), timeout=5)
    try:
        rows = await conn.fetch("SELECT event_id, stream FROM events WHERE event_id = ANY($1::text[])", event_ids)
    finally:
        await conn.close()
    return {r["event_id"]: r["stream"] for r in rows}


async def test_acknowledged_writes_are_read_through_the_other_worker_in_order(tmp_path: Path) -> None:
    require_services()
    cluster = await start_cluster(tmp_path, 2)
    try:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as http:
            urls = [w.url for w in cluster.workers]
            writers = [Client(http, urls, home=i % 2) for i in range(2 * WRITERS_PER_WORKER)]
            readers = [Client(http, urls, home=i) for i in range(2)]
            everyone = writers + readers
            await asyncio.gather(*(c.register(cluster.secret, f"wm{i}") for i, c in enumerate(everyone)))
            rooms = [await writers[0].create_room() for _ in range(ROOMS)]
            for c in everyone[1:]:
                await asyncio.gather(*(c.join(r) for r in rooms))
            total = len(writers) * PER_WRITER
            starts = await asyncio.gather(*(r.sync() for r in readers))

            async def read(reader: Client, since: str) -> list[tuple[int, int, list[str]]]:
                """(since, next_batch, event IDs) of each incremental sync until every message came."""
                out: list[tuple[int, int, list[str]]] = []
                got = 0
                deadline = time.monotonic() + 90
                while got < total:
                    assert time.monotonic() < deadline, f"reader on worker {reader.home} got {got} of {total}"
                    body = await reader.sync(since, timeout_ms=5_000)
                    ids = [
                        e["event_id"]
                        for r in rooms
                        for e in timeline_of(body, r)
                        if e["type"] == "m.room.message" and e["sender"] != reader.user_id
                    ]
                    out.append((position(since), position(body["next_batch"]), ids))
                    got += len(ids)
                    since = body["next_batch"]
                return out

            async def write(i: int, w: Client) -> list[str]:
                other = readers[1 - w.home]  # the reader on the other worker
                sent = []
                for n in range(PER_WRITER):
                    before = (await other.sync())["next_batch"]
                    event_id = await w.send(rooms[(i + n) % ROOMS], f"{i}:{n}")
                    body = await other.sync(before)  # timeout 0: no waiting for a wake-up
                    seen = {e["event_id"] for r in rooms for e in timeline_of(body, r)}
                    assert event_id in seen, "an acknowledged message is not yet readable on the other worker"
                    sent.append(event_id)
                return sent

            reading = [asyncio.create_task(read(r, s["next_batch"])) for r, s in zip(readers, starts, strict=True)]
            acked = [e for sent in await asyncio.gather(*(write(i, w) for i, w in enumerate(writers))) for e in sent]
            results = await asyncio.gather(*reading)

            at = await streams(cluster.database, acked)
            assert len(at) == total
            for syncs in results:
                got = [e for _, _, ids in syncs for e in ids]
                assert sorted(got) == sorted(acked), "a message missing or twice in a worker's incremental syncs"
                for since, upto, ids in syncs:
                    assert since <= upto
                    for e in ids:
                        assert since < at[e] <= upto, f"{e} at {at[e]} delivered in ({since}, {upto}]"
    finally:
        cluster.stop_all()
        await drop_database(cluster.database)
