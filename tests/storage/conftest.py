"""A migrated database per test, on SQLite and on PostgreSQL (`database_url` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from paigham.storage.database import Database
from paigham.storage.migrate import migrate


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    d = Database(database_url)
    await migrate(d)
    yield d
    await d.close()
