"""Pushers (storage/pushers_schema.py) as the Client-Server API and the admin API see them: create
or update one by (app_id, pushkey, user_id), list, and remove them (by key, by device, by user, by
ID, and other users' with the same app_id and pushkey). Delivery reads and advances the delivery
columns on its own (the push delivery store); this store only sets them when a pusher is created
and clears the backoff when a pusher's target changes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.pushers_schema import pushers
from paigham.storage.watermark import WATERMARK
from paigham.types import JsonDict


@dataclass(frozen=True, slots=True)
class PusherRow:
    id: int
    user_id: str
    device_id: str | None
    kind: str
    app_id: str
    pushkey: str
    pushkey_ts: int  # ms
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: JsonDict  # `url` included
    last_stream: int
    failing_since: int | None  # ms
    attempts: int
    next_attempt_ts: int  # ms


@dataclass(frozen=True, slots=True)
class NewPusher:
    """What a client sets (POST /pushers/set with a kind): the pusher's descriptive fields."""

    user_id: str
    device_id: str | None
    kind: str
    app_id: str
    pushkey: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: JsonDict


_COLUMNS = (
    pushers.c.id,
    pushers.c.user_id,
    pushers.c.device_id,
    pushers.c.kind,
    pushers.c.app_id,
    pushers.c.pushkey,
    pushers.c.pushkey_ts,
    pushers.c.app_display_name,
    pushers.c.device_display_name,
    pushers.c.profile_tag,
    pushers.c.lang,
    pushers.c.data,
    pushers.c.last_stream,
    pushers.c.failing_since,
    pushers.c.attempts,
    pushers.c.next_attempt_ts,
)


def _row(r: Any) -> PusherRow:
    data = json.loads(r.data)
    return PusherRow(
        int(r.id), r.user_id, r.device_id, r.kind, r.app_id, r.pushkey, int(r.pushkey_ts), r.app_display_name,
        r.device_display_name, r.profile_tag, r.lang, data if isinstance(data, dict) else {}, int(r.last_stream),
        None if r.failing_since is None else int(r.failing_since), int(r.attempts), int(r.next_attempt_ts),
    )  # fmt: skip


class PusherStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set(self, p: NewPusher, now: int, *, max_per_user: int, replace_others: bool) -> bool | None:
        """Create the pusher or update it in place (keyed by app_id, pushkey and user). A new one
        starts at the current stream position (no backlog) with `pushkey_ts` = now; an updated one
        keeps its position and `pushkey_ts` (when the pushkey was first registered), and its backoff
        is cleared if its data (the gateway URL) changed. `replace_others`: other users' pushers
        with the same app_id and pushkey are removed in the same transaction.

        True: created; False: updated; None: refused, the user already has `max_per_user`."""
        key = and_(pushers.c.app_id == p.app_id, pushers.c.pushkey == p.pushkey, pushers.c.user_id == p.user_id)
        data = json.dumps(p.data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        fields = {
            "device_id": p.device_id,
            "kind": p.kind,
            "app_display_name": p.app_display_name,
            "device_display_name": p.device_display_name,
            "profile_tag": p.profile_tag,
            "lang": p.lang,
            "data": data,
        }
        async with self.db.write() as conn:
            await self.db.lock(conn, "pushers:" + p.user_id)  # the count and the insert, one user at a time
            found = (await conn.execute(select(pushers.c.id, pushers.c.data).where(key))).first()
            if found is None and await _count(conn, p.user_id) >= max_per_user:
                return None  # (refused before anything changed, other users' pushers included)
            if replace_others:
                await conn.execute(
                    delete(pushers).where(
                        pushers.c.app_id == p.app_id, pushers.c.pushkey == p.pushkey, pushers.c.user_id != p.user_id
                    )
                )
            if found is not None:
                backoff = {"failing_since": None, "attempts": 0, "next_attempt_ts": 0} if found.data != data else {}
                await conn.execute(update(pushers).where(pushers.c.id == found.id).values(**fields, **backoff))
                return False
            position = await _position(self.db, conn)
            await conn.execute(
                insert(pushers).values(
                    user_id=p.user_id, app_id=p.app_id, pushkey=p.pushkey, pushkey_ts=now, last_stream=position,
                    attempts=0, next_attempt_ts=0, lease_until=0, **fields,
                )
            )  # fmt: skip
        return True

    async def of_user(self, user_id: str) -> list[PusherRow]:
        """The user's pushers, oldest first."""
        q = select(*_COLUMNS).where(pushers.c.user_id == user_id).order_by(pushers.c.id)
        async with self.db.read() as conn:
            return [_row(r) for r in (await conn.execute(q)).all()]

    async def get(self, pusher_id: int) -> PusherRow | None:
        async with self.db.read() as conn:
            r = (await conn.execute(select(*_COLUMNS).where(pushers.c.id == pusher_id))).first()
        return _row(r) if r is not None else None

    async def count(self, user_id: str) -> int:
        async with self.db.read() as conn:
            return await _count(conn, user_id)

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> bool:
        """Remove one pusher by its key (kind: null); whether there was one."""
        return bool(
            await self._delete(
                and_(pushers.c.user_id == user_id, pushers.c.app_id == app_id, pushers.c.pushkey == pushkey)
            )
        )

    async def delete_by_id(self, user_id: str, pusher_id: int) -> bool:
        return bool(await self._delete(and_(pushers.c.user_id == user_id, pushers.c.id == pusher_id)))

    async def delete_for_devices(self, user_id: str, device_ids: list[str]) -> int:
        """Remove the pushers the devices registered (logout, device deletion); how many."""
        if not device_ids:
            return 0
        return await self._delete(and_(pushers.c.user_id == user_id, pushers.c.device_id.in_(device_ids)))

    async def delete_for_user(self, user_id: str) -> int:
        """Remove all the user's pushers (deactivation); how many."""
        return await self._delete(pushers.c.user_id == user_id)

    async def _delete(self, where: Any) -> int:
        async with self.db.write() as conn:
            result = await conn.execute(delete(pushers).where(where))
        return int(result.rowcount or 0)


async def _count(conn: AsyncConnection, user_id: str) -> int:
    q = select(func.count()).select_from(pushers).where(pushers.c.user_id == user_id)
    return int((await conn.execute(q)).scalar_one())


async def _position(db: Database, conn: AsyncConnection) -> int:
    row = await db.fetchrow(f"SELECT {WATERMARK}", conn=conn)
    assert row is not None
    return int(row[0])
