"""NATS fan-out between worker processes (core NATS publish/subscribe: wake-ups are hints, the
database stays the source of truth, so a lost message only delays a sync until its timeout)."""

from __future__ import annotations

from typing import Any

import msgspec
import nats
import structlog

from paigham.bus.base import Listener, StreamUpdate

log = structlog.get_logger(__name__)
SUBJECT = "paigham.stream"


class NatsBus:
    def __init__(self, url: str, subject: str = SUBJECT) -> None:
        self.url = url
        self.subject = subject
        self.listeners: list[Listener] = []
        self._nc: Any = None
        self._decoder = msgspec.msgpack.Decoder(StreamUpdate)

    async def start(self) -> None:
        self._nc = await nats.connect(self.url, max_reconnect_attempts=-1, name="paigham")
        await self._nc.subscribe(self.subject, cb=self._on_message)

    async def stop(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    async def _on_message(self, msg: Any) -> None:
        try:
            update = self._decoder.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("bus.bad_message")
            return
        for listener in self.listeners:
            listener(update)

    async def publish(self, update: StreamUpdate) -> None:
        await self._nc.publish(self.subject, msgspec.msgpack.encode(update))

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)
