"""Services called directly, without HTTP: a whole server (real storage on both engines, real
services) whose services the tests call as the handlers would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from paigham.app import Server
from paigham.config import Config
from paigham.errors import MatrixError
from paigham.services.rooms import CreateRoomRequest


@pytest.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    config = Config(
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        server_name="test.local",
        create_admin=False,
        encryption_by_default=False,
    )
    srv = Server(config)
    await srv.start()
    yield srv
    await srv.stop()


async def make_user(server: Server, name: str, *, admin: bool = False) -> str:
    return await server.auth.create_user(name, "secret-pass", admin=admin)


async def make_room(server: Server, creator: str, **fields: object) -> str:
    return await server.rooms.create_room(CreateRoomRequest(creator=creator, **fields))  # type: ignore[arg-type]


async def refused(status: int, errcode: str, call: Awaitable[object]) -> MatrixError:
    """Awaits `call`, which must fail with this Matrix error."""
    with pytest.raises(MatrixError) as err:
        await call
    assert (err.value.status, err.value.errcode) == (status, errcode)
    return err.value
