"""In-memory fakes of what the plug-ins hand the admin services (the started server without HTTP is
tests/services/conftest.py's `server`)."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import NamedTuple

import pytest

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
def audit() -> FakeAudit:
    return FakeAudit()
