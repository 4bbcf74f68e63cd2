"""What the core calls on the plug-ins (E2EE, audit, organisation), declared as Protocols so the
core never imports them: a plug-in passes an object of this shape to the core's constructors."""

from __future__ import annotations

from typing import Protocol


class DeviceHooks(Protocol):
    """Called when devices appear or disappear, so E2EE and sync state stays consistent."""

    async def device_added(self, user_id: str, device_id: str) -> None: ...

    async def devices_removed(self, user_id: str, device_ids: list[str]) -> None: ...
