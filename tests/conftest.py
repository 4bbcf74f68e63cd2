"""Shared fixtures: every storage-touching test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import pg

ENGINES = ["sqlite", "postgres"]


@pytest.fixture(params=ENGINES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'paigham.db'}"
        return
    url = await pg.fresh_database()
    try:
        yield url
    finally:
        await pg.drop_database(url)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import asyncio

    with contextlib.suppress(Exception):  # best-effort cleanup
        asyncio.run(pg.drop_template())
