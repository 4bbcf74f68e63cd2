"""While PostgreSQL is out of reach, requests are answered 503 with Retry-After (not 500), nothing
acknowledged is lost, and the server recovers by itself when the database is back (issue 14 #8: on
81fc255 every send during a 6 s outage got 500 M_UNKNOWN without Retry-After).

The outage is real: the server reaches PostgreSQL through a TCP relay that the test cuts (every live
connection closed, new ones refused) and then restores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from paigham.app import Server, create_app
from paigham.config import Config
from tests.api.conftest import Harness
from tests.pg import drop_database, fresh_database

V3 = "/_matrix/client/v3"
pytestmark = pytest.mark.postgres


class Relay:
    """127.0.0.1:<port> → PostgreSQL at 127.0.0.1:5432; `cut()` drops everything, `restore()` listens again."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pipes: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.pipes):
            w.transport.abort()
        self.pipes.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)
        except OSError:
            writer.transport.abort()
            return
        self.pipes |= {writer, up_writer}
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, RuntimeError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()
        self.pipes.discard(dst)


@pytest.fixture
async def relayed(tmp_path: Path) -> AsyncIterator[tuple[Harness, Relay]]:
    url = await fresh_database()
    relay = Relay()
    await relay.restore()
    config = Config(
        data_dir=str(tmp_path / "data"),
        database_url=url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}"),
        server_name="test.local",
        create_admin=False,
        encryption_by_default=False,
    )
    server = Server(config)
    app = create_app(config, server)
    await server.start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Harness(server, client), relay
    with contextlib.suppress(Exception):
        await relay.restore()
    await server.stop()
    await drop_database(url)


async def test_an_outage_is_503_with_retry_after_and_the_server_recovers(relayed: tuple[Harness, Relay]) -> None:
    hs, relay = relayed
    alice = await hs.register("alice")
    room = await hs.create_room(alice)
    before = await hs.send(alice, room, "before")

    await relay.cut()
    for i in range(5):
        r = await hs.request("PUT", f"{V3}/rooms/{room}/send/m.room.message/during-{i}", alice,
                             json={"msgtype": "m.text", "body": f"during {i}"})  # fmt: skip
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "5"
        assert r.json()["errcode"] == "M_UNKNOWN" and r.json()["retry_after_ms"] == 5000
    r = await hs.request("GET", f"{V3}/sync", alice, params={"timeout": 0})
    assert r.status_code == 503, r.text

    await relay.restore()
    deadline = asyncio.get_running_loop().time() + 5
    while True:  # the pools drop their dead connections on first use and connect again
        r = await hs.request("PUT", f"{V3}/rooms/{room}/send/m.room.message/during-0", alice,
                             json={"msgtype": "m.text", "body": "during 0"})  # fmt: skip
        if r.status_code == 200 or asyncio.get_running_loop().time() > deadline:
            break
        assert r.status_code == 503, r.text
    assert r.status_code == 200, r.text
    after = await hs.send(alice, room, "after")
    timeline = (await hs.sync(alice))["rooms"]["join"][room]["timeline"]["events"]
    ids = [e["event_id"] for e in timeline]
    assert before in ids and after in ids and r.json()["event_id"] in ids
    bodies = [e["content"].get("body") for e in timeline if e["type"] == "m.room.message"]
    assert bodies.count("during 0") == 1 and "during 1" not in bodies  # only what was acknowledged
