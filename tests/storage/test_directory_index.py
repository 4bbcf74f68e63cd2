"""The user directory's index (storage/directory.py): each read of a search touches the rows it
answers with, also with the plan PostgreSQL made while the tables were small (the benchmark's
database is never analyzed: autovacuum is off on its machines)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from paigham.domain.translit import tokens
from paigham.storage.database import Database
from paigham.storage.directory import DirectoryIndex, Word
from tests.storage.support import rows_read_by_a_plan_made_small, spy_fetch

NOW = 1_700_000_000_000


async def add_unit(db: Database, unit_id: str, name: str) -> None:
    key = f" {' '.join(t.fold for t in tokens(name))} "
    async with db.write() as conn:
        await db.run(
            "INSERT INTO org_units (unit_id, parent_id, kind, names, search_key, created_ts, updated_ts) "
            "VALUES ($1, NULL, 'section', $2, $3, $4, $4)",
            unit_id,
            json.dumps({"en": name}),
            key,
            NOW,
            conn=conn,
        )


async def add_officials(db: Database, unit_id: str, names: list[str], first: int) -> list[str]:
    """Active officials of `unit_id`, their accounts and their directory terms."""
    ids = [f"@o{first + i}:test.local" for i in range(len(names))]
    async with db.write() as conn:
        await db.run_many(
            "INSERT INTO users (user_id, admin, deactivated, suspended, locked, created_ts, displayname) "
            "VALUES ($1, FALSE, FALSE, FALSE, FALSE, $2, $3)",
            [(u, NOW, n) for u, n in zip(ids, names, strict=True)],
            conn=conn,
        )
        await db.run_many(
            "INSERT INTO officials (employee_id, user_id, names, designation, unit_id, status, created_ts, "
            "updated_ts) VALUES ($1, $2, $3, '{}', $4, 'active', $5, $5)",
            [(f"E{u}", u, json.dumps({"en": n}), unit_id, NOW) for u, n in zip(ids, names, strict=True)],
            conn=conn,
        )
        await DirectoryIndex(db).refresh(conn, ids)
    return ids


READS: dict[str, Callable[[DirectoryIndex, list[str]], Awaitable[object]]] = {
    "in_units": lambda index, _ids: index.in_units(["S1"], 50),
    "listed": lambda index, ids: index.listed(ids, NOW),
    "matches_of": lambda index, ids: index.matches_of(ids, [Word("ravi", "rv"), Word("kumar", "knr")]),
    "matches": lambda index, _ids: index.matches(Word("ravi", "rv"), 50),
    "pairs": lambda index, _ids: index.pairs(Word("ravi", "rv"), Word("kumar", "knr"), 100),
}


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("read", sorted(READS))
async def test_a_searchs_reads_touch_their_rows_with_plans_made_when_the_tables_were_small(
    db: Database, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """Five officials of section 1 are found; then 3,000 officials of section 2 arrive. The reads of a
    search, with the plans made before, must not read them: `in_units` (a section's officials) once
    intersected the unit index with the status index — every active official's row ID."""
    await add_unit(db, "S1", "Section One")
    await add_unit(db, "S2", "Section Two")
    ids = await add_officials(db, "S1", [f"Ravi Kumar {i}" for i in range(5)], 0)

    async def grow() -> None:
        await add_officials(db, "S2", [f"Sunita Devi {i}" for i in range(3_000)], 100)

    index = DirectoryIndex(db)
    sent = spy_fetch(db, monkeypatch)
    assert await READS[read](index, ids)
    monkeypatch.undo()
    ((sql, args),) = sent
    assert await rows_read_by_a_plan_made_small(db, sql, args, grow) <= 100  # of the 3,000 added


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_units_officials_are_read_through_the_unit_index_on_sqlite(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite walked the status index for the officials of matched units: every active official when
    the unit has none (a ministry's own unit, whose name a first name's prefix often matches)."""
    await add_unit(db, "MIN", "Ministry of Personnel")
    await add_unit(db, "S1", "Section One")
    await add_officials(db, "S1", [f"Ravi Kumar {i}" for i in range(300)], 0)
    async with db.write() as conn:  # statistics as a long-running database has them (PRAGMA optimize)
        await db.run("ANALYZE", conn=conn)
    index = DirectoryIndex(db)
    sent = spy_fetch(db, monkeypatch)
    assert await index.in_units(["MIN"], 50) == []
    monkeypatch.undo()
    ((sql, args),) = sent
    plan = " ".join(str(r[3]) for r in await db.fetch("EXPLAIN QUERY PLAN " + sql, *args))
    assert "officials_unit" in plan and "officials_status" not in plan, plan
