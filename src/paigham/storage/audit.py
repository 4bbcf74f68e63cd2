"""Storage of the audit log: appends under the chain-head lock, ordered reads, retention purge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.audit_chain import GENESIS, Record, record_hash
from paigham.domain.canonical_json import encode_str
from paigham.storage.audit_schema import audit_head, audit_log
from paigham.storage.database import Database

READ_BATCH = 2000


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str
    anchor_seq: int
    anchor_hash: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A record to append: the store assigns seq, prev_hash and hash."""

    ts: int
    kind: str
    actor: str | None
    target: str | None
    ip: str | None
    device: str | None
    details: dict[str, Any]


def _record(r: Any) -> Record:
    return Record(
        r.seq, r.ts, r.kind, r.actor, r.target, r.ip, r.device, msgspec.json.decode(r.details), r.prev_hash, r.hash
    )


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _locked_head(self, conn: AsyncConnection) -> Head:
        """The chain head, row-locked until commit (SQLite: the single writer already serialises)."""
        row = (await conn.execute(select(audit_head).where(audit_head.c.id == 1).with_for_update())).first()
        if row is None:
            await conn.execute(
                self.db.insert_ignore(
                    audit_head,
                    {"id": 1, "seq": 0, "hash": GENESIS, "anchor_seq": 0, "anchor_hash": GENESIS},
                    ["id"],
                )
            )
            row = (await conn.execute(select(audit_head).where(audit_head.c.id == 1).with_for_update())).one()
        return Head(row.seq, row.hash, row.anchor_seq, row.anchor_hash)

    async def append(self, entries: Sequence[Entry]) -> list[Record]:
        """Append entries in order, in one transaction; returns them as chained records."""
        if not entries:
            return []
        async with self.db.write() as conn:
            head = await self._locked_head(conn)
            seq, prev = head.seq, head.hash
            out: list[Record] = []
            for e in entries:
                seq += 1
                rec = Record(seq, e.ts, e.kind, e.actor, e.target, e.ip, e.device, e.details, prev, "")
                h = record_hash(prev, rec.body())
                out.append(Record(seq, e.ts, e.kind, e.actor, e.target, e.ip, e.device, e.details, prev, h))
                prev = h
            await conn.execute(
                audit_log.insert(),
                [
                    {
                        "seq": r.seq,
                        "ts": r.ts,
                        "kind": r.kind,
                        "actor": r.actor,
                        "target": r.target,
                        "ip": r.ip,
                        "device": r.device,
                        "details": encode_str(r.details),
                        "prev_hash": r.prev_hash,
                        "hash": r.hash,
                    }
                    for r in out
                ],
            )
            await conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev))
        return out

    async def head(self) -> Head:
        async with self.db.read() as conn:
            row = (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).first()
        if row is None:
            return Head(0, GENESIS, 0, GENESIS)
        return Head(row.seq, row.hash, row.anchor_seq, row.anchor_hash)

    async def records(
        self,
        *,
        since_ts: int | None = None,
        after_seq: int = 0,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Record]:
        """Records in sequence order, read in batches (the log may be large)."""
        sent = 0
        while True:
            q = select(audit_log).where(audit_log.c.seq > after_seq).order_by(audit_log.c.seq).limit(READ_BATCH)
            if since_ts is not None:
                q = q.where(audit_log.c.ts >= since_ts)
            if kinds:
                q = q.where(audit_log.c.kind.in_(list(kinds)))
            async with self.db.read() as conn:
                rows = (await conn.execute(q)).all()
            for r in rows:
                yield _record(r)
                sent += 1
                if limit is not None and sent >= limit:
                    return
            if len(rows) < READ_BATCH:
                return
            after_seq = rows[-1].seq

    async def count(self) -> int:
        async with self.db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(audit_log))).scalar_one())

    async def purge_before(self, before_ts: int) -> tuple[int, int]:
        """Delete records older than before_ts from the start of the chain; move the anchor to the
        last one removed. Returns (records removed, new anchor seq). Never removes the newest record."""
        async with self.db.write() as conn:
            head = await self._locked_head(conn)
            last = (
                await conn.execute(
                    select(audit_log.c.seq, audit_log.c.hash)
                    .where(audit_log.c.ts < before_ts, audit_log.c.seq < head.seq)
                    .order_by(audit_log.c.seq.desc())
                    .limit(1)
                )
            ).first()
            if last is None:
                return 0, head.anchor_seq
            res = await conn.execute(delete(audit_log).where(audit_log.c.seq <= last.seq))
            await conn.execute(
                update(audit_head).where(audit_head.c.id == 1).values(anchor_seq=last.seq, anchor_hash=last.hash)
            )
        return int(res.rowcount or 0), int(last.seq)
