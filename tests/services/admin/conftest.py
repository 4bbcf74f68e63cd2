"""A started Paigham without HTTP (real storage on both engines) for the admin services' own tests, and
in-memory fakes of what the plug-ins hand them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest

from paigham.app import Server
from paigham.config import Config
from paigham.errors import MatrixError
from paigham.services.admin import Actor
from paigham.types import JsonDict

ADMIN = Actor("@boss:test.local", "192.0.2.7", "BOSSDEVICE")


class Recorded(NamedTuple):
    kind: str
    actor: str | None
    target: str | None
    ip: str | None
    device: str | None
    details: JsonDict | None


@dataclass
class FakeAudit:
    """An AuditLog that keeps the entries in a list."""

    entries: list[Recorded] = field(default_factory=list)

    async def record(
        self,
        kind: str,
        actor: str | None = None,
        target: str | None = None,
        ip: str | None = None,
        device: str | None = None,
        details: JsonDict | None = None,
    ) -> None:
        self.entries.append(Recorded(kind, actor, target, ip, device, details))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.entries]


async def refused(status: int, call: Awaitable[object]) -> str:
    """Awaits `call`, which must fail with this HTTP status; returns the error text."""
    with pytest.raises(MatrixError) as err:
        await call
    assert err.value.status == status
    return err.value.error


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
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
def audit() -> FakeAudit:
    return FakeAudit()
