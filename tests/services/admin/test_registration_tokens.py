"""RegistrationTokens without HTTP: the checks on creation and update, validity, and the audit trail."""

from __future__ import annotations

from paigham.app import Server
from paigham.clock import now_ms
from paigham.services.registration_tokens import TOKEN_CHARS, RegistrationTokens
from paigham.storage.admin import AdminStore
from tests.services.admin.conftest import ADMIN, FakeAudit, refused


def tokens_of(server: Server, audit: FakeAudit) -> RegistrationTokens:
    return RegistrationTokens(server.auth, server.accounts, AdminStore(server.db), audit)


async def test_create_random_and_named_with_checks(server: Server, audit: FakeAudit) -> None:
    tokens = tokens_of(server, audit)
    made = await tokens.create(None, 2, None, 12, ADMIN)
    assert len(made["token"]) == 12 and set(made["token"]) <= set(TOKEN_CHARS)
    assert made == {"token": made["token"], "uses_allowed": 2, "pending": 0, "completed": 0, "expiry_time": None}
    later = now_ms() + 3_600_000
    named = await tokens.create("gov-2025", None, later, 16, ADMIN)
    assert named["token"] == "gov-2025" and named["expiry_time"] == later
    assert "already exists" in await refused(400, tokens.create("gov-2025", None, None, 16, ADMIN))
    await refused(400, tokens.create("sp ace", None, None, 16, ADMIN))
    await refused(400, tokens.create(None, -1, None, 16, ADMIN))
    await refused(400, tokens.create(None, None, 5, 16, ADMIN))
    await refused(400, tokens.create(None, None, None, 65, ADMIN))
    assert audit.kinds() == ["admin.registration_token_created"] * 2
    # the audit log shows enough of a token to tell it apart, not the secret
    assert audit.entries[1] == (
        "admin.registration_token_created",
        ADMIN.user_id,
        "gov-…",
        ADMIN.ip,
        ADMIN.device,
        {"uses_allowed": None, "expiry_time": later},
    )


async def test_validity_update_and_delete(server: Server, audit: FakeAudit) -> None:
    tokens = tokens_of(server, audit)
    await tokens.create("open-one", None, None, 16, ADMIN)
    await tokens.create("used-up", 1, None, 16, ADMIN)
    assert await tokens.update("used-up", ADMIN, uses_allowed=0) == {
        "token": "used-up",
        "uses_allowed": 0,
        "pending": 0,
        "completed": 0,
        "expiry_time": None,
    }
    assert [t["token"] for t in await tokens.list_tokens(valid=False)] == ["used-up"]
    assert [t["token"] for t in await tokens.list_tokens(valid=True)] == ["open-one"]
    assert {t["token"] for t in await tokens.list_tokens()} == {"open-one", "used-up"}
    # unset fields stay; null lifts a limit
    assert (await tokens.update("used-up", ADMIN))["uses_allowed"] == 0
    assert (await tokens.update("used-up", ADMIN, uses_allowed=None))["uses_allowed"] is None
    await refused(400, tokens.update("used-up", ADMIN, expiry_time=1))
    await refused(404, tokens.update("nope", ADMIN, uses_allowed=3))
    await tokens.delete("used-up", ADMIN)
    await refused(404, tokens.token("used-up"))
    await refused(404, tokens.delete("used-up", ADMIN))
    assert audit.kinds()[-4:] == ["admin.registration_token_updated"] * 3 + ["admin.registration_token_deleted"]
