"""The user directory's index: the words of every account that is not deactivated (its display name in
any script and its localpart; an official's names in every language and designation), one row per
term in `directory_terms`, whose primary key is a B-tree on the term (storage/directory_schema.py).

`refresh` rewrites the rows of some accounts inside the caller's write transaction; every write of a
display name, a deactivation or an official goes through it (AccountStore, AdminStore, OrgStore), so
the index never lags the accounts. `backfill` indexes accounts that have no rows (a database made
before the index existed); the server runs it at start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.translit import TERM_LEN, index_terms, pair_terms, term_range
from paigham.storage.database import Database

NAME, DESIGNATION = 0, 1
CHUNK = 900
# Terms of a query's driving word read at most (the exact word first): bounds a search of several
# common words (the user directory picks the word with the fewest terms to drive).
SCAN = 2000
BULK_ANALYSE = 1000  # accounts changed at once from which the index's statistics are renewed
# PostgreSQL's statistics of the term columns, finer than the default 100: with the default histogram the
# planner thought a two-letter range ("yu", 4,381 terms at 200,000 accounts) held 28 rows, read and sorted
# all of them (27 ms, hundreds cold) instead of the first 50 in index order (0.3 ms). ANALYZE then samples
# more rows (about 16 s at 3 million terms, after bulk changes and in autovacuum).
TERM_STATISTICS = 10_000
_TERM_STATISTICS = (
    "SELECT count(*) FROM pg_attribute WHERE attrelid IN ('directory_terms'::regclass, 'directory_pairs'::regclass) "
    "AND attname = 'term' AND attstattarget = $1"
)
_STATE = (
    "SELECT u.user_id, u.displayname, u.deactivated, o.names, o.designation FROM users u "
    "LEFT JOIN officials o ON o.user_id = u.user_id WHERE u.user_id = ANY($1::text[])"
)
_INSERT = (
    "INSERT INTO directory_terms (term, user_id, field, word, rank) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
)
_INSERT_PAIR = "INSERT INTO directory_pairs (term, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
_PAIR = "SELECT user_id FROM directory_pairs WHERE term >= ${} AND term < ${} LIMIT $5"
_PAIRS = f"SELECT * FROM ({_PAIR.format(1, 2)}) a UNION ALL SELECT * FROM ({_PAIR.format(3, 4)}) b"
_MISSING = (
    "SELECT u.user_id FROM users u WHERE NOT u.deactivated AND u.user_id > $1 AND NOT EXISTS "
    "(SELECT 1 FROM directory_terms t WHERE t.user_id = u.user_id) ORDER BY u.user_id LIMIT $2"
)
_RANGE = (
    "SELECT user_id, field, word, rank FROM directory_terms WHERE term >= ${} AND term < ${} ORDER BY term LIMIT $5"
)
# The first rows of two ranges (a word's fold and its skeleton) in one round trip.
_MATCH = f"SELECT * FROM ({_RANGE.format(1, 2)}) a UNION ALL SELECT * FROM ({_RANGE.format(3, 4)}) b"
_HOLDERS = "SELECT user_id FROM directory_terms WHERE term >= $1 AND term < $2 LIMIT $3"
# Probed per account on the (user_id, term) index (SQLite would rather scan the term's range): the
# accounts at $1, then each word's ranges (`tests`, from _ranges).
_MATCH_OF_PG = (
    "SELECT t.user_id, t.field, t.word, t.rank, t.term FROM unnest($1::text[]) AS x(user_id) CROSS JOIN LATERAL "
    "(SELECT * FROM directory_terms t WHERE t.user_id = x.user_id AND ({tests}) OFFSET 0) t"
)
_MATCH_OF_SQLITE = (
    "SELECT t.user_id, t.field, t.word, t.rank, t.term FROM json_each($1) AS j CROSS JOIN directory_terms AS t "
    "INDEXED BY directory_terms_user WHERE t.user_id = j.value AND ({tests})"
)
_LISTED_SQLITE = (
    "SELECT u.user_id, u.displayname, u.avatar_url, u.suspended, u.deactivated, o.status, o.expires_ts, o.unit_id "
    "FROM users u LEFT JOIN officials o ON o.user_id = u.user_id WHERE u.user_id = ANY($1::text[])"
)
# PostgreSQL: each account probed in the two unique indexes (its plan made while the tables were small
# hashed both tables whole).
_LISTED_PG = (
    "SELECT u.user_id, u.displayname, u.avatar_url, u.suspended, u.deactivated, o.status, o.expires_ts, o.unit_id "
    "FROM unnest($1::text[]) AS x(user_id) "
    "CROSS JOIN LATERAL (SELECT * FROM users WHERE user_id = x.user_id OFFSET 0) u "
    "LEFT JOIN LATERAL (SELECT * FROM officials WHERE user_id = x.user_id OFFSET 0) o ON TRUE"
)
_UNITS_PG = "SELECT unit_id, search_key FROM org_units WHERE search_key LIKE ANY($1::text[])"
_UNITS_SQLITE = (
    "SELECT unit_id, search_key FROM org_units "
    "WHERE EXISTS (SELECT 1 FROM json_each($1) AS j WHERE search_key LIKE j.value)"
)
# Each unit probed in its index, in turn, until enough are found. Left to themselves, SQLite walked the
# status index (every active official, for a unit with none: the ministry's own, which "Ka…" matches)
# and PostgreSQL, planning while `officials` had no statistics (never analyzed: autovacuum off),
# intersected the unit index with the status index — every active official's row ID (5 ms at 100,000)
# for 50 rows. On PostgreSQL the status is tested outside the probe (OFFSET 0 keeps it there).
_IN_UNITS_SQLITE = (
    "SELECT o.user_id, u.displayname FROM json_each($1) AS x CROSS JOIN officials AS o INDEXED BY officials_unit "
    "JOIN users u ON u.user_id = o.user_id "
    "WHERE o.unit_id = x.value AND o.status = 'active' AND NOT u.deactivated LIMIT $2"
)
_IN_UNITS_PG = (
    "SELECT o.user_id, u.displayname FROM unnest($1::text[]) AS x(unit_id) "
    "CROSS JOIN LATERAL (SELECT user_id, status FROM officials WHERE unit_id = x.unit_id OFFSET 0) o "
    "JOIN users u ON u.user_id = o.user_id WHERE o.status = 'active' AND NOT u.deactivated LIMIT $2"
)


@dataclass(frozen=True, slots=True)
class Listed:
    """What a search shows of an account, and whether it may be shown now."""

    user_id: str
    displayname: str | None
    avatar_url: str | None
    unit_id: str | None
    visible: bool


@dataclass(frozen=True, slots=True)
class Word:
    """A query word as the index is searched for it: its fold, its skeleton ("" when too short to
    count) and the units whose names it matches."""

    fold: str
    skel: str
    units: tuple[str, ...] = ()

    def ranges(self) -> tuple[str, str, str, str]:
        """[low, high) of the fold's terms, then of the skeleton's (the fold's again without one)."""
        return (*term_range(self.fold), *term_range("~" + self.skel if self.skel else self.fold))


def _ranges(alias: str, n: int) -> str:
    """The test of a Word's ranges on `alias`.term, with its four bounds at $n+1..$n+4."""
    t = f"{alias}.term"
    return f"({t} >= ${n + 1} AND {t} < ${n + 2}) OR ({t} >= ${n + 3} AND {t} < ${n + 4})"


def rank_of(user_id: str, displayname: str | None) -> str:
    return (displayname or user_id[1:].split(":", 1)[0]).lower()[:TERM_LEN]


def account_terms(
    user_id: str, displayname: str | None, names: dict[str, str], designation: dict[str, str]
) -> list[tuple[str, str, int, str, str]]:
    """The index rows of one account: an official's names (every language) and designation, another
    account's display name; and the localpart. (An official's display name is left out: the
    organisation's format builds it from name, designation and unit, which would then all count as
    much as the name.)"""
    rank = rank_of(user_id, displayname)
    texts = [*(names.values() if names else [displayname or ""]), user_id[1:].split(":", 1)[0]]
    rows = [(term, user_id, NAME, word, rank) for term, word in index_terms(texts)]
    rows += [(term, user_id, DESIGNATION, word, rank) for term, word in index_terms(list(designation.values()))]
    return rows


def account_pairs(
    user_id: str, displayname: str | None, names: dict[str, str], designation: dict[str, str]
) -> set[str]:
    """The word pairs of an account's names (or display name) and designation."""
    return pair_terms([*(names.values() if names else [displayname or ""]), *designation.values()])


def _json(text: str | None) -> dict[str, str]:
    return msgspec.json.decode(text) if text else {}


class DirectoryIndex:
    def __init__(self, db: Database) -> None:
        self.db = db
        # PostgreSQL: hold the accounts' rows while their terms are rewritten, so a backfill in one
        # worker cannot write a display name that a profile change in another has just replaced.
        self._analyse = db.per_engine(sqlite="", postgresql="ANALYZE directory_terms, directory_pairs")
        self._tuned = db.per_engine(sqlite=True, postgresql=False)
        self._state = db.per_engine(sqlite=_STATE, postgresql=_STATE + " FOR UPDATE OF u")
        self._match_of = db.per_engine(sqlite=_MATCH_OF_SQLITE, postgresql=_MATCH_OF_PG)
        self._units = db.per_engine(sqlite=_UNITS_SQLITE, postgresql=_UNITS_PG)
        self._listed = db.per_engine(sqlite=_LISTED_SQLITE, postgresql=_LISTED_PG)
        self._in_units = db.per_engine(sqlite=_IN_UNITS_SQLITE, postgresql=_IN_UNITS_PG)

    # -- writes (inside the caller's transaction) ---------------------------------------------------
    async def refresh(self, conn: AsyncConnection, user_ids: Sequence[str]) -> None:
        """Rewrite the terms of these accounts from what the transaction sees now."""
        ids = sorted(set(user_ids))
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            state = await self.db.fetch(self._state, chunk, conn=conn)
            await self.db.run("DELETE FROM directory_terms WHERE user_id = ANY($1::text[])", chunk, conn=conn)
            await self.db.run("DELETE FROM directory_pairs WHERE user_id = ANY($1::text[])", chunk, conn=conn)
            live = [(r[0], r[1], _json(r[3]), _json(r[4])) for r in state if not r[2]]
            await self.db.run_many(_INSERT, [row for a in live for row in account_terms(*a)], conn=conn)
            await self.db.run_many(_INSERT_PAIR, [(t, a[0]) for a in live for t in account_pairs(*a)], conn=conn)

    async def settle(self, accounts: int) -> None:
        """After a bulk change (an import, the backfill): PostgreSQL's planner learns the index's new
        size at once (until autovacuum analyses it, it would take a range of thousands for a few rows
        and sort them instead of reading the first ones in order). SQLite plans without statistics."""
        if accounts >= BULK_ANALYSE and self._analyse:
            await self.tune()
            async with self.db.write() as conn:
                await self.db.run(self._analyse, conn=conn)

    async def tune(self) -> None:
        """(PostgreSQL) The term columns' statistics target at TERM_STATISTICS (once per database: the
        setting is kept in the catalog and autovacuum's analyses use it too)."""
        if self._tuned:
            return
        if int((await self.db.fetch(_TERM_STATISTICS, TERM_STATISTICS))[0][0]) < 2:
            async with self.db.write() as conn:
                for table in ("directory_terms", "directory_pairs"):
                    await self.db.run(
                        f"ALTER TABLE {table} ALTER COLUMN term SET STATISTICS {TERM_STATISTICS}", conn=conn
                    )
        self._tuned = True

    async def backfill(self, progress: Callable[[int], None] | None = None) -> int:
        """Index every active account that has no terms yet, a chunk per transaction; how many."""
        await self.tune()
        done, after = 0, ""
        while True:
            rows = await self.db.fetch(_MISSING, after, CHUNK)
            if not rows:
                await self.settle(done)
                return done
            async with self.db.write() as conn:
                await self.refresh(conn, [r[0] for r in rows])
            done += len(rows)
            after = rows[-1][0]
            if progress is not None:
                progress(done)

    # -- reads ----------------------------------------------------------------------------------
    async def matches(self, word: Word, limit: int) -> list[tuple[str, int, str, str]]:
        """(user, field, word, rank) of terms starting with the word's fold, then of those starting with
        '~' + its skeleton (each range from the exact word on, in term order; at most `limit` each)."""
        skel = term_range("~" + word.skel) if word.skel else ("", "")  # an empty range without one
        return await self.db.fetch(_MATCH, *term_range(word.fold), *skel, limit)  # type: ignore[return-value]

    async def pairs(self, first: Word, second: Word, limit: int) -> set[str]:
        """Accounts with a name or designation holding the first word whole and a word starting with
        the second (in either order; by folds, or by skeletons when both have one): at most `limit`
        of each, in one round trip."""
        skel = ("", "")  # an empty range without skeletons
        if first.skel and second.skel:
            skel = term_range(f"~{first.skel} {second.skel}")
        rows = await self.db.fetch(_PAIRS, *term_range(f"{first.fold} {second.fold}"), *skel, limit)
        return {r[0] for r in rows}

    async def size(self, word: Word) -> int:
        """How many terms the word's ranges hold, counted up to SCAN (which word should drive)."""
        sql = f"SELECT count(*) FROM (SELECT 1 FROM directory_terms a WHERE {_ranges('a', 0)} LIMIT $5) c"
        return int((await self.db.fetch(sql, *word.ranges(), SCAN))[0][0])

    async def holders(self, drive: Word, others: Sequence[Word], limit: int) -> set[str]:
        """Accounts (at most `limit`) with a term of the driving word (or in one of its units) that
        also match each of the other words: the first SCAN terms of the driving word's ranges are
        read, the others probed per account on the (user_id, term) index."""
        where: list[str] = []
        args: list[Any] = []
        for w in others:
            n = len(args)
            test = f"EXISTS (SELECT 1 FROM directory_terms b WHERE b.user_id = a.user_id AND ({_ranges('b', n)}))"
            if w.units:
                test += (
                    " OR EXISTS (SELECT 1 FROM officials o WHERE o.user_id = a.user_id"
                    f" AND o.unit_id = ANY(${n + 5}::text[]))"
                )
            where.append(f"({test})")
            args += [*w.ranges(), *([list(w.units)] if w.units else [])]
        n = len(args)
        tests = "".join(f" AND {t}" for t in where)
        scan = f"SELECT user_id FROM directory_terms a WHERE {_ranges('a', n)} LIMIT ${n + 6}"
        sql = f"SELECT a.user_id FROM ({scan}) a WHERE TRUE{tests} LIMIT ${n + 5}"
        found = {r[0] for r in await self.db.fetch(sql, *args, *drive.ranges(), limit, SCAN)}
        if drive.units:
            sql = (
                f"SELECT a.user_id FROM officials a WHERE a.unit_id = ANY(${n + 1}::text[]) AND a.status = 'active'"
                f"{tests} LIMIT ${n + 2}"
            )
            found |= {r[0] for r in await self.db.fetch(sql, *args, list(drive.units), limit)}
        return found

    async def matches_of(self, user_ids: Sequence[str], words: Sequence[Word]) -> list[list[tuple[str, int, str, str]]]:
        """For each word, (user, field, word, rank) of these accounts' terms that start with its fold or
        '~' + its skeleton: one statement per CHUNK accounts for all the words."""
        out: list[list[tuple[str, int, str, str]]] = [[] for _ in words]
        if not words:
            return out
        bounds = [b for w in words for b in w.ranges()]
        sql = self._match_of.format(tests=" OR ".join(f"({_ranges('t', 4 * i + 1)})" for i in range(len(words))))
        prefixes = [(w.fold, "~" + w.skel if w.skel else w.fold) for w in words]
        for i in range(0, len(user_ids), CHUNK):
            rows = await self.db.fetch(sql, list(user_ids[i : i + CHUNK]), *bounds)
            for user_id, field_, word, rank, term in rows:
                for k, (fold, skel) in enumerate(prefixes):
                    if term.startswith(fold) or term.startswith(skel):
                        out[k].append((user_id, field_, word, rank))
        return out

    async def units(self, words: Sequence[Word]) -> list[list[tuple[str, str]]]:
        """For each word, (unit, its search key) of units with a word starting with its fold or its
        skeleton; one statement for all the words (units are few — hundreds to thousands — and are
        scanned: `org_units.search_key`, translit.search_key)."""
        marks = [(f" {w.fold}", f" ~{w.skel}" if w.skel else f" {w.fold}") for w in words]
        rows = await self.db.fetch(self._units, [f"%{m}%" for pair in marks for m in pair])
        return [[(r[0], r[1]) for r in rows if a in r[1] or b in r[1]] for a, b in marks]

    async def in_units(self, unit_ids: Sequence[str], limit: int) -> list[tuple[str, str]]:
        """(user, rank) of active officials of these units."""
        rows = await self.db.fetch(self._in_units, list(unit_ids), limit)
        return [(r[0], rank_of(r[0], r[1])) for r in rows]

    async def listed(self, user_ids: Sequence[str], now: int) -> dict[str, Listed]:
        """The accounts as a search shows them; `visible` is false for a deactivated or suspended
        account and for an official who is not active or whose term has expired."""
        rows = await self.db.fetch(self._listed, list(user_ids))
        return {r[0]: _listed(r, now) for r in rows}


def _listed(r: Any, now: int) -> Listed:
    official_ok = r[5] is None or (r[5] == "active" and (r[6] is None or r[6] > now))
    return Listed(r[0], r[1], r[2], r[7], not r[3] and not r[4] and official_ok)
