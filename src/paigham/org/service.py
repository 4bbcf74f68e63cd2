"""The organisation service: import (plan → one transaction → follow-up), export, and lookups.

The follow-up after commit — logging out deactivated officials, re-announcing changed display names
in their rooms, joining officials to their unit's space — is idempotent and converges on the stored
organisation: if it is interrupted, `paigham org sync` (or the next import) completes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import msgspec
from sqlalchemy.exc import IntegrityError

from paigham.audit.service import AuditService, entry
from paigham.config import Config
from paigham.domain.org import Official, Unit, check_format, display_name
from paigham.errors import Codes, MatrixError
from paigham.org.importer import Input, ReadResult, RowError, SourceRow
from paigham.org.passes import CHUNK, Applied, ImportPass
from paigham.org.plan import Plan
from paigham.services.auth import AuthService
from paigham.services.profile import ProfileService
from paigham.storage.audit import Entry
from paigham.storage.org import OrgStore, UnitRow
from paigham.types import JsonDict

Progress = Callable[[str, int, int], None]
AUDIT_BATCH = 2000  # audit records appended (and renamed accounts re-announced) at a time


class _Changed(Exception):
    """The second pass found what the first did not: the organisation changed in between."""


class OfficialPage(NamedTuple):
    officials: list[Official]
    total: int  # officials matching, on every page


AfterApply = Callable[[Applied, Progress | None], Awaitable[Any]]


class OrgService:
    def __init__(
        self,
        config: Config,
        store: OrgStore,
        auth: AuthService,
        profiles: ProfileService,
        audit: AuditService,
        *,
        after_apply: Sequence[AfterApply] = (),
        unit_deleted: Sequence[Callable[[UnitRow], Awaitable[None]]] = (),
    ) -> None:
        self.config = config
        self.store = store
        self.auth = auth
        self.profiles = profiles
        self.audit = audit
        check_format(config.org_displayname_format)
        self._lock = asyncio.Lock()
        # Run after every applied change, in this order (policy caches, moderation flags, spaces per unit).
        self.after_apply = tuple(after_apply)
        self.unit_deleted = tuple(unit_deleted)
        self.chunk = CHUNK  # official rows planned and written at a time

    def displayname(self, official: Official, unit: Unit | None) -> str:
        return display_name(self.config.org_displayname_format, official, unit, self.config.org_default_language)

    # -- import -----------------------------------------------------------------------------------
    def _pass(self, **kw: Any) -> ImportPass:
        cfg = self.config
        return ImportPass(
            self.store, cfg.server_name, cfg.org_default_language, self.displayname, chunk=self.chunk, **kw
        )

    async def plan(
        self,
        source: Input,
        progress: Progress | None = None,
        total: int = 0,
        changes: Callable[[str], Any] | None = None,
    ) -> Plan:
        """Validate every record and diff it against the database, writing nothing (the first pass)."""
        plan = Plan(source=source, emit=changes)
        await self._pass(progress=progress).run(source, plan, total, "checking")
        plan.errors.sort(key=lambda e: (e.source, e.line))
        return plan

    async def import_rows(
        self,
        source: Input,
        *,
        dry_run: bool,
        actor: str | None,
        progress: Progress | None = None,
        total: int = 0,
        changes: Callable[[str], Any] | None = None,
    ) -> Plan:
        """Plan the import; unless it is a dry run or has errors, apply it (every row, or none).
        `changes` gets every change of an official as a line, as the plan finds it."""
        async with self._lock:
            plan = await self.plan(source, progress, total, changes)
            if plan.ok and plan.changes and not dry_run:
                plan = (await self.apply(plan, actor, progress, total)).plan  # what was written
        return plan

    async def apply(self, plan: Plan, actor: str | None, progress: Progress | None = None, total: int = 0) -> Applied:
        """The second pass: the same records planned again and written, a chunk at a time, in one
        transaction; then the audit records and the follow-up."""
        if not plan.ok or plan.source is None:
            raise MatrixError(400, Codes.INVALID_PARAM, f"{len(plan.errors)} rows are invalid; nothing was changed")
        again = Plan()
        applied = Applied(again)
        try:
            async with self.store.db.write() as conn:
                work = self._pass(conn=conn, applied=applied, actor=actor, progress=progress)
                await work.run(plan.source, again, total, "importing")
                if not again.ok:  # what is stored changed since the plan: roll back
                    raise _Changed
        except (IntegrityError, _Changed):
            applied.audit.close()
            raise MatrixError(
                409, Codes.UNKNOWN, "The organisation changed during the import; nothing was changed — run it again"
            ) from None
        await self.store.directory.settle(applied.touched)
        if applied.updated:  # suspended or deactivated accounts: no cached token may outlive that
            await self.auth.credentials_changed(applied.updated)
        with applied.audit:
            await self._audit(again, applied, actor)
        await self.follow_up(applied, progress)
        return applied

    async def _audit(self, plan: Plan, applied: Applied, actor: str | None) -> None:
        """The summary record, then the spooled record of every unit and official, in batches."""
        details = {
            "units_new": len(plan.new_units),
            "units_changed": len(plan.changed_units),
            "officials_new": plan.new_officials,
            "officials_changed": plan.changed_officials,
        }
        batch: list[Entry] = [entry("org.import", actor, None, details=details)]
        applied.audit.seek(0)
        for line in applied.audit:
            batch.append(msgspec.json.decode(line, type=Entry))
            if len(batch) >= AUDIT_BATCH:
                await self.audit.record_many(batch)
                batch = []
        await self.audit.record_many(batch)

    async def follow_up(self, applied: Applied, progress: Progress | None = None) -> None:
        for i, user_id in enumerate(applied.deactivated):
            await self.auth.deactivate(user_id)
            if progress:
                progress("deactivating", i + 1, len(applied.deactivated))
        for i in range(0, len(applied.renamed), AUDIT_BATCH):  # re-announced in the user's rooms
            accounts = await self.store.accounts(applied.renamed[i : i + AUDIT_BATCH])
            for acct in accounts.values():
                if acct.displayname is not None:
                    await self.profiles.set(acct.user_id, "displayname", acct.displayname, check=False)
        for step in self.after_apply:
            await step(applied, progress)

    # -- the admin API's reads ---------------------------------------------------------------------
    async def units_json(self, parent_id: str | None = None) -> list[JsonDict]:
        """Every unit (or the children of `parent_id`; "" for the top level), with its rooms and size."""
        units, counts = await self.store.units(), await self.store.unit_counts()
        return [
            _unit_json(row, counts)
            for unit_id, row in sorted(units.items())
            if parent_id is None or row.unit.parent_id == (parent_id or None)
        ]

    async def unit_json(self, unit_id: str) -> JsonDict:
        """One unit with its rooms, its number of officials and its sub-units."""
        row = await self.store.unit(unit_id)
        if row is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unit not found")
        units, counts = await self.store.units(), await self.store.unit_counts()
        children = sorted(u for u, r in units.items() if r.unit.parent_id == unit_id)
        return {**_unit_json(row, counts), "children": children}

    async def officials(self, unit_id: str | None, status: str | None, offset: int, limit: int) -> OfficialPage:
        """One page of officials, optionally of one unit and one status, in employee ID order."""
        rows, total = await self.store.list_officials(unit_id=unit_id, status=status, offset=offset, limit=limit)
        return OfficialPage([r.official for r in rows], total)

    async def official(self, employee_id: str) -> Official:
        row = await self.store.official(employee_id)
        if row is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Official not found")
        return row.official

    # -- single records (admin API) ---------------------------------------------------------------
    async def put_unit(self, unit_id: str, record: JsonDict, actor: str | None) -> JsonDict:
        """Create or replace one unit (as one import row); returns it as `unit_json` does."""
        await self.put_records("unit", [{**record, "unit_id": unit_id}], actor)
        return await self.unit_json(unit_id)

    async def put_official(self, employee_id: str, record: JsonDict, actor: str | None) -> Official:
        """Create or replace one official (as one import row)."""
        await self.put_records("official", [{**record, "employee_id": employee_id}], actor)
        return await self.official(employee_id)

    async def put_records(self, kind: str, records: Sequence[dict[str, Any]], actor: str | None) -> Plan:
        rows = [SourceRow("request", i + 1, kind, r) for i, r in enumerate(records)]
        plan = await self.import_rows(ReadResult(rows, []), dry_run=False, actor=actor)
        if not plan.ok:
            raise MatrixError(400, Codes.INVALID_PARAM, "; ".join(e.reason for e in plan.errors)[:1000])
        return plan

    async def delete_unit(self, unit_id: str, actor: str | None) -> None:
        row = await self.store.unit(unit_id)
        if row is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unit not found")
        if not await self.store.delete_unit(unit_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "The unit still has officials or sub-units; move them first")
        await self.audit.record("org.unit.deleted", actor, unit_id)
        for hook in self.unit_deleted:
            await hook(row)

    # -- export -----------------------------------------------------------------------------------
    async def export(self) -> dict[str, Any]:
        units = await self.store.units()
        officials = await self.store.all_officials()
        ordered: list[Unit] = []
        children: dict[str | None, list[Unit]] = {}
        for r in units.values():
            children.setdefault(r.unit.parent_id if r.unit.parent_id in units else None, []).append(r.unit)
        stack = sorted(children.get(None, []), key=lambda u: u.unit_id, reverse=True)
        while stack:
            u = stack.pop()
            ordered.append(u)
            stack.extend(sorted(children.get(u.unit_id, []), key=lambda x: x.unit_id, reverse=True))
        return {
            "version": 1,
            "units": [u.to_json() for u in ordered],
            "officials": [officials[k].official.to_json() for k in sorted(officials)],
        }


def _unit_json(row: UnitRow, counts: dict[str, int]) -> JsonDict:
    return {
        **row.unit.to_json(),
        "space_id": row.space_id,
        "announcements_room_id": row.announcements_id,
        "officials": counts.get(row.unit.unit_id, 0),
    }


def row_errors_text(errors: Sequence[RowError], limit: int = 1000) -> list[str]:
    out = [str(e) for e in errors[:limit]]
    if len(errors) > limit:
        out.append(f"… and {len(errors) - limit} more")
    return out
