"""Push delivery on a two-worker cluster (PostgreSQL + NATS, real `paigham serve` processes): every
(notification, pusher) reaches the gateway exactly once, whichever worker took the message — the
workers claim pushers with leases (`FOR UPDATE SKIP LOCKED`), both are woken by the bus, and a
gateway failure in the middle is retried by whoever holds the pusher next."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.cluster.cluster_support import (
    Client,
    Cluster,
    Worker,
    create_database,
    drop_database,
    free_port,
    metric,
    require_services,
    wait_ready,
)
from tests.push.support import NtfyGateway

pytestmark = pytest.mark.postgres


class PushCluster(Cluster):
    gateway_url: str = ""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PAIGHAM_PUSH_GATEWAY_ALLOWLIST"] = self.gateway_url
        env["PAIGHAM_IP_RANGE_WHITELIST"] = "127.0.0.0/8"
        return env


@pytest.fixture
async def gateway() -> AsyncIterator[NtfyGateway]:
    gw = NtfyGateway()
    await gw.start()
    yield gw
    await gw.stop()


async def test_each_notification_reaches_the_gateway_exactly_once(tmp_path: Path, gateway: NtfyGateway) -> None:
    require_services()
    import secrets

    cluster = PushCluster(tmp_path / "data", await create_database(), secrets.token_urlsafe(16))
    cluster.gateway_url = gateway.url
    cluster.data_dir.mkdir(parents=True)
    cluster.workers = [Worker(i, free_port()) for i in range(2)]
    for w in cluster.workers:
        cluster.start(w)
    try:
        await asyncio.gather(*(wait_ready(w.url, w.proc) for w in cluster.workers))
        async with httpx.AsyncClient() as http:
            urls = [w.url for w in cluster.workers]
            people = [Client(http, urls, home=i % 2) for i in range(9)]
            await asyncio.gather(*(c.register(cluster.secret, f"push{i}") for i, c in enumerate(people)))
            alice, readers = people[0], people[1:]
            room = await alice.create_room()
            for r in readers:
                await r.join(room)
            conn = await asyncpg.connect(cluster.database_url)
            try:
                pos = await conn.fetchval("SELECT pos FROM stream_counter WHERE id = 1")
                for i, r in enumerate(readers):
                    await conn.execute(
                        "INSERT INTO pushers (user_id, kind, app_id, pushkey, pushkey_ts, app_display_name, "
                        "device_display_name, lang, data, last_stream) VALUES ($1, 'http', 'im.vector.app.android', "
                        "$2, $3, 'Element X', 'Phone', 'en', $4, $5)",
                        r.user_id,
                        gateway.topic(f"up{i:04d}"),
                        int(time.time() * 1000),
                        json.dumps({"url": gateway.url, "format": "event_id_only"}),
                        pos,
                    )
            finally:
                await conn.close()
            # A worker that found no pusher at all looks at the table again at most once a second
            # (push_delivery.PushDelivery._any_pushers): past that, the first message makes both look.
            await asyncio.sleep(1.2)
            sent: list[str] = []

            async def wave(count: int) -> None:
                """`count` more messages, through both workers; then wait for every push owed so far."""
                for _ in range(count):
                    i = len(sent)
                    alice.home = i % 2  # the messages go through both workers
                    if i == 10:
                        gateway.fail_next = [503] * 5  # some pushers retry, on whichever worker claims them
                    sent.append(await alice.send(room, f"message {i}"))
                owed = len(sent) * len(readers)
                deadline = time.monotonic() + 60
                while len(gateway.accepted) < owed and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2.0)  # anything sent twice would arrive by now

            def check_exactly_once() -> None:
                want = {(e, gateway.topic(f"up{i:04d}")) for e in sent for i in range(len(readers))}
                got = Counter((n["event_id"], n["devices"][0]["pushkey"]) for n in gateway.accepted)
                assert set(got) == want, f"missing {len(want - set(got))}"
                assert max(got.values()) == 1, [k for k, v in got.items() if v > 1][:5]

            await wave(30)
            check_exactly_once()
            # Both workers deliver (the claims spread), and the counts add up to exactly the pushes. Which
            # worker claims a notification is a race: a few more waves if one has not claimed any yet.
            per_worker = [await metric(http, w.url, "paigham_push_sent_total") for w in cluster.workers]
            for _ in range(5):
                if min(per_worker) > 0:
                    break
                await wave(10)
                check_exactly_once()
                per_worker = [await metric(http, w.url, "paigham_push_sent_total") for w in cluster.workers]
            print(f"pushes accepted per worker: {per_worker}")
            assert sum(per_worker) == len(gateway.accepted) and min(per_worker) > 0
            # Per pusher, in stream order.
            for i in range(len(readers)):
                key = gateway.topic(f"up{i:04d}")
                assert [n["event_id"] for n in gateway.accepted if n["devices"][0]["pushkey"] == key] == sent
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop_all()
        await drop_database(cluster.database)
