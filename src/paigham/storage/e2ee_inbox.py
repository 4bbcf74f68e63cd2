"""The to-device inbox: messages wait per device, in arrival order, until the device has synced past
them; a transaction ID makes a send idempotent. See e2ee_schema.e2e_device_inbox for `seq`/`stream`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.clock import now_ms
from paigham.domain.canonical_json import encode_str
from paigham.storage.database import Database
from paigham.storage.e2ee_schema import e2e_device_inbox as inbox
from paigham.storage.schema import devices, event_txns

_decode = msgspec.json.decode
TXN_SCOPE = "to_device"


@dataclass(frozen=True, slots=True)
class ToDeviceMessage:
    seq: int
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

    async def enqueue(
        self,
        sender: str,
        sender_device: str,
        txn_id: str,
        type_: str,
        messages: Mapping[str, Mapping[str, dict[str, Any]]],
    ) -> Enqueued | None:
        """Queue one message per target device (`*` = every device of the user); None when this
        transaction ID was already used by the sending device."""
        async with self.db.write() as conn:
            txn = {
                "user_id": sender,
                "device_id": sender_device,
                "scope": TXN_SCOPE,
                "txn_id": txn_id,
                "result": "",
                "created_ts": now_ms(),
            }
            done = await conn.execute(
                self.db.insert_ignore(event_txns, txn, ["user_id", "device_id", "scope", "txn_id"])
            )
            if done.rowcount == 0:
                return None
            targets = await self._targets(conn, messages)
            if not targets:
                return Enqueued(0, [])
            pos = await self.db.next_position(conn)
            await conn.execute(
                inbox.insert(),
                [
                    {
                        "user_id": u,
                        "device_id": d,
                        "seq": pos,
                        "stream": pos,
                        "sender": sender,
                        "type": type_,
                        "content": encode_str(content),
                    }
                    for (u, d), content in sorted(targets.items())
                ],
            )
        return Enqueued(pos, sorted({u for u, _ in targets}))

    @staticmethod
    async def _targets(
        conn: AsyncConnection, messages: Mapping[str, Mapping[str, dict[str, Any]]]
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
        # Raw SQL (Database.fetch): every /sync runs this.
        rows = await self.db.fetch(
            "SELECT seq, sender, type, content FROM e2e_device_inbox WHERE user_id = $1 AND device_id = $2 "
            "AND stream <= $3 ORDER BY seq LIMIT $4",
            user_id,
            device_id,
            upto,
            limit,
        )
        return [ToDeviceMessage(int(r[0]), r[1], r[2], _decode(r[3])) for r in rows]

    async def acknowledge(self, user_id: str, device_id: str, since: int) -> None:
        """The device synced from `since`: every message at or before it was delivered."""
        if (
            await self.db.fetchrow(
                "SELECT seq FROM e2e_device_inbox WHERE user_id = $1 AND device_id = $2 AND stream <= $3 LIMIT 1",
                user_id,
                device_id,
                since,
            )
            is None
        ):
            return
        done = and_(_device(user_id, device_id), inbox.c.stream <= since)
        async with self.db.write() as conn:
            await conn.execute(delete(inbox).where(done))

    async def defer(self, user_id: str, device_id: str, upto: int, after_seq: int) -> None:
        """Messages visible at `upto` that a response could not carry (those after `after_seq`) move
        to a new position, so syncing from `upto` does not acknowledge them."""
        async with self.db.write() as conn:
            # Take the position first: on PostgreSQL this waits for in-flight senders to commit.
            pos = await self.db.next_position(conn)
            await conn.execute(
                update(inbox)
                .where(_device(user_id, device_id), inbox.c.stream <= upto, inbox.c.seq > after_seq)
                .values(stream=pos)
            )


def _device(user_id: str, device_id: str) -> ColumnElement[bool]:
    return and_(inbox.c.user_id == user_id, inbox.c.device_id == device_id)
