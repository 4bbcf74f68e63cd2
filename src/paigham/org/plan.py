"""An import plan: the validated records of a batch compared with what is stored — the diff.

Building a plan reads the database but writes nothing; `--dry-run` prints it and stops. A plan with
errors is never applied: the whole batch goes in, or nothing does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from paigham.domain.org import Invalid, Official, Unit, changed_fields, find_cycle, parse_official, parse_unit
from paigham.org.importer import RowError, SourceRow
from paigham.storage.org import AccountState, OfficialRow, UnitRow

DisplayNamer = Callable[[Official, Unit | None], str]


@dataclass
class Plan:
    errors: list[RowError] = field(default_factory=list)
    new_units: list[Unit] = field(default_factory=list)
    changed_units: list[tuple[Unit, Unit]] = field(default_factory=list)
    same_units: int = 0
    new_officials: list[Official] = field(default_factory=list)
    changed_officials: list[tuple[Official, Official]] = field(default_factory=list)
    same_officials: int = 0
    adopted: set[str] = field(default_factory=set)  # user IDs of existing accounts that become officials
    # user ID -> new display name, for every account whose display name changes (renamed units included)
    displaynames: dict[str, str] = field(default_factory=dict)
    accounts: dict[str, AccountState] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def changes(self) -> int:
        return (
            len(self.new_units)
            + len(self.changed_units)
            + len(self.new_officials)
            + len(self.changed_officials)
            + len(self.displaynames)
        )

    def summary(self) -> str:
        return (
            f"units: {len(self.new_units)} new, {len(self.changed_units)} changed, {self.same_units} unchanged; "
            f"officials: {len(self.new_officials)} new, {len(self.changed_officials)} changed, "
            f"{self.same_officials} unchanged"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "errors": [{"source": e.source, "line": e.line, "reason": e.reason} for e in self.errors],
            "units": {
                "new": [u.unit_id for u in self.new_units],
                "changed": {new.unit_id: changed_fields(old, new) for old, new in self.changed_units},
                "unchanged": self.same_units,
            },
            "officials": {
                "new": [o.employee_id for o in self.new_officials],
                "changed": {new.employee_id: changed_fields(old, new) for old, new in self.changed_officials},
                "unchanged": self.same_officials,
            },
            "display_names": len(self.displaynames),
        }

    def lines(self) -> Iterator[str]:
        """The diff, one line per change (what `paigham org import --dry-run` prints)."""
        for u in self.new_units:
            yield f"+ unit {u.unit_id} ({u.kind}) {next(iter(u.names.values()))!r} under {u.parent_id or '(top)'}"
        for old_unit, new_unit in self.changed_units:
            yield f"~ unit {new_unit.unit_id}: " + "; ".join(changed_fields(old_unit, new_unit))
        for o in self.new_officials:
            adopt = " (existing account)" if o.user_id in self.adopted else ""
            yield f"+ official {o.employee_id} {o.user_id}{adopt} {next(iter(o.names.values()))!r} in {o.unit_id}"
        for old, new in self.changed_officials:
            yield f"~ official {new.employee_id}: " + "; ".join(changed_fields(old, new))
        touched = {o.user_id for o in self.new_officials} | {n.user_id for _, n in self.changed_officials}
        others = sorted(u for u in self.displaynames if u not in touched)
        for user_id in others:
            yield f"~ display name of {user_id} → {self.displaynames[user_id]!r}"


@dataclass
class Batch:
    """Parsed records of one import, with where each came from."""

    units: list[tuple[SourceRow, Unit]] = field(default_factory=list)
    officials: list[tuple[SourceRow, Official]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def parse_rows(rows: list[SourceRow], server_name: str, default_lang: str) -> Batch:
    batch = Batch()
    seen_units: dict[str, SourceRow] = {}
    seen_emp: dict[str, SourceRow] = {}
    seen_user: dict[str, tuple[str, SourceRow]] = {}
    for row in rows:
        try:
            if row.kind == "unit":
                unit = parse_unit(row.data)
                if unit.unit_id in seen_units:
                    first = seen_units[unit.unit_id]
                    raise Invalid(f"unit {unit.unit_id} appears again (first at {first.source}:{first.line})")
                seen_units[unit.unit_id] = row
                batch.units.append((row, unit))
            else:
                off = parse_official(row.data, server_name, default_lang)
                if off.employee_id in seen_emp:
                    first = seen_emp[off.employee_id]
                    raise Invalid(f"employee {off.employee_id} appears again (first at {first.source}:{first.line})")
                other = seen_user.get(off.user_id)
                if other is not None:
                    raise Invalid(
                        f"user {off.user_id} is also given to employee {other[0]} ({other[1].source}:{other[1].line})"
                    )
                seen_emp[off.employee_id] = row
                seen_user[off.user_id] = (off.employee_id, row)
                batch.officials.append((row, off))
        except Invalid as exc:
            batch.errors.append(RowError(row.source, row.line, str(exc)))
    return batch


def build_plan(
    batch: Batch,
    units: dict[str, UnitRow],
    officials: dict[str, OfficialRow],
    accounts: dict[str, AccountState],
    displayname: DisplayNamer,
) -> Plan:
    plan = Plan(errors=list(batch.errors))
    merged = {uid: r.unit for uid, r in units.items()}
    merged.update({u.unit_id: u for _, u in batch.units})
    parents = {uid: u.parent_id for uid, u in merged.items()}
    for row, unit in batch.units:
        if unit.parent_id is not None and unit.parent_id not in merged:
            plan.errors.append(RowError(row.source, row.line, f"parent unit {unit.parent_id} does not exist"))
        elif (cycle := find_cycle(parents, unit.unit_id)) is not None:
            plan.errors.append(RowError(row.source, row.line, "units would form a loop: " + " → ".join(cycle)))
        elif unit.unit_id not in units:
            plan.new_units.append(unit)
        elif units[unit.unit_id].unit != unit:
            plan.changed_units.append((units[unit.unit_id].unit, unit))
        else:
            plan.same_units += 1
    by_user = {r.official.user_id: emp for emp, r in officials.items()}
    for row, off in batch.officials:
        stored = officials.get(off.employee_id)
        owner = by_user.get(off.user_id)
        if off.unit_id not in merged:
            reason = f"unit {off.unit_id} does not exist"
        elif stored is not None and stored.official.user_id != off.user_id:
            reason = f"user_id cannot change (employee {off.employee_id} is {stored.official.user_id})"
        elif owner is not None and owner != off.employee_id:
            reason = f"user {off.user_id} already belongs to employee {owner}"
        else:
            reason = ""
        if reason:
            plan.errors.append(RowError(row.source, row.line, reason))
        elif stored is None:
            plan.new_officials.append(off)
            if off.user_id in accounts:
                plan.adopted.add(off.user_id)
        elif stored.official != off:
            plan.changed_officials.append((stored.official, off))
        else:
            plan.same_officials += 1
    if plan.errors:
        return plan
    # Display names follow the official and their unit: recompute for everyone a change touches.
    final = {emp: r.official for emp, r in officials.items()}
    final.update({o.employee_id: o for _, o in batch.officials})
    renamed = {new.unit_id for old, new in plan.changed_units if old.names != new.names}
    in_batch = {o.employee_id for _, o in batch.officials}
    for emp, off in final.items():
        if emp not in in_batch and off.unit_id not in renamed:
            continue
        want = displayname(off, merged.get(off.unit_id))
        acct = accounts.get(off.user_id)
        if acct is None or acct.displayname != want:
            plan.displaynames[off.user_id] = want
    return plan
