"""What the core calls on the plug-ins (E2EE, audit, organisation), declared as Protocols so the
core never imports them: a plug-in passes an object of this shape to the core's constructors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from paigham.types import JsonDict


class DeviceHooks(Protocol):
    """Called when devices appear or disappear, so E2EE and sync state stays consistent."""

    async def device_added(self, user_id: str, device_id: str) -> None: ...

    async def devices_removed(self, user_id: str, device_ids: list[str]) -> None: ...


class AccountPolicy(Protocol):
    """Per-user limits AuthService applies (the organisation's policies, paigham.org.enforce)."""

    async def check_expiry(self, user_id: str) -> None:
        """On every authenticated request: raise if the account has expired."""

    async def check_devices(self, user_id: str, device_id: str) -> None:
        """Before a new device signs in: raise if the user has as many devices as allowed."""

    async def token_lifetime_s(self, user_id: str) -> int:
        """How long the user's new access tokens live (0: for ever)."""


@dataclass(frozen=True, slots=True)
class AccountHooks:
    """What AuthService calls beyond its own store, given to its constructor (each in this order)."""

    # Devices appear or disappear (E2EE device lists, the audit log).
    devices: Sequence[DeviceHooks] = ()
    # An account was deactivated: leave its rooms, drop its keys, mark it in the directory.
    deactivated: Sequence[Callable[[str], Awaitable[None]]] = ()
    # Account expiry, device limit and token lifetime; None: no limits, the configured lifetime.
    policy: AccountPolicy | None = None


class AuditLog(Protocol):
    """The tamper-evident audit log (paigham.audit) as the core records into it."""

    async def record(
        self,
        kind: str,
        actor: str | None = None,
        target: str | None = None,
        ip: str | None = None,
        device: str | None = None,
        details: JsonDict | None = None,
    ) -> None: ...
