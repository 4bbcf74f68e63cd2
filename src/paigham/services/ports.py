"""What the core calls on the plug-ins (E2EE, audit, organisation), declared as Protocols so the
core never imports them: a plug-in passes an object of this shape to the core's constructors."""

from __future__ import annotations

from typing import Protocol

from paigham.types import JsonDict


class DeviceHooks(Protocol):
    """Called when devices appear or disappear, so E2EE and sync state stays consistent."""

    async def device_added(self, user_id: str, device_id: str) -> None: ...

    async def devices_removed(self, user_id: str, device_ids: list[str]) -> None: ...


class AuditLog(Protocol):
    """The audit log (the audit plug-in's `AuditService`): one hash-chained entry per recorded action."""

    async def record(
        self,
        kind: str,
        actor: str | None = None,
        target: str | None = None,
        ip: str | None = None,
        device: str | None = None,
        details: JsonDict | None = None,
    ) -> None: ...
