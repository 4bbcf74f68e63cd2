"""Run Alembic migrations to head on start-up (also from the CLI); safe with several workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import select, text

from paigham.storage.database import Database
from paigham.storage.schema import stream_counter

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(sync_conn: Any) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


async def migrate(db: Database) -> None:
    async with db.write() as conn:
        if not db.is_sqlite:
            # Several workers may start at once; one migrates, the others wait and find nothing to do.
            await conn.execute(text("SELECT pg_advisory_xact_lock(7202611)"))
        await conn.run_sync(_upgrade)
        row = (await conn.execute(select(stream_counter.c.pos).where(stream_counter.c.id == 1))).first()
        if row is None:
            await conn.execute(stream_counter.insert().values(id=1, pos=0))
