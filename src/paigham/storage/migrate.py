"""Run Alembic migrations to head on start-up (also from the CLI); safe with several workers.

Alembic itself (~9 MB of resident memory once imported) is only loaded when the database is not
already at the newest revision, which is read from the migration files' `revision` lines.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.schema import stream_counter
from paigham.storage.watermark import ADVANCE, BARRIER_SLOTS

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*=\s*(?:None|['\"]([^'\"]+)['\"])", re.M)


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(sync_conn: Any) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


@cache
def head_revision() -> str | None:
    """The single head among the migration files, or None when that cannot be told (Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        rev, down = _REVISION.search(source), _DOWN.search(source)
        if rev is None or down is None:
            return None
        revisions.add(rev.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def _current_revision(conn: AsyncConnection) -> str | None:
    if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
        return None
    rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    return str(rows[0][0]) if len(rows) == 1 else None


async def migrate(db: Database) -> None:
    async with db.write() as conn:
        # Several workers may start at once; one migrates, the others wait and find nothing to do.
        await db.lock(conn, 7202611)
        head = head_revision()
        if head is None or await _current_revision(conn) != head:
            await conn.run_sync(_upgrade)
        row = (await conn.execute(select(stream_counter.c.pos).where(stream_counter.c.id == 1))).first()
        if row is None:
            await conn.execute(stream_counter.insert().values(id=1, pos=0))
        # The barrier rows, whose highest is the position readers read (storage/watermark.py), and
        # row 2 caught up with the counter: what a writer that stopped between its commit and its
        # flush barrier left behind becomes readable (this commit is durable, so it flushes theirs).
        pos = row[0] if row is not None else 0
        have = {r[0] for r in await conn.execute(select(stream_counter.c.id).where(stream_counter.c.id >= 2))}
        missing = [{"id": i, "pos": pos} for i in range(2, 2 + BARRIER_SLOTS) if i not in have]
        if missing:
            await conn.execute(stream_counter.insert(), missing)
        await db.run(ADVANCE, 2, conn=conn)
