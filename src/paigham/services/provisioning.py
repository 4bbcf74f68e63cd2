"""Bulk provisioning: many accounts without passwords at once (`paigham user import accounts.csv`).

For staff who are not in the organisation's import (contractors, support desks, accounts of other
bodies): each row names a user ID and, optionally, a display name. Accounts that exist are left as
they are, so the same file can be imported again; the new ones are created in one transaction (all
or nothing) and enter the user directory at once. They get no password, as imported officials do:
the admin sets one (`paigham user reset-password`, the admin API) or hands out a sign-in method.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from paigham.clock import now_ms
from paigham.errors import MatrixError
from paigham.services.auth import AuthService
from paigham.services.ports import AuditLog

MAX_ACCOUNTS = 1_000_000
MAX_DISPLAYNAME = 256  # as a profile's display name (services/profile.py)


@dataclass
class AccountsPlan:
    new: list[tuple[str, str | None]] = field(default_factory=list)  # (user ID, display name)
    existing: int = 0
    errors: list[str] = field(default_factory=list)  # "<file>:<line>: <reason>"

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class AccountRow:
    source: str
    line: int
    user: str  # a localpart or a full user ID
    displayname: str | None


def read_accounts_csv(text: str, source: str) -> tuple[list[AccountRow], list[str]]:
    """Rows of a CSV file with the columns `user_id` and (optional) `displayname`."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    if "user_id" not in header or set(header) - {"user_id", "displayname"}:
        return [], [f"{source}:1: the header must be user_id and, optionally, displayname"]
    rows: list[AccountRow] = []
    errors: list[str] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                errors.append(f"{source}:{reader.line_num}: has {len(cells)} cells but the header has {len(header)}")
                continue
            data = dict(zip(header, (c.strip() for c in cells), strict=True))
            rows.append(AccountRow(source, reader.line_num, data["user_id"], data.get("displayname") or None))
            if len(rows) > MAX_ACCOUNTS:
                return rows, [f"{source}: more than {MAX_ACCOUNTS} accounts; split the file"]
    except csv.Error as exc:
        errors.append(f"{source}:{reader.line_num}: CSV error: {exc}")
    return rows, errors


class Provisioning:
    def __init__(self, auth: AuthService, audit: AuditLog) -> None:
        self.auth = auth
        self.audit = audit

    async def plan(self, rows: list[AccountRow]) -> AccountsPlan:
        """Check every row (a valid, unreserved localpart of this server, a display name of at most 256
        characters, each user once) and sort the new accounts from the existing ones."""
        plan = AccountsPlan()
        seen: dict[str, AccountRow] = {}
        for row in rows:
            where = f"{row.source}:{row.line}"
            localpart = row.user[1:].split(":", 1)[0] if row.user.startswith("@") else row.user
            try:
                user_id = self.auth.check_localpart(localpart)
            except MatrixError as exc:
                plan.errors.append(f"{where}: {exc.error}")
                continue
            if row.user.startswith("@") and row.user != user_id:
                plan.errors.append(f"{where}: {row.user} is not a user ID of this server")
            elif user_id in seen:
                plan.errors.append(f"{where}: {user_id} appears again (first at line {seen[user_id].line})")
            elif row.displayname is not None and len(row.displayname) > MAX_DISPLAYNAME:
                plan.errors.append(f"{where}: the display name is longer than {MAX_DISPLAYNAME} characters")
            else:
                seen[user_id] = row
        existing = await self.auth.store.existing(list(seen))
        plan.existing = len(existing)
        plan.new = [(u, r.displayname) for u, r in seen.items() if u not in existing]
        return plan

    async def apply(self, plan: AccountsPlan, actor: str | None, progress: Callable[[int], None] | None = None) -> None:
        await self.auth.store.create_users(plan.new, now_ms(), progress)
        await self.audit.record(
            "admin.import_users", actor, None, None, None, {"created": len(plan.new), "existing": plan.existing}
        )
