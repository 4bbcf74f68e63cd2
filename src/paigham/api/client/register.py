"""Registration (token-gated), availability, token validity, password change, deactivation,
and the Synapse-compatible shared-secret registration used by provisioning tools."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, client_ip, client_routes, ok, typed_body
from paigham.audit.service import AuditService
from paigham.clock import now_ms
from paigham.config import Config
from paigham.errors import Codes, MatrixError
from paigham.ids import random_string
from paigham.services.auth import AuthService, login_response
from paigham.services.uia import DUMMY, PASSWORD, REGISTRATION_TOKEN, UIAService

NONCE_LIFETIME_MS = 60_000


class RegisterBody(msgspec.Struct):
    username: str | None = None
    password: str | None = None
    device_id: str | None = None
    initial_device_display_name: str | None = None
    inhibit_login: bool = False
    refresh_token: bool = False
    auth: dict[str, object] | None = None


class PasswordBody(msgspec.Struct):
    new_password: str
    logout_devices: bool = True
    auth: dict[str, object] | None = None


class DeactivateBody(msgspec.Struct):
    auth: dict[str, object] | None = None
    erase: bool = False


class SharedSecretBody(msgspec.Struct):
    nonce: str
    username: str
    password: str
    mac: str
    admin: bool = False
    displayname: str | None = None
    user_type: str | None = None


def shared_secret_mac(
    secret: str, nonce: str, username: str, password: str, admin: bool, user_type: str | None = None
) -> str:
    """The HMAC-SHA1 the Synapse admin API documents for /_synapse/admin/v1/register."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    if user_type:
        parts.append(user_type)
    mac.update(b"\x00".join(p.encode() for p in parts))
    return mac.hexdigest()


def routes(config: Config, auth: AuthService, uia: UIAService, audit: AuditService, shared_secret: str) -> list[Route]:
    def flows() -> list[list[str]]:
        # The token stage is followed by a dummy stage, as other servers offer it: matrix-nio's
        # register_with_token walks exactly this flow, and other clients follow whatever is offered.
        with_token = [REGISTRATION_TOKEN, DUMMY]
        return [[DUMMY], with_token] if config.enable_registration else [with_token]

    async def register(request: Request) -> Response:
        """POST /_matrix/client/v3/register"""
        if request.query_params.get("kind", "user") != "user":
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access is disabled")
        body = await typed_body(request, RegisterBody)
        localpart = (body.username or "").lower() or random_string(12).lower()
        user_id = auth.check_localpart(localpart)
        if await auth.store.get_user(user_id) is not None:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken")
        if body.password is None and body.auth is not None:
            raise MatrixError(400, Codes.MISSING_PARAM, "password is required")
        data = await uia.check(body.auth, kind="register", flows=flows())
        token = data.get("registration_token")
        if token is not None and not await auth.store.use_registration_token(str(token), now_ms()):
            raise MatrixError(401, Codes.UNAUTHORIZED, "Registration token is no longer valid")
        await auth.create_user(localpart, body.password)
        await audit.record(
            "account.registered",
            user_id,
            user_id,
            client_ip(request),
            body.device_id,
            {"via": "registration_token" if token is not None else "open"},
        )
        if body.inhibit_login:
            return ok({"user_id": user_id, "home_server": config.server_name})
        session = await auth.start_session(
            user_id, body.device_id, body.initial_device_display_name, refresh=body.refresh_token
        )
        return ok(login_response(session, config.server_name, config.base_url))

    async def available(request: Request) -> Response:
        """GET /_matrix/client/v3/register/available"""
        username = request.query_params.get("username")
        if not username:
            raise MatrixError(400, Codes.MISSING_PARAM, "username is required")
        user_id = auth.check_localpart(username.lower())
        if await auth.store.get_user(user_id) is not None:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken")
        return ok({"available": True})

    async def token_validity(request: Request) -> Response:
        """GET /_matrix/client/v1/register/m.login.registration_token/validity"""
        token = request.query_params.get("token")
        if token is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "token is required")
        return ok({"valid": await auth.store.registration_token_valid(token, now_ms())})

    async def change_password(request: Request) -> Response:
        """POST /_matrix/client/v3/account/password"""
        requester = await auth.authenticate(bearer(request))
        body = await typed_body(request, PasswordBody)
        await uia.check(body.auth, kind="password", flows=[[PASSWORD]], user_id=requester.user_id)
        await auth.set_password(requester.user_id, body.new_password)
        if body.logout_devices:
            others = [
                d.device_id
                for d in await auth.store.get_devices(requester.user_id)
                if d.device_id != requester.device_id
            ]
            await auth.delete_devices(requester.user_id, others)
            await auth.store.delete_all_tokens(requester.user_id, except_token=requester.access_token)
        return ok()

    async def deactivate(request: Request) -> Response:
        """POST /_matrix/client/v3/account/deactivate"""
        requester = await auth.authenticate(bearer(request))
        body = await typed_body(request, DeactivateBody, allow_empty=True)
        await uia.check(body.auth, kind="deactivate", flows=[[PASSWORD]], user_id=requester.user_id)
        await auth.deactivate(requester.user_id)
        return ok({"id_server_unbind_result": "no-support"})

    async def threepids(request: Request) -> Response:
        """GET /_matrix/client/v3/account/3pid — third-party IDs are managed by the admin, none listed."""
        await auth.authenticate(bearer(request))
        return ok({"threepids": []})

    async def nonce(_: Request) -> Response:
        """GET /_synapse/admin/v1/register"""
        value = secrets.token_hex(16)
        await auth.store.save_uia_session(value, "shared_secret_nonce", None, [], {}, now_ms())
        return ok({"nonce": value})

    async def shared_secret_register(request: Request) -> Response:
        """POST /_synapse/admin/v1/register"""
        body = await typed_body(request, SharedSecretBody)
        if not shared_secret:
            raise MatrixError(400, Codes.UNKNOWN, "Shared secret registration is not enabled")
        session = await auth.store.get_uia_session(body.nonce)
        if (
            session is None
            or session["kind"] != "shared_secret_nonce"
            or session["created_ts"] + NONCE_LIFETIME_MS < now_ms()
        ):
            raise MatrixError(400, Codes.UNKNOWN, "Unrecognised nonce")
        await auth.store.delete_uia_session(body.nonce)
        want = shared_secret_mac(shared_secret, body.nonce, body.username, body.password, body.admin, body.user_type)
        if not hmac.compare_digest(want, body.mac.lower()):
            raise MatrixError(403, Codes.FORBIDDEN, "HMAC incorrect")
        user_id = await auth.create_user(
            body.username.lower(), body.password, admin=body.admin, displayname=body.displayname
        )
        await audit.record(
            "account.registered", None, user_id, client_ip(request), None, {"via": "shared_secret", "admin": body.admin}
        )
        session_ = await auth.start_session(user_id, None, None)
        return ok(
            {
                "user_id": user_id,
                "access_token": session_.access_token,
                "device_id": session_.device_id,
                "home_server": config.server_name,
            }
        )

    return [
        *client_routes("/register", register, ["POST"]),
        *client_routes("/register/available", available, ["GET"]),
        Route("/_matrix/client/v1/register/m.login.registration_token/validity", token_validity, methods=["GET"]),
        *client_routes("/account/password", change_password, ["POST"]),
        *client_routes("/account/deactivate", deactivate, ["POST"]),
        *client_routes("/account/3pid", threepids, ["GET"]),
        Route("/_synapse/admin/v1/register", nonce, methods=["GET"]),
        Route("/_synapse/admin/v1/register", shared_secret_register, methods=["POST"]),
    ]
