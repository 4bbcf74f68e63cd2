"""Failed sign-in counters (per account and per address), shared by every worker through the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from paigham.storage.database import Database
from paigham.storage.org_schema import login_failures


@dataclass(frozen=True, slots=True)
class Failures:
    key: str
    count: int
    first_ts: int
    last_ts: int
    locked_until: int | None


class LoginStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, keys: Sequence[str]) -> list[Failures]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(login_failures).where(login_failures.c.key.in_(list(keys))))).all()
        return [Failures(r.key, int(r._mapping["count"]), r.first_ts, r.last_ts, r.locked_until) for r in rows]

    async def add_failure(self, key: str, now: int, window_ms: int, lock_after: int, lock_ms: int) -> Failures:
        """Count one failure (a new window if the last one expired); lock the key once it reaches lock_after."""
        t = login_failures
        async with self.db.write() as conn:
            await conn.execute(
                self.db.insert_ignore(
                    t,
                    {"key": key, "count": 0, "first_ts": now, "last_ts": now, "locked_until": None},
                    ["key"],
                )
            )
            row = (await conn.execute(select(t).where(t.c.key == key).with_for_update())).one()
            count, first = int(row._mapping["count"]) + 1, row.first_ts
            if now - first > window_ms:
                count, first = 1, now
            locked = row.locked_until
            if lock_after and count >= lock_after and (locked is None or locked <= now):
                locked = now + lock_ms
            await conn.execute(
                update(t).where(t.c.key == key).values(count=count, first_ts=first, last_ts=now, locked_until=locked)
            )
        return Failures(key, count, first, now, locked)

    async def clear(self, keys: Sequence[str]) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(login_failures).where(login_failures.c.key.in_(list(keys))))

    async def purge(self, before: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(login_failures).where(login_failures.c.last_ts < before))
