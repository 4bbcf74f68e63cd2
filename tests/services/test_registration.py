"""RegistrationService: token-gated registration through UIA, and the shared-secret nonce flow."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from paigham.app import Server
from paigham.clock import now_ms
from paigham.services import registration as module
from paigham.services.registration import RegistrationService, SharedSecretRegistration, shared_secret_mac
from paigham.services.uia import UIARequired
from tests.services.conftest import refused

SECRET = "s3cret"


def with_secret(server: Server, secret: str | None) -> RegistrationService:
    return RegistrationService(server.auth, server.uia, server.accounts, open_registration=False, shared_secret=secret)


def signed(nonce: str, username: str, *, admin: bool = False, secret: str = SECRET) -> SharedSecretRegistration:
    mac = shared_secret_mac(secret, nonce, username, "pw", admin)
    return SharedSecretRegistration(nonce=nonce, username=username, password="pw", mac=mac, admin=admin)


async def test_a_nonce_is_used_once_and_expires(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = with_secret(server, SECRET)
    nonce = await reg.new_nonce()
    user_id = await reg.register_with_shared_secret(signed(nonce, "Gita", admin=True))
    assert user_id == "@gita:test.local"
    account = await server.auth.get_user(user_id)
    assert account is not None and account.admin
    await refused(400, "M_UNKNOWN", reg.register_with_shared_secret(signed(nonce, "hari")))  # used up
    # A wrong MAC uses the nonce up too.
    nonce = await reg.new_nonce()
    await refused(403, "M_FORBIDDEN", reg.register_with_shared_secret(signed(nonce, "hari", secret="guess")))
    await refused(400, "M_UNKNOWN", reg.register_with_shared_secret(signed(nonce, "hari")))
    # Nonces live NONCE_LIFETIME_MS.
    nonce = await reg.new_nonce()
    later = now_ms() + module.NONCE_LIFETIME_MS + 1
    monkeypatch.setattr(module, "now_ms", lambda: later)
    await refused(400, "M_UNKNOWN", reg.register_with_shared_secret(signed(nonce, "hari")))
    assert await server.auth.get_user("@hari:test.local") is None


async def test_shared_secret_registration_can_be_off(server: Server) -> None:
    reg = with_secret(server, None)
    nonce = await reg.new_nonce()
    await refused(400, "M_UNKNOWN", reg.register_with_shared_secret(signed(nonce, "hari")))


async def next_session(call: Awaitable[object]) -> dict[str, Any]:
    with pytest.raises(UIARequired) as err:
        await call
    return err.value.body


async def test_a_registration_token_is_counted_when_the_account_is_created(server: Server) -> None:
    reg = server.registration
    assert reg.flows() == [["m.login.registration_token", "m.login.dummy"]]
    token = await server.auth.create_registration_token(uses=1)
    assert await reg.token_valid(token)
    body = await next_session(reg.register("Erin", "pw", None))
    session = body["session"]
    body = await next_session(
        reg.register("erin", "pw", {"type": "m.login.registration_token", "token": token, "session": session})
    )
    assert body["completed"] == ["m.login.registration_token"]
    assert await reg.token_valid(token)  # not used until the account exists
    assert await reg.register("erin", "pw", {"type": "m.login.dummy", "session": session}) == ("@erin:test.local", True)
    assert not await reg.token_valid(token)
    await refused(400, "M_USER_IN_USE", reg.check_available("erin"))
    await refused(400, "M_INVALID_USERNAME", reg.check_available("Not Valid"))
    assert await reg.check_available("frank") == "@frank:test.local"


async def test_open_registration_offers_the_dummy_flow(server: Server) -> None:
    reg = RegistrationService(server.auth, server.uia, server.accounts, open_registration=True, shared_secret=None)
    assert reg.flows() == [["m.login.dummy"], ["m.login.registration_token", "m.login.dummy"]]
    assert await reg.register("open", "pw", {"type": "m.login.dummy"}) == ("@open:test.local", False)
    await refused(400, "M_MISSING_PARAM", reg.register("nopw", None, {"type": "m.login.dummy"}))
