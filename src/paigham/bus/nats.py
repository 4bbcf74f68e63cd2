"""NATS fan-out between worker processes (core NATS publish/subscribe: wake-ups are hints, the
database stays the source of truth, so a lost message only delays a sync until its timeout)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import nats
import structlog

from paigham.bus.base import Listener, StreamUpdate

log = structlog.get_logger(__name__)
SUBJECT = "paigham.stream"


class NatsBus:
    def __init__(
        self,
        url: str,
        *,
        listeners: Sequence[Listener] = (),
        on_resume: Sequence[Callable[[], None]] = (),
        subject: str = SUBJECT,
    ) -> None:
        self.url = url
        self.subject = subject
        self.listeners = tuple(listeners)
        # Called when the connection comes back after an outage (updates may have been missed).
        self.resume_hooks = tuple(on_resume)
        self._nc: Any = None
        self._stopping = False
        self._decoder = msgspec.msgpack.Decoder(StreamUpdate)

    async def start(self) -> None:
        self._nc = await nats.connect(
            self.url,
            max_reconnect_attempts=-1,
            name="paigham",
            no_echo=True,
            reconnected_cb=self._reconnected,
            disconnected_cb=self._disconnected,
        )
        await self._nc.subscribe(self.subject, cb=self._on_message)

    async def stop(self) -> None:
        if self._nc is not None:
            self._stopping = True
            await self._nc.drain()
            self._nc = None

    async def _disconnected(self) -> None:
        if not self._stopping:
            log.warning("bus.disconnected", url=self.url)

    async def _reconnected(self) -> None:
        # Updates published while we were away are lost: wake every waiter so it looks again.
        log.info("bus.reconnected", url=self.url)
        for hook in self.resume_hooks:
            hook()

    def is_ready(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    async def _on_message(self, msg: Any) -> None:
        try:
            update = self._decoder.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("bus.bad_message")
            return
        for listener in self.listeners:
            listener(update)

    async def publish(self, update: StreamUpdate) -> None:
        # This worker's waiters are woken directly (the connection does not echo its own messages).
        for listener in self.listeners:
            listener(update)
        try:
            await self._nc.publish(self.subject, msgspec.msgpack.encode(update))
        except Exception as exc:
            log.warning("bus.publish_failed", error=str(exc))
