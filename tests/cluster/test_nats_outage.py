"""NATS going down and coming back under a 2-worker cluster (issue 14, "Also"): while the bus is away
every send still succeeds and no message is lost (the database is the truth: a /sync on the other
worker gets them, at the latest when its timeout ends), `/ready` says clearly that the bus is down,
and once NATS is back the workers reconnect by themselves and wake each other again. NATS here is a
private `nats-server` on its own port, so the machine's NATS is left alone."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.cluster_support import (
    Client,
    Cluster,
    drop_database,
    free_port,
    require_services,
    start_cluster,
    timeline_of,
)

pytestmark = pytest.mark.postgres
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class PrivateNats:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.workdir / "nats.log", "ab")  # noqa: SIM115 - the server's own log, kept open with it
        self.proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def private_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateNats]:
    require_services()
    nats = PrivateNats(tmp_path_factory.mktemp("nats"))
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()


@pytest.fixture(scope="module")
def cluster(private_nats: PrivateNats, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = asyncio.run(start_cluster(tmp_path_factory.mktemp("outage"), 2, nats_url=private_nats.url))
    try:
        yield c
    finally:
        c.stop_all()
        asyncio.run(drop_database(c.database))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def ready(http: httpx.AsyncClient, cluster: Cluster) -> list[int]:
    return [(await http.get(w.url + "/ready")).status_code for w in cluster.workers]


async def wake_time(alice: Client, bob: Client, room_id: str, since: str, body: str) -> tuple[float, str]:
    """Seconds from alice's send (worker 0) to bob's long-poll on worker 1 returning it."""
    waiting = asyncio.create_task(bob.sync(since, timeout_ms=20_000))
    await asyncio.sleep(0.3)  # bob is parked
    t0 = time.monotonic()
    event_id = await alice.send(room_id, body)
    got = await asyncio.wait_for(waiting, 25)
    assert event_id in [e["event_id"] for e in timeline_of(got, room_id)]
    return time.monotonic() - t0, str(got["next_batch"])


async def test_a_nats_outage_loses_nothing_and_heals_itself(
    private_nats: PrivateNats, cluster: Cluster, http: httpx.AsyncClient
) -> None:
    urls = [w.url for w in cluster.workers]
    alice, bob = Client(http, urls, home=0), Client(http, urls, home=1)
    await alice.register(cluster.secret, "alice")
    await bob.register(cluster.secret, "bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    since = (await bob.sync())["next_batch"]
    took, since = await wake_time(alice, bob, room_id, since, "before")
    assert took < 2.0  # woken over the bus

    private_nats.stop()
    deadline = time.monotonic() + 10
    while await ready(http, cluster) != [503, 503]:  # each worker says its bus is away
        assert time.monotonic() < deadline, "the workers never noticed the bus was gone"
        await asyncio.sleep(0.2)
    sent = [await alice.send(room_id, f"during {i}") for i in range(5)]  # every send is acknowledged
    got = await bob.sync(since, timeout_ms=1_000)  # worker 1 was not told, but the database has them
    assert [e["event_id"] for e in timeline_of(got, room_id)] == sent
    since = got["next_batch"]

    private_nats.start()
    deadline = time.monotonic() + 30
    while await ready(http, cluster) != [200, 200]:  # they reconnect by themselves
        assert time.monotonic() < deadline, "the workers did not reconnect to NATS"
        await asyncio.sleep(0.2)
    took, _ = await wake_time(alice, bob, room_id, since, "after")
    assert took < 2.0  # woken over the bus again
