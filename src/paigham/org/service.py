"""The organisation service: import (plan → one transaction → follow-up), export, and lookups.

The follow-up after commit — logging out deactivated officials, re-announcing changed display names
in their rooms, joining officials to their unit's space — is idempotent and converges on the stored
organisation: if it is interrupted, `paigham org sync` (or the next import) completes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
from sqlalchemy.exc import IntegrityError

from paigham.audit.service import AuditService, entry
from paigham.clock import now_ms
from paigham.config import Config
from paigham.domain.org import Official, Unit, check_format, display_name, expiry_ms
from paigham.errors import Codes, MatrixError
from paigham.org.importer import ReadResult, RowError, SourceRow
from paigham.org.plan import Plan, build_plan, parse_rows
from paigham.org.user_directory import unit_key
from paigham.services.auth import AuthService
from paigham.services.profile import ProfileService
from paigham.storage.org import Changes, OrgStore, UnitRow
from paigham.types import JsonDict

Progress = Callable[[str, int, int], None]


def _json(v: Any) -> str:
    return msgspec.json.encode(v).decode()


def _flags(status: str) -> dict[str, Any]:
    if status == "deactivated":
        return {"deactivated": True, "suspended": False}
    return {"deactivated": False, "suspended": status == "suspended"}


class OfficialPage(NamedTuple):
    officials: list[Official]
    total: int  # officials matching, on every page


@dataclass
class Applied:
    """What an applied plan changed, for the follow-up steps."""

    plan: Plan
    deactivated: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # existing accounts' new display names
    touched_units: set[str] = field(default_factory=set)
    touched_officials: set[str] = field(default_factory=set)


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

    def displayname(self, official: Official, unit: Unit | None) -> str:
        return display_name(self.config.org_displayname_format, official, unit, self.config.org_default_language)

    # -- import -----------------------------------------------------------------------------------
    async def plan(self, read: ReadResult) -> Plan:
        batch = parse_rows(read.rows, self.config.server_name, self.config.org_default_language)
        batch.errors[:0] = read.errors
        units = await self.store.units()
        officials = await self.store.all_officials()
        user_ids = {r.official.user_id for r in officials.values()} | {o.user_id for _, o in batch.officials}
        accounts = await self.store.accounts(sorted(user_ids))
        plan = build_plan(batch, units, officials, accounts, self.displayname)
        plan.errors.sort(key=lambda e: (e.source, e.line))
        plan.accounts = accounts
        return plan

    async def import_rows(
        self, read: ReadResult, *, dry_run: bool, actor: str | None, progress: Progress | None = None
    ) -> Plan:
        async with self._lock:
            plan = await self.plan(read)
            if plan.ok and plan.changes and not dry_run:
                await self.apply(plan, actor, progress)
        return plan

    async def apply(self, plan: Plan, actor: str | None, progress: Progress | None = None) -> Applied:
        if not plan.ok:
            raise MatrixError(400, Codes.INVALID_PARAM, f"{len(plan.errors)} rows are invalid; nothing was changed")
        accounts = plan.accounts
        now = now_ms()
        applied = Applied(plan)
        ch = Changes([], [], [], [], [], [])
        for u in plan.new_units:
            ch.new_units.append({**self._unit_values(u), "created_ts": now, "updated_ts": now})
        for _, u in plan.changed_units:
            ch.changed_units.append({**self._unit_values(u), "updated_ts": now})
        applied.touched_units = {u.unit_id for u in plan.new_units} | {u.unit_id for _, u in plan.changed_units}
        updates: dict[str, dict[str, Any]] = {}
        for o in plan.new_officials:
            ch.new_officials.append({**self._official_values(o), "created_ts": now, "updated_ts": now})
            acct = accounts.get(o.user_id)
            if acct is None:
                ch.new_accounts.append(
                    {
                        "user_id": o.user_id,
                        "password_hash": None,
                        "admin": False,
                        "locked": False,
                        "created_ts": now,
                        "displayname": plan.displaynames.get(o.user_id),
                        "avatar_url": None,
                        **_flags(o.status),
                    }
                )
            else:
                updates[o.user_id] = self._status_update(o.user_id, acct.deactivated, o.status, applied)
        for old, new in plan.changed_officials:
            ch.changed_officials.append({**self._official_values(new), "updated_ts": now})
            if old.status != new.status:
                acct = accounts.get(new.user_id)
                updates[new.user_id] = self._status_update(
                    new.user_id, bool(acct and acct.deactivated), new.status, applied
                )
        applied.touched_officials = {o.employee_id for o in plan.new_officials} | {
            n.employee_id for _, n in plan.changed_officials
        }
        new_ids = {a["user_id"] for a in ch.new_accounts}
        for user_id, name in plan.displaynames.items():
            if user_id not in new_ids:
                updates.setdefault(user_id, {})["displayname"] = name
                applied.renamed[user_id] = name
        ch.account_updates = [{"user_id": u, **vals} for u, vals in updates.items() if vals]
        try:
            await self.store.apply(ch)
        except IntegrityError:
            raise MatrixError(
                409, Codes.UNKNOWN, "The organisation changed during the import; nothing was changed — run it again"
            ) from None
        if ch.account_updates:  # suspended or deactivated accounts: no cached token may outlive that
            await self.auth.credentials_changed([u["user_id"] for u in ch.account_updates])
        await self._audit(plan, actor)
        await self.follow_up(applied, progress)
        return applied

    @staticmethod
    def _status_update(user_id: str, was_deactivated: bool, status: str, applied: Applied) -> dict[str, Any]:
        vals = _flags(status)
        if status == "deactivated" and not was_deactivated:
            vals["password_hash"] = None
            applied.deactivated.append(user_id)
        return vals

    def _unit_values(self, u: Unit) -> dict[str, Any]:
        return {
            "unit_id": u.unit_id,
            "parent_id": u.parent_id,
            "kind": u.kind,
            "names": _json(u.names),
            "search_key": unit_key(u),
        }

    def _official_values(self, o: Official) -> dict[str, Any]:
        return {
            "employee_id": o.employee_id,
            "user_id": o.user_id,
            "names": _json(o.names),
            "designation": _json(o.designation),
            "unit_id": o.unit_id,
            "email": o.email,
            "phone": o.phone,
            "status": o.status,
            "expires": o.expires,
            "expires_ts": expiry_ms(o),
            "language": o.language,
        }

    async def _audit(self, plan: Plan, actor: str | None) -> None:
        entries = [
            entry(
                "org.import",
                actor,
                None,
                details={
                    "units_new": len(plan.new_units),
                    "units_changed": len(plan.changed_units),
                    "officials_new": len(plan.new_officials),
                    "officials_changed": len(plan.changed_officials),
                },
            )
        ]
        for u in plan.new_units:
            entries.append(entry("org.unit.created", actor, u.unit_id, details={"parent": u.parent_id}))
        for old, new in plan.changed_units:
            entries.append(entry("org.unit.updated", actor, new.unit_id, details={"fields": _fields(old, new)}))
        for o in plan.new_officials:
            entries.append(
                entry(
                    "org.official.created",
                    actor,
                    o.user_id,
                    details={"employee_id": o.employee_id, "unit": o.unit_id, "status": o.status},
                )
            )
        for before, after in plan.changed_officials:
            entries.append(
                entry(
                    "org.official.updated",
                    actor,
                    after.user_id,
                    details={
                        "employee_id": after.employee_id,
                        "fields": _fields(before, after),
                        "unit": after.unit_id,
                        "status": after.status,
                    },
                )
            )
        await self.audit.record_many(entries)

    async def follow_up(self, applied: Applied, progress: Progress | None = None) -> None:
        for i, user_id in enumerate(applied.deactivated):
            await self.auth.deactivate(user_id)
            if progress:
                progress("deactivating", i + 1, len(applied.deactivated))
        for user_id, name in applied.renamed.items():  # re-announced in the user's rooms
            await self.profiles.set(user_id, "displayname", name, check=False)
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


def _fields(old: Any, new: Any) -> list[str]:
    a, b = old.to_json(), new.to_json()
    return [k for k in a if a[k] != b[k]]


def row_errors_text(errors: Sequence[RowError], limit: int = 1000) -> list[str]:
    out = [str(e) for e in errors[:limit]]
    if len(errors) > limit:
        out.append(f"… and {len(errors) - limit} more")
    return out
