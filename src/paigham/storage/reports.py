"""Reports of events, rooms and users (storage/reports_schema.py): added by the client API, listed,
read and deleted by the admin API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, select

from paigham.storage.database import Database
from paigham.storage.reports_schema import reports


@dataclass(frozen=True, slots=True)
class ReportRow:
    id: int
    kind: str
    received_ts: int
    reporter: str
    room_id: str | None
    event_id: str | None
    target_user_id: str | None
    reason: str | None
    score: int | None


class ReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        kind: str,
        reporter: str,
        ts: int,
        *,
        room_id: str | None = None,
        event_id: str | None = None,
        target_user_id: str | None = None,
        reason: str | None = None,
        score: int | None = None,
    ) -> int:
        """Keep one report; its ID."""
        values = {
            "kind": kind,
            "received_ts": ts,
            "reporter": reporter,
            "room_id": room_id,
            "event_id": event_id,
            "target_user_id": target_user_id,
            "reason": reason,
            "score": score,
        }
        async with self.db.write() as conn:
            result = await conn.execute(insert(reports).values(**values))
        key = result.inserted_primary_key
        assert key is not None  # an INSERT of one row
        return int(key[0])

    async def page(
        self,
        kind: str,
        *,
        reporter: str | None,
        room: str | None,
        target: str | None,
        offset: int,
        limit: int,
        newest_first: bool,
    ) -> tuple[list[ReportRow], int]:
        """One page of the reports of a kind that match, and how many match in all: `reporter` and
        `room` match any part of the ID, case aside (as Synapse's filters do); `target` is the
        reported user (or the reported event's sender), exactly."""
        where = and_(reports.c.kind == kind, *_conditions(reporter, room, target))
        order = reports.c.id.desc() if newest_first else reports.c.id.asc()
        q = select(reports).where(where).order_by(order).offset(offset).limit(limit)
        async with self.db.read() as conn:
            total = int((await conn.execute(select(func.count()).select_from(reports).where(where))).scalar_one())
            rows = (await conn.execute(q)).all()
        return [ReportRow(*r) for r in rows], total

    async def get(self, kind: str, report_id: int) -> ReportRow | None:
        q = select(reports).where(reports.c.kind == kind, reports.c.id == report_id)
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return ReportRow(*row) if row else None

    async def delete(self, kind: str, report_id: int) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(delete(reports).where(reports.c.kind == kind, reports.c.id == report_id))
        return bool(result.rowcount)


def _conditions(reporter: str | None, room: str | None, target: str | None) -> list[Any]:
    cond: list[Any] = []
    if reporter:
        cond.append(func.lower(reports.c.reporter).contains(reporter.lower(), autoescape=True))
    if room:
        cond.append(func.lower(reports.c.room_id).contains(room.lower(), autoescape=True))
    if target:
        cond.append(reports.c.target_user_id == target)
    return cond
