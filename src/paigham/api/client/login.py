"""Discovery, login, logout, token refresh and whoami."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, client_ip, client_routes, ok, typed_body
from paigham.audit.service import AuditService
from paigham.config import Config
from paigham.domain.room_versions import KNOWN_ROOM_VERSIONS
from paigham.errors import Codes, MatrixError
from paigham.services.auth import AuthService, login_response
from paigham.services.login_guard import LoginGuard

SUPPORTED_VERSIONS = [
    "r0.5.0",
    "r0.6.0",
    "r0.6.1",
    "v1.1",
    "v1.2",
    "v1.3",
    "v1.4",
    "v1.5",
    "v1.6",
    "v1.7",
    "v1.8",
    "v1.9",
    "v1.10",
    "v1.11",
    "v1.12",
    "v1.13",
    "v1.14",
    "v1.15",
    "v1.16",
]


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
    async def versions(_: Request) -> Response:
        """GET /_matrix/client/versions"""
        return ok({"versions": SUPPORTED_VERSIONS, "unstable_features": {}})

    async def well_known(_: Request) -> Response:
        """GET /.well-known/matrix/client"""
        return ok({"m.homeserver": {"base_url": config.base_url}})

    async def capabilities(request: Request) -> Response:
        """GET /_matrix/client/v3/capabilities"""
        requester = await auth.authenticate(bearer(request))
        return ok(
            {
                "capabilities": {
                    "m.change_password": {"enabled": True},
                    "m.room_versions": {
                        "default": config.default_room_version,
                        "available": {v: "stable" for v in KNOWN_ROOM_VERSIONS},
                    },
                    "m.set_displayname": {"enabled": True},
                    "m.set_avatar_url": {"enabled": True},
                    "m.3pid_changes": {"enabled": False},
                    "m.get_login_token": {"enabled": False},
                    "m.profile_fields": {"enabled": True},
                    "m.account_moderation": {"suspend": requester.is_admin, "lock": requester.is_admin},
                }
            }
        )

    async def login_flows(_: Request) -> Response:
        """GET /_matrix/client/v3/login"""
        return ok({"flows": [{"type": "m.login.password"}]})

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
        await guard.check(user_id, ip)
        if not await auth.check_password(user_id, body.password):
            await guard.failed(user_id, ip, body.device_id)
            await audit.record("auth.login_failed", None, user_id, ip, body.device_id, {"reason": "bad password"})
            raise MatrixError(403, Codes.FORBIDDEN, "Invalid username or password")
        await guard.succeeded(user_id)
        account = await auth.store.get_user(user_id)
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

    async def logout(request: Request) -> Response:
        """POST /_matrix/client/v3/logout"""
        await auth.logout(await auth.authenticate(bearer(request)))
        return ok()

    async def logout_all(request: Request) -> Response:
        """POST /_matrix/client/v3/logout/all"""
        requester = await auth.authenticate(bearer(request))
        await auth.logout_all(requester.user_id)
        return ok()

    async def whoami(request: Request) -> Response:
        """GET /_matrix/client/v3/account/whoami"""
        requester = await auth.authenticate(bearer(request))
        return ok({"user_id": requester.user_id, "device_id": requester.device_id, "is_guest": False})

    return [
        Route("/_matrix/client/versions", versions, methods=["GET"]),
        Route("/.well-known/matrix/client", well_known, methods=["GET"]),
        *client_routes("/capabilities", capabilities, ["GET"]),
        *client_routes("/login", login_flows, ["GET"]),
        *client_routes("/login", login, ["POST"]),
        *client_routes("/refresh", refresh, ["POST"], versions=("v3", "v1")),
        *client_routes("/logout", logout, ["POST"]),
        *client_routes("/logout/all", logout_all, ["POST"]),
        *client_routes("/account/whoami", whoami, ["GET"]),
    ]
