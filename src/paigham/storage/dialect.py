"""Statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert


def upsert(
    is_sqlite: bool,
    table: Table,
    values: Mapping[str, Any],
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> Insert:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET the `update` columns (default: all non-key ones)."""
    ins = (sqlite.insert if is_sqlite else postgresql.insert)(table).values(**values)
    cols = [c for c in values if c not in keys] if update is None else list(update)
    if not cols:
        return ins.on_conflict_do_nothing(index_elements=list(keys))
    return ins.on_conflict_do_update(index_elements=list(keys), set_={c: ins.excluded[c] for c in cols})


def insert_ignore(is_sqlite: bool, table: Table, values: Mapping[str, Any], keys: Sequence[str]) -> Insert:
    ins = (sqlite.insert if is_sqlite else postgresql.insert)(table).values(**values)
    return ins.on_conflict_do_nothing(index_elements=list(keys))
