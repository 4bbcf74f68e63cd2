"""One pass over an import: its units whole (they are few), then its officials a chunk at a time.

An import makes two passes over its input: the first plans (validates every row and diffs it against
the database, writing nothing: what `--dry-run` shows); if that finds no error, the second plans again
inside one write transaction and writes each chunk as it is planned, so every row goes in, or none
does. Neither pass holds more than one chunk of rows: across the file it keeps only each official's
employee ID, user ID and line (`Seen`, to find repeats), and the IDs of accounts whose follow-up work
comes after commit (deactivations, renamed accounts). The audit records go to a spool file until
the commit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.audit.service import entry
from paigham.clock import now_ms
from paigham.domain.org import Invalid, Official, Unit, expiry_ms, parse_official, parse_unit
from paigham.org.importer import Input, RowError, SourceRow
from paigham.org.plan import DisplayNamer, Plan, Seen, official_problem, plan_units
from paigham.org.user_directory import unit_key
from paigham.storage.audit import Entry
from paigham.storage.org import AccountState, Changes, OrgStore

Progress = Callable[[str, int, int], None]
CHUNK = 2000  # official rows planned (and written) at a time


def _json(v: Any) -> str:
    return msgspec.json.encode(v).decode()


def _flags(status: str) -> dict[str, Any]:
    if status == "deactivated":
        return {"deactivated": True, "suspended": False}
    return {"deactivated": False, "suspended": status == "suspended"}


def _fields(old: Any, new: Any) -> list[str]:
    a, b = old.to_json(), new.to_json()
    return [k for k in a if a[k] != b[k]]


@dataclass
class Applied:
    """What an applied import changed, for the steps after its commit (IDs only)."""

    plan: Plan
    deactivated: list[str] = field(default_factory=list)  # accounts to log out and take out of rooms
    renamed: list[str] = field(default_factory=list)  # existing accounts whose display name changed
    updated: list[str] = field(default_factory=list)  # accounts whose state changed (cached tokens)
    touched: int = 0  # accounts whose directory entries were rewritten
    audit: IO[bytes] = field(default_factory=lambda: tempfile.TemporaryFile(), repr=False)  # noqa: SIM115
    audited: int = 0

    def record(self, e: Entry) -> None:
        self.audit.write(msgspec.json.encode(e) + b"\n")
        self.audited += 1


class ImportPass:
    """One pass: `conn` None plans only; with a transaction's `conn` it also writes (into `applied`)."""

    def __init__(
        self,
        store: OrgStore,
        server_name: str,
        default_lang: str,
        displayname: DisplayNamer,
        *,
        chunk: int = CHUNK,
        conn: AsyncConnection | None = None,
        applied: Applied | None = None,
        actor: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.server_name = server_name
        self.default_lang = default_lang
        self.displayname = displayname
        self.chunk = chunk
        self.conn = conn
        self.applied = applied
        self.actor = actor
        self.progress = progress
        self.now = now_ms()
        self.units: dict[str, Unit] = {}
        self.seen = Seen()

    @property
    def writing(self) -> bool:
        return self.applied is not None

    async def run(self, source: Input, plan: Plan, total: int = 0, phase: str = "checking") -> None:
        await self._units(source, plan)
        rows: list[SourceRow] = []
        done = 0
        for item in source.records("official"):
            if isinstance(item, RowError):
                plan.errors.append(item)
                continue
            rows.append(item)
            if len(rows) >= self.chunk:
                await self._officials(rows, plan)
                done += len(rows)
                rows = []
                if self.progress and total:
                    self.progress(phase, done, total)
        if rows:
            await self._officials(rows, plan)
            done += len(rows)
        if self.progress and total:
            self.progress(phase, max(done, total), max(done, total))
        await self._renamed_units(plan)

    # -- units ----------------------------------------------------------------------------------
    async def _units(self, source: Input, plan: Plan) -> None:
        batch: list[tuple[SourceRow, Unit]] = []
        first: dict[str, SourceRow] = {}
        for row in source.records("unit"):
            if isinstance(row, RowError):
                plan.errors.append(row)
                continue
            try:
                unit = parse_unit(row.data)
                if unit.unit_id in first:
                    was = first[unit.unit_id]
                    raise Invalid(f"unit {unit.unit_id} appears again (first at {was.source}:{was.line})")
                first[unit.unit_id] = row
                batch.append((row, unit))
            except Invalid as exc:
                plan.errors.append(RowError(row.source, row.line, str(exc)))
        self.units = plan_units(plan, batch, await self.store.units(self.conn))
        if self.applied is None or not plan.ok:
            return
        ch = Changes([], [], [], [], [], [])
        for u in plan.new_units:
            ch.new_units.append({**self._unit_values(u), "created_ts": self.now, "updated_ts": self.now})
            self.applied.record(entry("org.unit.created", self.actor, u.unit_id, details={"parent": u.parent_id}))
        for old, u in plan.changed_units:
            ch.changed_units.append({**self._unit_values(u), "updated_ts": self.now})
            self.applied.record(entry("org.unit.updated", self.actor, u.unit_id, details={"fields": _fields(old, u)}))
        assert self.conn is not None
        await self.store.write(self.conn, ch)

    @staticmethod
    def _unit_values(u: Unit) -> dict[str, Any]:
        return {
            "unit_id": u.unit_id,
            "parent_id": u.parent_id,
            "kind": u.kind,
            "names": _json(u.names),
            "search_key": unit_key(u),
        }

    # -- officials ------------------------------------------------------------------------------
    async def _officials(self, rows: list[SourceRow], plan: Plan) -> None:
        batch: list[tuple[SourceRow, Official]] = []
        for row in rows:
            try:
                off = parse_official(row.data, self.server_name, self.default_lang)
                self.seen.add(row, off)
                batch.append((row, off))
            except Invalid as exc:
                plan.errors.append(RowError(row.source, row.line, str(exc)))
        user_ids = [o.user_id for _, o in batch]
        stored = await self.store.officials_of([o.employee_id for _, o in batch], self.conn)
        owners = await self.store.owners(user_ids, self.conn)
        accounts = await self.store.accounts(user_ids, self.conn)
        new: list[Official] = []
        changed: list[tuple[Official, Official]] = []
        for row, off in batch:
            before = stored.get(off.employee_id)
            reason = official_problem(off, before, owners.get(off.user_id), self.units)
            if reason:
                plan.errors.append(RowError(row.source, row.line, reason))
            elif before is None:
                new.append(off)
                plan.official_new(off, off.user_id in accounts)
            elif before != off:
                changed.append((before, off))
                plan.official_changed(before, off)
            else:
                plan.same_officials += 1
        listed = {o.user_id for o in new} | {n.user_id for _, n in changed}
        names = self._displaynames(plan, [o for _, o in batch], accounts, listed)
        if self.applied is not None and plan.ok:
            await self._write(new, changed, names, accounts)

    def _displaynames(
        self, plan: Plan, offs: list[Official], accounts: dict[str, AccountState], listed: set[str]
    ) -> dict[str, str]:
        """Display names follow the official and their unit: the accounts whose name changes."""
        names: dict[str, str] = {}
        for off in offs:
            want = self.displayname(off, self.units.get(off.unit_id))
            acct = accounts.get(off.user_id)
            if acct is None or acct.displayname != want:
                names[off.user_id] = want
                plan.displaynames += 1
                if off.user_id not in listed:
                    plan.official_line(f"~ display name of {off.user_id} → {want!r}")
        return names

    async def _renamed_units(self, plan: Plan) -> None:
        """Officials not in the file whose unit was renamed: their display names change too."""
        renamed = sorted(new.unit_id for old, new in plan.changed_units if old.names != new.names)
        after = ""
        while renamed:
            page = await self.store.officials_in_units(renamed, after, self.chunk, self.conn)
            if not page:
                return
            after = page[-1].employee_id
            offs = [o for o in page if o.employee_id not in self.seen.employees]
            accounts = await self.store.accounts([o.user_id for o in offs], self.conn)
            names = self._displaynames(plan, offs, accounts, set())
            if self.applied is not None and plan.ok:
                await self._write([], [], names, accounts)

    async def _write(
        self,
        new: list[Official],
        changed: list[tuple[Official, Official]],
        names: dict[str, str],
        accounts: dict[str, AccountState],
    ) -> None:
        applied, now = self.applied, self.now
        assert applied is not None and self.conn is not None
        ch = Changes([], [], [], [], [], [])
        updates: dict[str, dict[str, Any]] = {}
        for o in new:
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
                        "displayname": names.get(o.user_id),
                        "avatar_url": None,
                        **_flags(o.status),
                    }
                )
            else:
                updates[o.user_id] = self._status(o.user_id, acct.deactivated, o.status)
            details: dict[str, Any] = {"employee_id": o.employee_id, "unit": o.unit_id, "status": o.status}
            applied.record(entry("org.official.created", self.actor, o.user_id, details=details))
        for old, o in changed:
            ch.changed_officials.append({**self._official_values(o), "updated_ts": now})
            if old.status != o.status:
                acct = accounts.get(o.user_id)
                updates[o.user_id] = self._status(o.user_id, bool(acct and acct.deactivated), o.status)
            details = {
                "employee_id": o.employee_id,
                "fields": _fields(old, o),
                "unit": o.unit_id,
                "status": o.status,
            }
            applied.record(entry("org.official.updated", self.actor, o.user_id, details=details))
        fresh = {a["user_id"] for a in ch.new_accounts}
        for user_id, name in names.items():
            if user_id not in fresh:
                updates.setdefault(user_id, {})["displayname"] = name
                applied.renamed.append(user_id)
        ch.account_updates = [{"user_id": u, **vals} for u, vals in updates.items() if vals]
        applied.updated.extend(u["user_id"] for u in ch.account_updates)
        applied.touched += await self.store.write(self.conn, ch)

    def _status(self, user_id: str, was_deactivated: bool, status: str) -> dict[str, Any]:
        assert self.applied is not None
        vals = _flags(status)
        if status == "deactivated" and not was_deactivated:
            vals["password_hash"] = None
            self.applied.deactivated.append(user_id)
        return vals

    @staticmethod
    def _official_values(o: Official) -> dict[str, Any]:
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
