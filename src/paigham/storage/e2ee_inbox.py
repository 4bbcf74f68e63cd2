"""The to-device inbox: messages wait per device, in arrival order, until the device has synced past
them; a transaction ID makes a send idempotent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.clock import now_ms
from paigham.domain.canonical_json import encode_str
from paigham.storage.database import Database
from paigham.storage.dialect import insert_ignore, upsert
from paigham.storage.e2ee_schema import e2e_device_inbox as inbox
from paigham.storage.e2ee_schema import e2e_device_inbox_partial as partial
from paigham.storage.schema import devices, event_txns

_decode = msgspec.json.decode
TXN_SCOPE = "to_device"


@dataclass(frozen=True, slots=True)
class ToDeviceMessage:
    stream: int
    sender: str
    type: str
    content: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"sender": self.sender, "type": self.type, "content": self.content}


@dataclass(frozen=True, slots=True)
class Enqueued:
    position: int  # 0 when nothing was queued
    users: list[str]  # whose devices received something


class InboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(self, sender: str, sender_device: str, txn_id: str, type_: str,
                      messages: Mapping[str, Mapping[str, dict[str, Any]]]) -> Enqueued | None:
        """Queue one message per target device (`*` = every device of the user); None when this
        transaction ID was already used by the sending device."""
        async with self.db.write() as conn:
            txn = {"user_id": sender, "device_id": sender_device, "scope": TXN_SCOPE, "txn_id": txn_id,
                   "result": "", "created_ts": now_ms()}
            done = await conn.execute(insert_ignore(self.db.is_sqlite, event_txns, txn,
                                                    ["user_id", "device_id", "scope", "txn_id"]))
            if done.rowcount == 0:
                return None
            targets = await self._targets(conn, messages)
            if not targets:
                return Enqueued(0, [])
            pos = await self.db.next_position(conn)
            await conn.execute(inbox.insert(), [
                {"user_id": u, "device_id": d, "stream": pos, "sender": sender, "type": type_,
                 "content": encode_str(content)} for (u, d), content in sorted(targets.items())
            ])
        return Enqueued(pos, sorted({u for u, _ in targets}))

    @staticmethod
    async def _targets(conn: AsyncConnection, messages: Mapping[str, Mapping[str, dict[str, Any]]]
                       ) -> dict[tuple[str, str], dict[str, Any]]:
        """(user, device) → content for existing devices; a named device overrides `*`."""
        if not messages:
            return {}
        q = select(devices.c.user_id, devices.c.device_id).where(devices.c.user_id.in_(sorted(messages)))
        known: dict[str, set[str]] = {}
        for r in (await conn.execute(q)).all():
            known.setdefault(r.user_id, set()).add(r.device_id)
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for user_id, by_device in messages.items():
            mine = known.get(user_id, set())
            if "*" in by_device:
                out.update({(user_id, d): by_device["*"] for d in mine})
            out.update({(user_id, d): c for d, c in by_device.items() if d != "*" and d in mine})
        return out

    async def pending(self, user_id: str, device_id: str, upto: int, limit: int) -> list[ToDeviceMessage]:
        q = (select(inbox.c.stream, inbox.c.sender, inbox.c.type, inbox.c.content)
             .where(inbox.c.user_id == user_id, inbox.c.device_id == device_id, inbox.c.stream <= upto)
             .order_by(inbox.c.stream).limit(limit))
        async with self.db.read() as conn:
            return [ToDeviceMessage(r.stream, r.sender, r.type, _decode(r.content))
                    for r in (await conn.execute(q)).all()]

    async def acknowledge(self, user_id: str, device_id: str, since: int) -> None:
        """The device synced from `since`: what the response ending there delivered is received."""
        mine = and_(partial.c.user_id == user_id, partial.c.device_id == device_id)
        mine_inbox = and_(inbox.c.user_id == user_id, inbox.c.device_id == device_id)
        async with self.db.read() as conn:
            cuts = {r.batch_pos: r.max_stream for r in (await conn.execute(
                select(partial.c.batch_pos, partial.c.max_stream).where(mine, partial.c.batch_pos >= since))).all()}
            if since in cuts:
                upto = cuts[since]  # that response delivered only part of the queue
            elif cuts:
                return  # an older token than one already partly delivered: acknowledge nothing
            else:
                upto = since
            stale = (await conn.execute(select(inbox.c.stream).where(mine_inbox, inbox.c.stream <= upto)
                                        .limit(1))).first()
            old_cuts = (await conn.execute(select(partial.c.batch_pos).where(mine, partial.c.batch_pos < since)
                                           .limit(1))).first()
        if stale is None and old_cuts is None:
            return
        async with self.db.write() as conn:
            await conn.execute(delete(inbox).where(mine_inbox, inbox.c.stream <= upto))
            await conn.execute(delete(partial).where(mine, partial.c.batch_pos < since))

    async def record_partial(self, user_id: str, device_id: str, batch_pos: int, max_stream: int) -> None:
        """A response ending at `batch_pos` delivered this device's messages only up to `max_stream`."""
        values = {"user_id": user_id, "device_id": device_id, "batch_pos": batch_pos, "max_stream": max_stream}
        async with self.db.write() as conn:
            await conn.execute(upsert(self.db.is_sqlite, partial, values, ["user_id", "device_id", "batch_pos"]))
