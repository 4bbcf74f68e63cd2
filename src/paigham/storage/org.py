"""Storage of the organisation: units, officials, and their accounts, changed in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.org import Official, Unit
from paigham.storage.database import Database
from paigham.storage.directory import DirectoryIndex
from paigham.storage.org_schema import officials, org_units, server_notice_rooms
from paigham.storage.schema import users

CHUNK = 900  # bound IN lists and executemany batches (SQLite allows 32766 parameters)


@dataclass(frozen=True, slots=True)
class UnitRow:
    unit: Unit
    space_id: str | None
    announcements_id: str | None


@dataclass(frozen=True, slots=True)
class OfficialRow:
    official: Official
    joined_unit: str | None


@dataclass(frozen=True, slots=True)
class AccountState:
    user_id: str
    displayname: str | None
    suspended: bool
    deactivated: bool
    admin: bool


@dataclass
class Changes:
    """Everything one import (or one admin edit) writes, applied all together or not at all."""

    new_units: list[dict[str, Any]]
    changed_units: list[dict[str, Any]]
    new_officials: list[dict[str, Any]]
    changed_officials: list[dict[str, Any]]
    new_accounts: list[dict[str, Any]]
    account_updates: list[dict[str, Any]]  # user_id + displayname/suspended/deactivated


def _dec(text: str) -> Any:
    return msgspec.json.decode(text)


def unit_row(r: Any) -> UnitRow:
    return UnitRow(Unit(r.unit_id, r.parent_id, r.kind, _dec(r.names)), r.space_id, r.announcements_id)


def official_row(r: Any) -> OfficialRow:
    return OfficialRow(
        Official(
            r.employee_id,
            r.user_id,
            _dec(r.names),
            _dec(r.designation),
            r.unit_id,
            r.email,
            r.phone,
            r.status,
            r.expires,
            r.language,
        ),
        r.joined_unit,
    )


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


class OrgStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.directory = DirectoryIndex(db)

    # -- reads ----------------------------------------------------------------------------------
    async def _all(self, stmt: Any, conn: AsyncConnection | None) -> list[Any]:
        """Rows of a statement, inside `conn`'s transaction if given, else in a fresh read."""
        if conn is not None:
            return list((await conn.execute(stmt)).all())
        async with self.db.read() as c:
            return list((await c.execute(stmt)).all())

    async def units(self, conn: AsyncConnection | None = None) -> dict[str, UnitRow]:
        return {r.unit_id: unit_row(r) for r in await self._all(select(org_units), conn)}

    async def unit(self, unit_id: str) -> UnitRow | None:
        async with self.db.read() as conn:
            r = (await conn.execute(select(org_units).where(org_units.c.unit_id == unit_id))).first()
        return unit_row(r) if r else None

    async def all_officials(self) -> dict[str, OfficialRow]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(officials))).all()
        return {r.employee_id: official_row(r) for r in rows}

    async def official(self, employee_id: str) -> OfficialRow | None:
        async with self.db.read() as conn:
            r = (await conn.execute(select(officials).where(officials.c.employee_id == employee_id))).first()
        return official_row(r) if r else None

    async def active_unit_of(self, user_id: str) -> str | None:
        """The unit of the official with this account, unless deactivated (one statement: every
        request's policy check reads it every few seconds)."""
        row = await self.db.fetchrow("SELECT unit_id, status FROM officials WHERE user_id = $1", user_id)
        return row[0] if row is not None and row[1] != "deactivated" else None

    async def official_by_user(self, user_id: str) -> OfficialRow | None:
        async with self.db.read() as conn:
            r = (await conn.execute(select(officials).where(officials.c.user_id == user_id))).first()
        return official_row(r) if r else None

    async def list_officials(
        self, *, unit_id: str | None, status: str | None, offset: int, limit: int
    ) -> tuple[list[OfficialRow], int]:
        cond = []
        if unit_id is not None:
            cond.append(officials.c.unit_id == unit_id)
        if status is not None:
            cond.append(officials.c.status == status)
        where = and_(*cond) if cond else and_(True)
        async with self.db.read() as conn:
            total = int((await conn.execute(select(func.count()).select_from(officials).where(where))).scalar_one())
            rows = (
                await conn.execute(
                    select(officials).where(where).order_by(officials.c.employee_id).offset(offset).limit(limit)
                )
            ).all()
        return [official_row(r) for r in rows], total

    async def unit_counts(self) -> dict[str, int]:
        q = (
            select(officials.c.unit_id, func.count())
            .where(officials.c.status != "deactivated")
            .group_by(officials.c.unit_id)
        )
        async with self.db.read() as conn:
            return {r[0]: int(r[1]) for r in (await conn.execute(q)).all()}

    async def accounts(self, user_ids: Sequence[str], conn: AsyncConnection | None = None) -> dict[str, AccountState]:
        rows = await self.db.fetch(
            "SELECT user_id, displayname, suspended, deactivated, admin FROM users WHERE user_id = ANY($1::text[])",
            list(user_ids),
            conn=conn,
        )
        return {r[0]: AccountState(r[0], r[1], bool(r[2]), bool(r[3]), bool(r[4])) for r in rows}

    # -- reads of an import, a chunk at a time (inside its transaction when it applies) ----------
    async def officials_of(self, employee_ids: Sequence[str], conn: AsyncConnection | None) -> dict[str, Official]:
        out: dict[str, Official] = {}
        for chunk in _chunks(list(employee_ids)):
            q = select(officials).where(officials.c.employee_id.in_(chunk))
            out.update((r.employee_id, official_row(r).official) for r in await self._all(q, conn))
        return out

    async def owners(self, user_ids: Sequence[str], conn: AsyncConnection | None) -> dict[str, str]:
        """The employee each of these accounts belongs to (those that are officials)."""
        out: dict[str, str] = {}
        for chunk in _chunks(list(user_ids)):
            q = select(officials.c.user_id, officials.c.employee_id).where(officials.c.user_id.in_(chunk))
            out.update((r.user_id, r.employee_id) for r in await self._all(q, conn))
        return out

    async def officials_in_units(
        self, unit_ids: Sequence[str], after: str, limit: int, conn: AsyncConnection | None
    ) -> list[Official]:
        """A page of the officials of these units, in employee ID order after `after`."""
        q = (
            select(officials)
            .where(officials.c.unit_id.in_(list(unit_ids)), officials.c.employee_id > after)
            .order_by(officials.c.employee_id)
            .limit(limit)
        )
        return [official_row(r).official for r in await self._all(q, conn)]

    # -- reads of the memberships, a unit at a time (org/spaces.py) ------------------------------
    async def unit_members(self, unit_id: str) -> list[tuple[str, str | None]]:
        """(user ID, display name) of the unit's officials who should be in its rooms: active
        officials whose accounts are neither suspended nor deactivated."""
        rows = await self.db.fetch(
            "SELECT o.user_id, u.displayname FROM officials o JOIN users u ON u.user_id = o.user_id "
            "WHERE o.unit_id = $1 AND o.status = 'active' AND NOT u.suspended AND NOT u.deactivated "
            "ORDER BY o.user_id",
            unit_id,
        )
        return [(r[0], r[1]) for r in rows]

    async def units_of(self, user_ids: Sequence[str]) -> dict[str, str]:
        """The unit of each of these accounts that is an official."""
        out: dict[str, str] = {}
        for chunk in _chunks(list(user_ids)):
            q = select(officials.c.user_id, officials.c.unit_id).where(officials.c.user_id.in_(chunk))
            out.update((r.user_id, r.unit_id) for r in await self._all(q, None))
        return out

    # -- writes ---------------------------------------------------------------------------------
    async def apply(self, ch: Changes) -> None:
        async with self.db.write() as conn:
            touched = await self.write(conn, ch)
        await self.directory.settle(touched)

    async def write(self, conn: AsyncConnection, ch: Changes) -> int:
        """Write one part of an import inside the caller's transaction (an import writes its officials a
        chunk at a time, all in one transaction); how many accounts' directory entries it rewrote."""
        await self._insert(conn, org_units, ch.new_units)
        await self._update(conn, org_units, "unit_id", ch.changed_units)
        await self._insert(conn, users, ch.new_accounts)
        await self._update(conn, users, "user_id", ch.account_updates)
        await self._insert(conn, officials, ch.new_officials)
        await self._update(conn, officials, "employee_id", ch.changed_officials)
        touched = {r["user_id"] for r in (*ch.new_accounts, *ch.account_updates, *ch.new_officials)}
        touched.update(r["user_id"] for r in ch.changed_officials)
        await self.directory.refresh(conn, sorted(touched))
        return len(touched)

    @staticmethod
    async def _insert(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
        for chunk in _chunks(rows):
            await conn.execute(table.insert(), list(chunk))

    @staticmethod
    async def _update(conn: AsyncConnection, table: Any, key: str, rows: list[dict[str, Any]]) -> None:
        """Executemany UPDATE, grouped by the set of columns each row changes."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            cols = tuple(sorted(c for c in row if c != key))
            if cols:
                groups.setdefault(cols, []).append({**{f"v_{c}": row[c] for c in cols}, "k": row[key]})
        for cols, batch in groups.items():
            stmt = update(table).where(table.c[key] == bindparam("k")).values({c: bindparam(f"v_{c}") for c in cols})
            for chunk in _chunks(batch):
                await conn.execute(stmt, list(chunk))

    async def set_unit_rooms(self, unit_id: str, space_id: str | None, announcements_id: str | None) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(org_units)
                .where(org_units.c.unit_id == unit_id)
                .values(space_id=space_id, announcements_id=announcements_id)
            )

    async def set_joined_unit(self, user_ids: Sequence[str], unit_id: str | None) -> None:
        """Record that these officials (by account) have joined the rooms of `unit_id`."""
        async with self.db.write() as conn:
            for chunk in _chunks(list(user_ids)):
                await conn.execute(update(officials).where(officials.c.user_id.in_(chunk)).values(joined_unit=unit_id))

    async def set_status(self, user_id: str, status: str, now: int) -> bool:
        async with self.db.write() as conn:
            res = await conn.execute(
                update(officials).where(officials.c.user_id == user_id).values(status=status, updated_ts=now)
            )
        return bool(res.rowcount)

    async def erase_contact(self, user_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(officials).where(officials.c.user_id == user_id).values(email=None, phone=None))

    async def delete_unit(self, unit_id: str) -> bool:
        async with self.db.write() as conn:
            busy = (
                await conn.execute(select(func.count()).select_from(officials).where(officials.c.unit_id == unit_id))
            ).scalar_one()
            kids = (
                await conn.execute(select(func.count()).select_from(org_units).where(org_units.c.parent_id == unit_id))
            ).scalar_one()
            if busy or kids:
                return False
            await conn.execute(delete(org_units).where(org_units.c.unit_id == unit_id))
        return True

    # -- server notices (org/notices.py) --------------------------------------------------
    async def notice_room(self, user_id: str) -> str | None:
        """The room the server's account keeps with the user for server notices, if it made one."""
        q = select(server_notice_rooms.c.room_id).where(server_notice_rooms.c.user_id == user_id)
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return str(row.room_id) if row else None

    async def set_notice_room(self, user_id: str, room_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(server_notice_rooms.delete().where(server_notice_rooms.c.user_id == user_id))
            await conn.execute(
                self.db.insert_ignore(server_notice_rooms, {"user_id": user_id, "room_id": room_id}, ["user_id"])
            )
