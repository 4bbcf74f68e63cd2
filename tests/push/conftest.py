"""An in-process Paigham for push delivery tests, which a test can stop and start again on the same
database (a restart mid-retry), configured for gateway stand-ins on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from paigham.app import Server, create_app
from paigham.config import Config
from tests.api.conftest import Harness
from tests.push.support import NtfyGateway, SygnalGateway


class PushEnv:
    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.hs: Harness | None = None
        self._client: httpx.AsyncClient | None = None

    async def start(self, allow: list[str], **overrides: Any) -> Harness:
        settings: dict[str, Any] = {
            "data_dir": str(self.tmp_path / "data"),
            "database_url": self.database_url,
            "server_name": "test.local",
            "create_admin": False,
            "encryption_by_default": False,
            "push_gateway_allowlist": allow,
            "ip_range_whitelist": ["127.0.0.0/8"],
            "push_request_timeout_s": 2.0,
            **overrides,
        }
        server = Server(Config(**settings))
        app = create_app(server.config, server)
        await server.start()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        users = self.hs.users if self.hs is not None else []
        self.hs = Harness(server, self._client, users)
        return self.hs

    async def stop(self) -> None:
        if self.hs is not None and self._client is not None:
            await self._client.aclose()
            await self.hs.server.stop()
            self._client = None


@pytest.fixture
async def env(database_url: str, tmp_path: Path) -> AsyncIterator[PushEnv]:
    e = PushEnv(database_url, tmp_path)
    yield e
    await e.stop()


@pytest.fixture
async def ntfy() -> AsyncIterator[NtfyGateway]:
    gw = NtfyGateway()
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
async def sygnal() -> AsyncIterator[SygnalGateway]:
    gw = SygnalGateway({"io.element.elementx.ios.prod"})
    await gw.start()
    yield gw
    await gw.stop()
