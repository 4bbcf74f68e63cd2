"""The organisation directory: /user_directory/search across scripts, officials' extended profile,
the lock on officials' display names, and the directory's view of accounts deactivated elsewhere.

With `user_directory_scope: organisation` (the default) every active official — and every other
active account (admins, staff not in the directory) — is found, whether or not they share a room
with the searcher: the server is a closed user group. With `shared_rooms`, only people who share a
room with the searcher are found, as in plain Matrix.
"""

from __future__ import annotations

from typing import Any

from paigham.clock import now_ms
from paigham.config import Config
from paigham.domain.org import Official, Unit, pick
from paigham.domain.translit import Token, field_score, parse_key, search_key, tokens
from paigham.errors import Codes, MatrixError
from paigham.messages import N_
from paigham.storage.accounts import AccountStore
from paigham.storage.events import EventStore
from paigham.storage.org import OrgStore

MAX_QUERY_WORDS = 8
CANDIDATES = 5000
# How much a match in each field counts, relative to a match in the name.
DESIGNATION_WEIGHT = 0.6
UNIT_WEIGHT = 0.4
FIELD_DESIGNATION = "org.paigham.designation"
FIELD_UNIT = "org.paigham.unit"
FIELD_UNIT_ID = "org.paigham.unit_id"


def official_keys(o: Official) -> dict[str, str]:
    localpart = o.user_id[1:].split(":", 1)[0]
    return {
        "search_name": search_key([*o.names.values(), localpart.replace(".", " ").replace("_", " ")]),
        "search_designation": search_key(list(o.designation.values())),
    }


def unit_key(u: Unit) -> str:
    return search_key([*u.names.values(), u.unit_id.replace("-", " ")])


def score(query: list[Token], name: list[Token], designation: list[Token], unit: list[Token]) -> float:
    """Sum over query words of the best weighted match; 0 if any word matches nothing."""
    total = 0.0
    for n, d, u in zip(
        field_score(query, name), field_score(query, designation), field_score(query, unit), strict=True
    ):
        best = max(n, d * DESIGNATION_WEIGHT, u * UNIT_WEIGHT)
        if best <= 0:
            return 0.0
        total += best
    return total


class UserDirectory:
    def __init__(self, config: Config, store: OrgStore, accounts: AccountStore, events: EventStore) -> None:
        if config.user_directory_scope not in ("organisation", "shared_rooms"):
            raise ValueError("user_directory_scope must be organisation or shared_rooms")
        self.config = config
        self.store = store
        self.accounts = accounts
        self.events = events

    async def search(self, searcher: str, term: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        query = tokens(term)[:MAX_QUERY_WORDS]
        if not query:
            return [], False
        rows = await self.store.search_rows([(t.fold, t.skel) for t in query], CANDIDATES, now_ms())
        scored: list[tuple[float, str, Any]] = []
        for r in rows:
            s = score(query, parse_key(r.search_name), parse_key(r.search_designation), parse_key(r.unit_key))
            if s > 0:
                scored.append((s, (r.displayname or r.user_id).lower(), r))
        scored.sort(key=lambda x: (-x[0], x[1], x[2].user_id))
        shared_only = self.config.user_directory_scope == "shared_rooms"
        results: list[dict[str, Any]] = []
        for _, _, r in scored:
            if shared_only and r.user_id != searcher and not await self.events.shares_room(searcher, r.user_id):
                continue
            results.append(_entry(r.user_id, r.displayname, r.avatar_url))
            if len(results) > limit:
                break
        if len(results) <= limit:
            results.extend(await self._others(searcher, term, limit + 1 - len(results), shared_only))
        return results[:limit], len(results) > limit

    async def _others(self, searcher: str, term: str, room: int, shared_only: bool) -> list[dict[str, Any]]:
        """Accounts that are not officials, by user ID or display name."""
        if room <= 0:
            return []
        found = await self.accounts.search_users(term, 200)
        officials = await self.store.official_users([u.user_id for u in found])
        out = []
        for u in found:
            if u.user_id in officials or u.suspended:
                continue
            if not shared_only or u.user_id == searcher or await self.events.shares_room(searcher, u.user_id):
                out.append(_entry(u.user_id, u.displayname, u.avatar_url))
                if len(out) >= room:
                    break
        return out

    async def profile_fields(self, user_id: str) -> dict[str, Any]:
        """Extended profile fields of an official: designation and unit, in the organisation's language."""
        row = await self.store.official_by_user(user_id)
        if row is None or row.official.status == "deactivated":
            return {}
        o = row.official
        lang = self.config.org_default_language
        out: dict[str, Any] = {FIELD_UNIT_ID: o.unit_id}
        if o.designation:
            out[FIELD_DESIGNATION] = pick(o.designation, lang)
        unit = await self.store.unit(o.unit_id)
        if unit is not None:
            out[FIELD_UNIT] = pick(unit.unit.names, lang)
        return out

    async def guard_profile(self, user_id: str, key: str) -> None:
        """ProfileService guard: officials' display names follow the organisation (if so configured)."""
        if (
            key == "displayname"
            and self.config.org_lock_displayname
            and await self.store.official_by_user(user_id) is not None
        ):
            raise MatrixError(403, Codes.FORBIDDEN, N_("Your display name is set by your organisation's directory"))

    async def account_deactivated(self, user_id: str) -> None:
        """AuthService deactivation hook: the directory follows an account deactivated elsewhere."""
        await self.store.set_status(user_id, "deactivated", now_ms())


def _entry(user_id: str, displayname: str | None, avatar_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"user_id": user_id}
    if displayname is not None:
        out["display_name"] = displayname
    if avatar_url is not None:
        out["avatar_url"] = avatar_url
    return out
