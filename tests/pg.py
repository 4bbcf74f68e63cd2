"""PostgreSQL for tests: a migrated template database, cloned per test (fast and isolated).

Outside CI an unreachable PostgreSQL skips the PostgreSQL half of the suite; in CI (CI set) or
with PAIGHAM_REQUIRE_PG=1 it fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest

PG_ADMIN = os.environ.get("PAIGHAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_template: str | None = None
_lock = asyncio.Lock()


def pg_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("PAIGHAM_REQUIRE_PG") == "1"


def base_url(db: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + db


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if pg_required():
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_ADMIN}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN}: {exc}")


async def _make_template() -> str:
    from paigham.storage.database import Database
    from paigham.storage.migrate import migrate

    name = f"paigham_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    db = Database(base_url(name))
    await migrate(db)
    await db.close()
    return name


async def fresh_database() -> str:
    """A new database cloned from the migrated template; returns its URL."""
    global _template
    async with _lock:
        if _template is None:
            _template = await _make_template()
    name = f"paigham_t_{uuid.uuid4().hex[:12]}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_template}"')
    finally:
        await conn.close()
    return base_url(name)


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def drop_template() -> None:
    global _template
    if _template is not None:
        await drop_database(base_url(_template))
        _template = None
