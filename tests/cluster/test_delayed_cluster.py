"""Delayed events on a two-worker cluster (PostgreSQL + NATS, real `paigham serve` processes): each
fires exactly once, whichever worker scheduled it — the workers claim due rows with leases
(`FOR UPDATE SKIP LOCKED`) — and the events a killed worker scheduled are fired by the other."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from tests.cluster.cluster_support import Client, drop_database, metric, require_services, start_cluster

pytestmark = pytest.mark.postgres

DELAY = "org.matrix.msc4140.delay"


async def schedule(client: Client, room: str, body: str, delay: int) -> str:
    out = await client.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{secrets.token_hex(8)}",
        json_body={"msgtype": "m.text", "body": body},
        params={DELAY: delay},
    )
    return str(out["delay_id"])


async def fired_bodies(client: Client, room: str, worker: int) -> Counter[str]:
    events = await client.history(room, worker)
    return Counter(e["content"]["body"] for e in events if e["type"] == "m.room.message")


async def test_delayed_events_fire_exactly_once_across_two_workers(tmp_path: Path) -> None:
    require_services()
    cluster = await start_cluster(tmp_path, 2)
    try:
        async with httpx.AsyncClient() as http:
            urls = [w.url for w in cluster.workers]
            people = [Client(http, urls, home=i % 2) for i in range(4)]
            await asyncio.gather(*(c.register(cluster.secret, f"delay{i}") for i, c in enumerate(people)))
            room = await people[0].create_room()
            for p in people[1:]:
                await p.join(room)
            want: list[str] = []
            for i in range(60):  # through both workers, due within ~1.5 s of each other
                p = people[i % 4]
                p.home = i % 2
                want.append(f"delayed {i}")
                await schedule(p, room, want[-1], 1500 + (i % 7) * 100)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got = await fired_bodies(people[0], room, 0)
                if all(got[b] for b in want):
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(2.0)  # anything sent twice would be there by now
            for worker in (0, 1):
                got = await fired_bodies(people[0], room, worker)
                assert {b: got[b] for b in want} == dict.fromkeys(want, 1)
            per_worker = [await metric(http, u, "paigham_delayed_events_sent_total") for u in urls]
            print(f"delayed events sent per worker: {per_worker}")
            assert sum(per_worker) == len(want)
            conn = await asyncpg.connect(cluster.database_url)
            try:
                rows = await conn.fetch("SELECT state, event_id FROM delayed_events")
            finally:
                await conn.close()
            assert len(rows) == len(want) and {r["state"] for r in rows} == {"sent"}
            assert len({r["event_id"] for r in rows}) == len(want)
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop_all()
        await drop_database(cluster.database)


async def test_a_killed_workers_delayed_events_fire_on_the_other(tmp_path: Path) -> None:
    """Element Call's case: the process that took the "hangup" dies; the survivor still sends it."""
    require_services()
    cluster = await start_cluster(tmp_path, 2)
    try:
        async with httpx.AsyncClient() as http:
            urls = [w.url for w in cluster.workers]
            alice = Client(http, urls, home=0)
            await alice.register(cluster.secret, "caller")
            room = await alice.create_room()
            want = [f"hangup {i}" for i in range(5)]
            for body in want:
                await schedule(alice, room, body, 2000)
            cluster.kill(cluster.workers[0])
            alice.home = 1
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = await fired_bodies(alice, room, 1)
                if all(got[b] for b in want):
                    break
                await asyncio.sleep(0.25)
            assert {b: got[b] for b in want} == dict.fromkeys(want, 1)
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop_all()
        await drop_database(cluster.database)
