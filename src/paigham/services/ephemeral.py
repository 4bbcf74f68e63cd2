"""Receipts, read markers, typing and account data (incl. tags): everything a client writes
besides room events."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from paigham.bus.base import StreamUpdate
from paigham.clock import now_ms
from paigham.errors import Codes, MatrixError
from paigham.services.publisher import Publisher
from paigham.storage.account_data import AccountDataStore
from paigham.storage.events import EventStore
from paigham.storage.receipts import Receipt, ReceiptStore
from paigham.storage.typing_notices import TypingStore

RECEIPT_TYPES = ("m.read", "m.read.private", "m.fully_read")
MAX_TYPING_MS = 120_000
# Account data the server manages itself; clients must use the dedicated endpoints.
SERVER_MANAGED = ("m.fully_read", "m.push_rules")
MAX_ACCOUNT_DATA_BYTES = 65536


class EphemeralService:
    def __init__(
        self,
        events: EventStore,
        receipts: ReceiptStore,
        typing: TypingStore,
        account_data: AccountDataStore,
        publisher: Publisher,
    ) -> None:
        self.events = events
        self.receipts = receipts
        self.typing_store = typing
        self.account_data_store = account_data
        self.publisher = publisher
        self._expiry_task: asyncio.Task[None] | None = None

    async def _joined(self, user_id: str, room_id: str) -> None:
        m = await self.events.membership(user_id, room_id)
        if m is None or m[0] != "join":
            if await self.events.get_room(room_id) is None:
                raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
            raise MatrixError(403, Codes.FORBIDDEN, "You are not joined to this room")

    # -- receipts -------------------------------------------------------------------------------
    async def receipt(
        self, user_id: str, room_id: str, receipt_type: str, event_id: str, thread_id: str | None
    ) -> None:
        if receipt_type not in RECEIPT_TYPES:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown receipt type {receipt_type!r}")
        await self._joined(user_id, room_id)
        ev = await self.events.get_event(event_id)
        if ev is None or ev.room_id != room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown event")
        if receipt_type == "m.fully_read":
            if thread_id is not None:
                raise MatrixError(400, Codes.INVALID_PARAM, "m.fully_read cannot be threaded")
            await self.account_data(user_id, room_id, "m.fully_read", {"event_id": event_id}, internal=True)
            return
        pos = await self.receipts.put(
            Receipt(room_id, user_id, receipt_type, thread_id or "", event_id, ev.stream, now_ms(), 0)
        )
        if pos:
            await self.publisher.publish(StreamUpdate(pos, rooms=[room_id], users=[user_id]))

    # -- typing ---------------------------------------------------------------------------------
    async def typing(self, user_id: str, room_id: str, typing: bool, timeout_ms: int | None) -> None:
        await self._joined(user_id, room_id)
        timeout = min(max(timeout_ms or 30_000, 0), MAX_TYPING_MS)
        pos = await self.typing_store.put(room_id, user_id, now_ms() + timeout if typing else None)
        await self.publisher.publish(StreamUpdate(pos, rooms=[room_id]))
        self._ensure_expiry()

    def _ensure_expiry(self) -> None:
        if self._expiry_task is None or self._expiry_task.done():
            self._expiry_task = asyncio.create_task(self._expire_loop())

    async def _expire_loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(1.0)
                pos, rooms = await self.typing_store.expire(now_ms())
                if rooms:
                    await self.publisher.publish(StreamUpdate(pos, rooms=rooms))
                elif not await self.typing_store.anyone_typing():
                    return

    async def stop(self) -> None:
        if self._expiry_task is not None:
            self._expiry_task.cancel()

    # -- account data ---------------------------------------------------------------------------
    async def account_data(
        self, user_id: str, room_id: str, type_: str, content: dict[str, Any], *, internal: bool = False
    ) -> None:
        if not internal and type_ in SERVER_MANAGED:
            raise MatrixError(405, Codes.BAD_JSON, f"Cannot set {type_} through this API")
        if not type_ or len(type_.encode()) > 255:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid account data type")
        if len(msgspec.json.encode(content)) > MAX_ACCOUNT_DATA_BYTES:
            raise MatrixError(413, Codes.TOO_LARGE, "Account data is too large")
        pos = await self.account_data_store.put(user_id, room_id, type_, content)
        await self.publisher.publish(StreamUpdate(pos, users=[user_id]))

    async def get_account_data(self, user_id: str, room_id: str, type_: str) -> dict[str, Any]:
        found = await self.account_data_store.get(user_id, room_id, type_)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Account data not found")
        return found
