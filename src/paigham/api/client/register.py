"""Registration (token-gated), availability, token validity, password change, deactivation,
and the Synapse-compatible shared-secret registration used by provisioning tools."""

from __future__ import annotations

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
from paigham.services.devices import DeviceService
from paigham.services.registration import RegistrationService, SharedSecretRegistration
from paigham.services.uia import PASSWORD, UIAService


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


def routes(
    config: Config,
    auth: AuthService,
    uia: UIAService,
    registration: RegistrationService,
    devices: DeviceService,
    audit: AuditService,
) -> list[Route]:
    async def register(request: Request) -> Response:
        """POST /_matrix/client/v3/register"""
        if request.query_params.get("kind", "user") != "user":
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access is disabled")
        body = await typed_body(request, RegisterBody)
        user_id, with_token = await registration.register(body.username, body.password, body.auth)
        via = "registration_token" if with_token else "open"
        await audit.record("account.registered", user_id, user_id, client_ip(request), body.device_id, {"via": via})
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
        await registration.check_available(username.lower())
        return ok({"available": True})

    async def token_validity(request: Request) -> Response:
        """GET /_matrix/client/v1/register/m.login.registration_token/validity"""
        token = request.query_params.get("token")
        if token is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "token is required")
        return ok({"valid": await registration.token_valid(token)})

    @authed(auth)
    async def change_password(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/account/password"""
        body = await typed_body(request, PasswordBody)
        await uia.check(body.auth, kind="password", flows=[[PASSWORD]], user_id=requester.user_id)
        await auth.set_password(requester.user_id, body.new_password)
        if body.logout_devices:
            await devices.sign_out_others(requester)
        return ok()

    @authed(auth)
    async def deactivate(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/account/deactivate"""
        body = await typed_body(request, DeactivateBody, allow_empty=True)
        await uia.check(body.auth, kind="deactivate", flows=[[PASSWORD]], user_id=requester.user_id)
        await auth.deactivate(requester.user_id)
        return ok({"id_server_unbind_result": "no-support"})

    @authed(auth)
    async def threepids(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/v3/account/3pid — third-party IDs are managed by the admin, none listed."""
        return ok({"threepids": []})

    async def nonce(_: Request) -> Response:
        """GET /_synapse/admin/v1/register"""
        return ok({"nonce": await registration.new_nonce()})

    async def shared_secret_register(request: Request) -> Response:
        """POST /_synapse/admin/v1/register"""
        body = await typed_body(request, SharedSecretRegistration)
        user_id = await registration.register_with_shared_secret(body)
        await audit.record(
            "account.registered", None, user_id, client_ip(request), None, {"via": "shared_secret", "admin": body.admin}
        )
        session = await auth.start_session(user_id, None, None)
        return ok(
            {
                "user_id": user_id,
                "access_token": session.access_token,
                "device_id": session.device_id,
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
