"""What differs between SQLite and PostgreSQL in the statements the stores build.

`Database` holds one `Dialect`, chosen when it is made (`db.dialect`), and offers its statements as
`db.upsert(...)` and `db.insert_ignore(...)`; no store asks which engine it runs on. A store whose
hot-path SQL must differ per engine names both forms and picks one at construction with
`Database.per_engine` (see storage/event_writes.py and storage/push_actions.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

_Insert = sqlite.Insert | postgresql.Insert


class Dialect:
    """Statements whose SQL differs between the engines."""

    def __init__(
        self, name: str, insert: Callable[[Table], _Insert], code_point_collation: str, json_text_agg: str
    ) -> None:
        self.name = name
        self._insert = insert
        # Appended to ORDER BY where text must sort by code point (user IDs in a room summary).
        self.code_point_collation = code_point_collation
        # An aggregate of the text values `{}` as one JSON array, as text (NULL or '[]' when none).
        self.json_text_agg = json_text_agg

    def upsert(
        self, table: Table, values: Mapping[str, Any], keys: Sequence[str], update: Sequence[str] | None = None
    ) -> Insert:
        """INSERT … ON CONFLICT (keys) DO UPDATE SET the `update` columns (default: all non-key ones)."""
        ins = self._insert(table).values(**values)
        cols = [c for c in values if c not in keys] if update is None else list(update)
        if not cols:
            return ins.on_conflict_do_nothing(index_elements=list(keys))
        return ins.on_conflict_do_update(index_elements=list(keys), set_={c: ins.excluded[c] for c in cols})

    def insert_ignore(self, table: Table, values: Mapping[str, Any], keys: Sequence[str]) -> Insert:
        """INSERT … ON CONFLICT (keys) DO NOTHING (`rowcount` says whether a row was added)."""
        return self._insert(table).values(**values).on_conflict_do_nothing(index_elements=list(keys))


# SQLite compares text byte by byte, which for UTF-8 is code point order already.
SQLITE = Dialect("sqlite", sqlite.insert, "", "json_group_array({})")
POSTGRESQL = Dialect("postgresql", postgresql.insert, ' COLLATE "C"', "json_agg({})::text")
