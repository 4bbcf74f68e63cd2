"""Abandoned User-Interactive Authentication sessions are purged (issue 14 #11: on 81fc255, 5,000
unauthenticated registration starts left 5,000 sessions in the database for ever)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from paigham.clock import now_ms
from paigham.services import uia
from paigham.storage.schema import uia_sessions
from tests.api.conftest import Harness

V3 = "/_matrix/client/v3"


async def sessions(hs: Harness) -> int:
    async with hs.server.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(uia_sessions))).scalar_one())


async def test_abandoned_registration_sessions_are_purged(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(20):  # sign-ups started and never finished, by nobody in particular
        r = await hs.request("POST", f"{V3}/register", json={"username": "x", "password": "secret-pass-1"})
        assert r.status_code == 401 and "session" in r.json(), r.text
    assert await sessions(hs) == 20
    assert await hs.server.uia.purge_expired() == 0  # none has expired yet

    later = now_ms() + uia.SESSION_LIFETIME_MS + 1
    monkeypatch.setattr(uia, "now_ms", lambda: later)
    fresh = await hs.request("POST", f"{V3}/register", json={"username": "y", "password": "secret-pass-1"})
    assert fresh.status_code == 401
    assert await hs.server.uia.purge_expired() == 20
    assert await sessions(hs) == 1  # the one started "now" stays
