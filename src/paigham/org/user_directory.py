"""The organisation directory: /user_directory/search across scripts, officials' extended profile,
the lock on officials' display names, and the directory's view of accounts deactivated elsewhere.

With `user_directory_scope: organisation` (the default) every active official — and every other
active account (admins, staff not in the directory) — is found, whether or not they share a room
with the searcher: the server is a closed user group. With `shared_rooms`, only people who share a
room with the searcher are found, as in plain Matrix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from functools import lru_cache
from typing import Any, TypeVar

from paigham.clock import now_ms
from paigham.config import Config
from paigham.domain.org import Unit, pick
from paigham.domain.translit import Token, field_score, parse_key, search_key, skeleton, tokens, word_score
from paigham.errors import Codes, MatrixError
from paigham.messages import N_
from paigham.storage.accounts import AccountStore
from paigham.storage.directory import DESIGNATION, NAME, SCAN, Listed, Word
from paigham.storage.events import EventStore
from paigham.storage.org import OrgStore

A = TypeVar("A")
B = TypeVar("B")
MAX_QUERY_WORDS = 8
# Rows read per range of the index for a one-word query (its fold, its skeleton, a unit's officials):
# the word itself comes first in each range, so the cap drops only the weaker matches of a short prefix
# (the answer says `limited`, and the next letter typed narrows it). Matches of equal strength are
# ranked by name, so reading more of them only changes which of equals are shown, at a cost per row
# (bench `directory`: a prefix of two or three letters has thousands of holders at 200,000 accounts).
ROWS = 50
# Several words: at most this many accounts matching every word are ranked.
CANDIDATES = 100
PAGE = 50  # candidates checked at a time (suspended, expired, outside the searcher's rooms)
# How much a match in each field counts, relative to a match in the name.
DESIGNATION_WEIGHT = 0.6
UNIT_WEIGHT = 0.4
UNIT_MIN_LETTERS = 2  # a query word shorter than this matches no unit
WEIGHTS = {NAME: 1.0, DESIGNATION: DESIGNATION_WEIGHT}
FIELD_DESIGNATION = "org.paigham.designation"
FIELD_UNIT = "org.paigham.unit"
FIELD_UNIT_ID = "org.paigham.unit_id"


@lru_cache(maxsize=4096)
def _parsed(key: str) -> list[Token]:
    """A unit's stored search key as tokens (units are few; their keys are parsed once per process).
    Shared: not to be changed."""
    return parse_key(key)


def _word(q: Token, units: tuple[str, ...] = ()) -> Word:
    """A query word as the index is searched for it (a skeleton shorter than two letters ranks nothing:
    translit.word_score)."""
    return Word(q.fold, q.skel if len(q.skel) >= 2 else "", units)


def unit_key(u: Unit) -> str:
    return search_key([*u.names.values(), u.unit_id.replace("-", " ")])


class _Scores:
    """Each candidate's best match per query word (weighted), and its rank for equal totals."""

    def __init__(self, query: list[Token]) -> None:
        self.query = query
        self.best: dict[str, list[float]] = {}
        self.rank: dict[str, str] = {}
        self._words: dict[tuple[int, str], int] = {}

    def word(self, i: int, word: str) -> int:
        key = (i, word)
        s = self._words.get(key)
        if s is None:
            s = self._words[key] = word_score(self.query[i], Token(word, skeleton(word)))
        return s

    def add(self, user_id: str, i: int, value: float) -> None:
        if value <= 0:
            return
        row = self.best.get(user_id)
        if row is None:
            row = self.best[user_id] = [0.0] * len(self.query)
        row[i] = max(row[i], value)

    def ordered(self) -> list[str]:
        totals = [(sum(v), u) for u, v in self.best.items() if all(v)]
        totals.sort(key=lambda x: (-x[0], self.rank.get(x[1], ""), x[1]))
        return [u for _, u in totals]


class UserDirectory:
    def __init__(self, config: Config, store: OrgStore, accounts: AccountStore, events: EventStore) -> None:
        if config.user_directory_scope not in ("organisation", "shared_rooms"):
            raise ValueError("user_directory_scope must be organisation or shared_rooms")
        self.config = config
        self.store = store
        self.index = store.directory
        self.accounts = accounts
        self.events = events

    async def search(self, searcher: str, term: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Every active account, ranked the same way: officials by name, designation and unit, other
        accounts by display name and localpart; `limited` when more than `limit` match."""
        if term.startswith("@"):  # a user ID: its localpart is what is indexed
            term = term[1:].split(":", 1)[0]
        query = tokens(term)[:MAX_QUERY_WORDS]
        if not query:
            return [], False
        scores = _Scores(query)
        if len(query) == 1:
            units, listed = await self._one_word(scores)
        else:
            units, listed = await self._every_word(scores)
        for user_id, entry in listed.items():  # the unit of each official among the candidates
            for i, unit_scores in enumerate(units):
                scores.add(user_id, i, unit_scores.get(entry.unit_id or "", 0.0))
        return await self._page(searcher, scores.ordered(), limit, listed)

    async def _both(self, first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
        """Two reads that do not depend on each other: side by side on PostgreSQL (one round trip's wait
        instead of two); one after the other on SQLite, whose reads do not suspend."""
        if self.index.db.reads_suspend:
            return await asyncio.gather(first, second)
        return await first, await second

    async def _units(self, query: list[Token]) -> list[dict[str, float]]:
        """For each query word, the units it matches and the weighted score of the match. A word of one
        letter matches no unit: every unit with a word starting with that letter would count, which
        tells the ranking nothing and costs a listing of every candidate (a word being typed: "rajesh s")."""
        asked = [i for i, q in enumerate(query) if len(q.fold) >= UNIT_MIN_LETTERS]
        found = await self.index.units([_word(query[i]) for i in asked]) if asked else []
        by_word = dict(zip(asked, found, strict=True))
        out: list[dict[str, float]] = []
        for i, q in enumerate(query):
            scored = {u: field_score([q], _parsed(key))[0] * UNIT_WEIGHT for u, key in by_word.get(i, [])}
            out.append({u: s for u, s in scored.items() if s > 0})
        return out

    async def _one_word(self, scores: _Scores) -> tuple[list[dict[str, float]], dict[str, Listed]]:
        """One word: the first rows of its ranges (the word itself first, then longer words in order),
        and the officials of the units it matches. The units and the listing of the candidates (read
        when units count in the ranking) are returned."""
        q = scores.query[0]
        units, rows = await self._both(self._units(scores.query), self.index.matches(_word(q), ROWS))
        for user_id, field_, word, rank in rows:
            scores.add(user_id, 0, scores.word(0, word) * WEIGHTS[field_])
            scores.rank[user_id] = rank
        if not units[0]:
            return units, {}
        for user_id, rank in await self.index.in_units(list(units[0]), ROWS):
            scores.rank[user_id] = rank
            scores.best.setdefault(user_id, [0.0])
        return units, await self.index.listed(list(scores.best), now_ms())

    async def _every_word(self, scores: _Scores) -> tuple[list[dict[str, float]], dict[str, Listed]]:
        """Several words: the accounts holding the first two as a pair in a name or designation (or,
        when none does, the accounts matching every word: driven by the word with the fewest terms,
        the others checked per account in the index), then each word's best match among them. The
        units and the listing of the candidates (read with their terms when it costs no wait, or when
        units count in the ranking) are returned."""
        query = scores.query
        plain = [_word(q) for q in query[:2]]  # a pair is found by the words alone, not their units
        units, found = await self._both(self._units(query), self.index.pairs(plain[0], plain[1], CANDIDATES))
        words = [_word(q, tuple(u)) for q, u in zip(query, units, strict=True)]
        if not found:  # a first word cut short, or matched only by its unit: each word on its own
            sizes = [await self.index.size(w) if not w.units else SCAN for w in words]
            drive = min(range(len(words)), key=lambda i: (sizes[i], -len(words[i].fold), i))
            found = await self.index.holders(words[drive], words[:drive] + words[drive + 1 :], CANDIDATES)
        chosen = sorted(found)
        for user_id in chosen:
            scores.best.setdefault(user_id, [0.0] * len(query))
        # A skeleton shorter than two letters ranks nothing (word_score): its range is not read.
        if any(units) or self.index.db.reads_suspend:
            matched, listed = await self._both(
                self.index.matches_of(chosen, words), self.index.listed(chosen, now_ms())
            )
        else:
            matched, listed = await self.index.matches_of(chosen, words), {}
        for i, rows in enumerate(matched):
            for user_id, field_, word, rank in rows:
                scores.add(user_id, i, scores.word(i, word) * WEIGHTS[field_])
                scores.rank[user_id] = rank
        return units, listed

    async def _page(
        self, searcher: str, ordered: list[str], limit: int, listed: dict[str, Listed]
    ) -> tuple[list[dict[str, Any]], bool]:
        """The first `limit` candidates that may be shown to the searcher, and whether there are more."""
        shared_only = self.config.user_directory_scope == "shared_rooms"
        results: list[dict[str, Any]] = []
        for start in range(0, len(ordered), PAGE):
            page = ordered[start : start + PAGE]
            missing = [u for u in page if u not in listed]
            if missing:
                listed.update(await self.index.listed(missing, now_ms()))
            for user_id in page:
                entry = listed.get(user_id)
                if entry is None or not entry.visible:
                    continue
                if shared_only and user_id != searcher and not await self.events.shares_room(searcher, user_id):
                    continue
                if len(results) == limit:
                    return results, True
                results.append(_entry(user_id, entry.displayname, entry.avatar_url))
        return results, False

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
