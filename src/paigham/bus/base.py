"""The fan-out bus: after a write commits, every process holding a /sync for an affected user or
room must wake. In one process the in-memory bus calls the notifier directly; in a cluster the NATS
bus carries the same `StreamUpdate` to every worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec


class StreamUpdate(msgspec.Struct, frozen=True):
    pos: int
    rooms: list[str] = msgspec.field(default_factory=list)
    users: list[str] = msgspec.field(default_factory=list)
    # Users whose access tokens or account changed: every worker's token cache forgets them.
    credentials: list[str] = msgspec.field(default_factory=list)


Listener = Callable[[StreamUpdate], None]


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, update: StreamUpdate) -> None: ...

    def subscribe(self, listener: Listener) -> None: ...

    def on_resume(self, hook: Callable[[], None]) -> None:
        """Call `hook` when the bus reconnects after an outage (updates may have been missed)."""

    def is_ready(self) -> bool: ...


@dataclass
class InMemoryBus:
    listeners: list[Listener] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, update: StreamUpdate) -> None:
        for listener in self.listeners:
            listener(update)

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def on_resume(self, hook: Callable[[], None]) -> None:
        return None  # in-process: never interrupted

    def is_ready(self) -> bool:
        return True
