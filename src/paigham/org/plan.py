"""An import plan: the validated records of a batch compared with what is stored — the diff.

Building a plan reads the database but writes nothing; `--dry-run` prints it and stops. A plan with
errors is never applied: the whole batch goes in, or nothing does.

A plan holds counts, not records: the units (a few hundred to a few thousand) are kept whole, the
officials are planned a chunk at a time (org/passes.py) and only their first `MAX_LINES` changes are
kept as text (the CLI's dry run writes every one to a spool as it goes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from paigham.domain.org import Invalid, Official, Unit, changed_fields, find_cycle
from paigham.org.importer import Input, RowError, SourceRow
from paigham.storage.org import UnitRow

DisplayNamer = Callable[[Official, Unit | None], str]
MAX_LINES = 10_000  # official changes a plan keeps as text and in its JSON diff


@dataclass
class Plan:
    errors: list[RowError] = field(default_factory=list)
    new_units: list[Unit] = field(default_factory=list)
    changed_units: list[tuple[Unit, Unit]] = field(default_factory=list)
    same_units: int = 0
    new_officials: int = 0
    changed_officials: int = 0
    same_officials: int = 0
    adopted: int = 0  # existing accounts that become officials
    displaynames: int = 0  # accounts whose display name changes (renamed units included)
    # The first MAX_LINES changes of officials: as text (in file order), and for the JSON diff.
    official_lines: list[str] = field(default_factory=list, repr=False)
    new_ids: list[str] = field(default_factory=list, repr=False)
    changed: dict[str, list[str]] = field(default_factory=dict, repr=False)
    lines_left_out: int = 0
    emit: Callable[[str], Any] | None = field(default=None, repr=False)  # every change line, as found
    source: Input | None = field(default=None, repr=False)  # what was planned (read again to apply)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def changes(self) -> int:
        return (
            len(self.new_units)
            + len(self.changed_units)
            + self.new_officials
            + self.changed_officials
            + self.displaynames
        )

    def summary(self) -> str:
        return (
            f"units: {len(self.new_units)} new, {len(self.changed_units)} changed, {self.same_units} unchanged; "
            f"officials: {self.new_officials} new, {self.changed_officials} changed, "
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
                "new": self.new_ids,
                "changed": self.changed,
                "unchanged": self.same_officials,
                "counts": {"new": self.new_officials, "changed": self.changed_officials},
            },
            "display_names": self.displaynames,
        }

    def unit_lines(self) -> Iterator[str]:
        for u in self.new_units:
            yield f"+ unit {u.unit_id} ({u.kind}) {next(iter(u.names.values()))!r} under {u.parent_id or '(top)'}"
        for old_unit, new_unit in self.changed_units:
            yield f"~ unit {new_unit.unit_id}: " + "; ".join(changed_fields(old_unit, new_unit))

    def lines(self) -> Iterator[str]:
        """The diff, one line per change (the units, then the officials in file order); past MAX_LINES
        changes of officials, a last line counts the rest."""
        yield from self.unit_lines()
        yield from self.official_lines
        if self.lines_left_out:
            yield f"… and {self.lines_left_out} more changes"

    def official_line(self, line: str) -> None:
        if self.emit is not None:
            self.emit(line)
        if len(self.official_lines) < MAX_LINES:
            self.official_lines.append(line)
        else:
            self.lines_left_out += 1

    def official_new(self, o: Official, adopted: bool) -> None:
        self.new_officials += 1
        self.adopted += adopted
        if len(self.new_ids) < MAX_LINES:
            self.new_ids.append(o.employee_id)
        adopt = " (existing account)" if adopted else ""
        self.official_line(
            f"+ official {o.employee_id} {o.user_id}{adopt} {next(iter(o.names.values()))!r} in {o.unit_id}"
        )

    def official_changed(self, old: Official, new: Official) -> None:
        self.changed_officials += 1
        fields = changed_fields(old, new)
        if len(self.changed) < MAX_LINES:
            self.changed[new.employee_id] = fields
        self.official_line(f"~ official {new.employee_id}: " + "; ".join(fields))


class Seen:
    """What an import remembers of every official row across the file, to find repeats: a few dozen bytes
    a row (its employee ID, user ID and where it was), never the row."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.employees: dict[str, int] = {}  # employee ID -> source index << 32 | line
        self.users: dict[str, str] = {}  # user ID -> employee ID

    def _where(self, packed: int) -> str:
        return f"{self.sources[packed >> 32]}:{packed & 0xFFFFFFFF}"

    def add(self, row: SourceRow, off: Official) -> None:
        """Remember the row, or raise Invalid if its employee or its account came before."""
        first = self.employees.get(off.employee_id)
        if first is not None:
            raise Invalid(f"employee {off.employee_id} appears again (first at {self._where(first)})")
        other = self.users.get(off.user_id)
        if other is not None:
            raise Invalid(
                f"user {off.user_id} is also given to employee {other} ({self._where(self.employees[other])})"
            )
        if not self.sources or self.sources[-1] != row.source:
            self.sources.append(row.source)
        self.employees[off.employee_id] = (len(self.sources) - 1) << 32 | row.line
        self.users[off.user_id] = off.employee_id


def plan_units(plan: Plan, batch: list[tuple[SourceRow, Unit]], units: dict[str, UnitRow]) -> dict[str, Unit]:
    """Check the batch's units against the stored tree (parents exist, no loops) and diff them; returns
    every unit as it will be (stored, replaced by the batch's)."""
    merged = {uid: r.unit for uid, r in units.items()}
    merged.update({u.unit_id: u for _, u in batch})
    parents = {uid: u.parent_id for uid, u in merged.items()}
    for row, unit in batch:
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
    return merged


def official_problem(off: Official, stored: Official | None, owner: str | None, units: dict[str, Unit]) -> str:
    """Why an official of the batch cannot be applied to what is stored ("" if it can)."""
    if off.unit_id not in units:
        return f"unit {off.unit_id} does not exist"
    if stored is not None and stored.user_id != off.user_id:
        return f"user_id cannot change (employee {off.employee_id} is {stored.user_id})"
    if owner is not None and owner != off.employee_id:
        return f"user {off.user_id} already belongs to employee {owner}"
    return ""
