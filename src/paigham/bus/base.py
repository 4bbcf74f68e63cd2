"""The fan-out bus: after a write commits, every process holding a /sync for an affected user or
room must wake. In one process the in-memory bus calls the notifier directly; in a cluster the NATS
bus carries the same `StreamUpdate` to every worker."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec


class StreamUpdate(msgspec.Struct, frozen=True):
    pos: int
    rooms: list[str] = msgspec.field(default_factory=list)
    users: list[str] = msgspec.field(default_factory=list)
    # Users whose access tokens or account changed: every worker's token cache forgets them.
    credentials: list[str] = msgspec.field(default_factory=list)
    # Rooms of `rooms` whose news here is only membership changes (a big room's may be held: see
    # sync/notifier.py).
    member_only: list[str] = msgspec.field(default_factory=list)


Listener = Callable[[StreamUpdate], None]


class Bus(Protocol):
    """Built with its listeners (called with every update, this worker's own included) and, for a bus
    that can be interrupted, the hooks to call when it reconnects after an outage (updates may have
    been missed)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, update: StreamUpdate) -> None: ...

    def is_ready(self) -> bool: ...


@dataclass(frozen=True)
class InMemoryBus:
    listeners: Sequence[Listener] = ()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, update: StreamUpdate) -> None:
        for listener in self.listeners:
            listener(update)

    def is_ready(self) -> bool:
        return True  # in-process: never interrupted
