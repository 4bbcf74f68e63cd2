"""An in-process Paigham (real storage, real services, real HTTP stack via ASGI) and helpers."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from paigham.app import Server, create_app
from paigham.config import Config

_RECORD = Path(__file__).resolve().parents[2] / "build" / f"requests-{os.getpid()}.jsonl"


def record_request(method: str, path: str) -> None:
    """Note which test exercised which endpoint, for docs/api-coverage.md."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    _RECORD.parent.mkdir(exist_ok=True)
    with open(_RECORD, "a", encoding="utf-8") as fh:
        fh.write(
            json.dumps({"method": method, "path": urllib.parse.unquote(path.split("?")[0]), "test": test.split("[")[0]})
            + "\n"
        )


@dataclass
class User:
    user_id: str
    token: str
    device_id: str
    password: str


@dataclass
class Harness:
    server: Server
    http: httpx.AsyncClient
    users: list[User] = field(default_factory=list)

    async def request(self, method: str, path: str, user: User | None = None, **kw: Any) -> httpx.Response:
        record_request(method, path)
        headers = kw.pop("headers", {})
        if user is not None:
            headers["Authorization"] = f"Bearer {user.token}"
        return await self.http.request(method, path, headers=headers, **kw)

    async def ok(self, method: str, path: str, user: User | None = None, **kw: Any) -> Any:
        r = await self.request(method, path, user, **kw)
        assert r.status_code == 200, f"{method} {path} -> {r.status_code} {r.text}"
        return r.json()

    async def err(
        self, status: int, errcode: str, method: str, path: str, user: User | None = None, **kw: Any
    ) -> dict[str, Any]:
        r = await self.request(method, path, user, **kw)
        assert r.status_code == status, f"{method} {path} -> {r.status_code} {r.text}"
        body = r.json()
        assert body.get("errcode") == errcode, body
        assert isinstance(body.get("error"), str)
        return body  # type: ignore[no-any-return]

    async def register(self, name: str, password: str = "secret-pass") -> User:
        srv = self.server
        user_id = await srv.auth.create_user(name, password)
        session = await srv.auth.start_session(user_id, None, None)
        u = User(user_id, session.access_token, session.device_id, password)
        self.users.append(u)
        return u

    async def create_room(self, user: User, **body: Any) -> str:
        return str((await self.ok("POST", "/_matrix/client/v3/createRoom", user, json=body))["room_id"])

    async def send(self, user: User, room_id: str, body: str, txn: str | None = None) -> str:
        import uuid

        txn = txn or uuid.uuid4().hex
        res = await self.ok(
            "PUT",
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
            user,
            json={"msgtype": "m.text", "body": body},
        )
        return str(res["event_id"])

    async def sync(self, user: User, since: str | None = None, timeout: int = 0, **params: Any) -> Any:
        q: dict[str, Any] = {"timeout": timeout, **params}
        if since:
            q["since"] = since
        return await self.ok("GET", "/_matrix/client/v3/sync", user, params=q)


@asynccontextmanager
async def serve(database_url: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Harness]:
    """An in-process server with the test defaults and `settings` (e.g. push_gateway_allowlist)."""
    config = Config(
        **{
            "data_dir": str(tmp_path / "data"),
            "database_url": database_url,
            "server_name": "test.local",
            "create_admin": False,
            "encryption_by_default": False,
            **settings,
        }
    )
    server = Server(config)
    app = create_app(config, server)
    await server.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Harness(server, client)
    await server.stop()


@pytest.fixture
async def hs(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with serve(database_url, tmp_path) as h:
        yield h
