"""Login, logout, token refresh and whoami."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import authed, client_ip, client_routes, ok, typed_body
from paigham.audit.service import AuditService
from paigham.config import Config
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.auth import AuthService, login_response
from paigham.services.login_guard import LoginGuard

MSC2965 = "/_matrix/client/unstable/org.matrix.msc2965"


class Identifier(msgspec.Struct):
    type: str
    user: str | None = None


class LoginBody(msgspec.Struct):
    type: str
    identifier: Identifier | None = None
    user: str | None = None
    password: str | None = None
    device_id: str | None = None
    initial_device_display_name: str | None = None
    refresh_token: bool = False


class RefreshBody(msgspec.Struct):
    refresh_token: str


def routes(config: Config, auth: AuthService, audit: AuditService, guard: LoginGuard) -> list[Route]:
    async def login_flows(_: Request) -> Response:
        """GET /_matrix/client/v3/login"""
        return ok({"flows": [{"type": "m.login.password"}]})

    async def auth_metadata(_: Request) -> Response:
        """GET /_matrix/client/v1/auth_metadata (and MSC2965's unstable auth_metadata, auth_issuer):
        this server has no OAuth 2.0 authorisation server, and the spec's answer for that is 404
        M_UNRECOGNIZED, which tells clients (Element X) to sign in with the legacy API instead."""
        raise MatrixError(
            404, Codes.UNRECOGNIZED, "This server does not support the OAuth 2.0 API; sign in with m.login.password"
        )

    async def login(request: Request) -> Response:
        """POST /_matrix/client/v3/login"""
        body = await typed_body(request, LoginBody)
        if body.type != "m.login.password":
            raise MatrixError(400, Codes.UNKNOWN, f"Unknown login type {body.type!r}")
        who = body.identifier.user if body.identifier and body.identifier.type == "m.id.user" else body.user
        if body.identifier and body.identifier.type != "m.id.user":
            raise MatrixError(400, Codes.UNKNOWN, "Only m.id.user identifiers are supported")
        if not who or body.password is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "user and password are required")
        ip = client_ip(request)
        try:
            user_id = auth.user_id_for(who)
        except MatrixError:
            await audit.record("auth.login_failed", None, who, ip, body.device_id, {"reason": "invalid user ID"})
            raise MatrixError(403, Codes.FORBIDDEN, "Invalid username or password") from None
        async with guard.attempt(user_id, ip):  # one check per account at a time; counters first
            if not await auth.check_password(user_id, body.password):
                await guard.failed(user_id, ip, body.device_id)
                await audit.record("auth.login_failed", None, user_id, ip, body.device_id, {"reason": "bad password"})
                raise MatrixError(403, Codes.FORBIDDEN, "Invalid username or password")
            await guard.succeeded(user_id)
        account = await auth.get_user(user_id)
        if account is not None and account.locked:
            await audit.record("auth.login_failed", None, user_id, ip, body.device_id, {"reason": "account locked"})
            raise MatrixError(401, Codes.USER_LOCKED, "This account has been locked by an administrator")
        session = await auth.start_session(
            user_id, body.device_id, body.initial_device_display_name, refresh=body.refresh_token
        )
        await audit.record("auth.login", user_id, user_id, ip, session.device_id)
        return ok(login_response(session, config.server_name, config.base_url))

    async def refresh(request: Request) -> Response:
        """POST /_matrix/client/v3/refresh"""
        body = await typed_body(request, RefreshBody)
        session = await auth.refresh(body.refresh_token)
        out: dict[str, Any] = {"access_token": session.access_token, "refresh_token": session.refresh_token}
        if session.expires_in_ms:
            out["expires_in_ms"] = session.expires_in_ms
        return ok(out)

    @authed(auth)
    async def logout(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/logout"""
        await auth.logout(requester)
        return ok()

    @authed(auth)
    async def logout_all(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/logout/all"""
        await auth.logout_all(requester.user_id)
        return ok()

    @authed(auth)
    async def whoami(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/account/whoami"""
        return ok({"user_id": requester.user_id, "device_id": requester.device_id, "is_guest": False})

    return [
        *client_routes("/login", login_flows, ["GET"]),
        Route("/_matrix/client/v1/auth_metadata", auth_metadata, methods=["GET"]),
        Route(f"{MSC2965}/auth_metadata", auth_metadata, methods=["GET"]),
        Route(f"{MSC2965}/auth_issuer", auth_metadata, methods=["GET"]),
        *client_routes("/login", login, ["POST"]),
        *client_routes("/refresh", refresh, ["POST"], versions=("v3", "v1")),
        *client_routes("/logout", logout, ["POST"]),
        *client_routes("/logout/all", logout_all, ["POST"]),
        *client_routes("/account/whoami", whoami, ["GET"]),
    ]
