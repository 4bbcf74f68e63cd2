"""Account moderation: the spec's suspend/lock endpoints (v1.18+), Synapse's suspend and reset-password,
and server notices."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import admin_only
from paigham.api.http import Authenticator, ok, typed_body
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.admin import Actor, AdminService
from paigham.services.admin_messages import AdminMessages
from paigham.services.admin_users import AdminUsers
from paigham.services.auth import MAX_PASSWORD_LEN
from paigham.types import JsonDict

CLIENT_ADMIN = "/_matrix/client/v1/admin"
SYNAPSE_V1 = "/_synapse/admin/v1"


class SuspendBody(msgspec.Struct):
    suspended: bool


class LockBody(msgspec.Struct):
    locked: bool


class SynapseSuspendBody(msgspec.Struct):
    suspend: bool


class ResetPasswordBody(msgspec.Struct):
    new_password: str
    logout_devices: bool = True


class ServerNoticeBody(msgspec.Struct):
    user_id: str
    content: JsonDict


def routes(auth: Authenticator, admin: AdminService, users: AdminUsers, messages: AdminMessages) -> list[Route]:
    @admin_only(auth)
    async def get_suspended(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_matrix/client/v1/admin/suspend/{userId}"""
        return ok({"suspended": (await admin.existing_user(request.path_params["user_id"])).suspended})

    @admin_only(auth)
    async def put_suspended(request: Request, _requester: Requester, actor: Actor) -> Response:
        """PUT /_matrix/client/v1/admin/suspend/{userId}"""
        body = await typed_body(request, SuspendBody)
        await admin.set_suspended(request.path_params["user_id"], body.suspended, actor)
        return ok({"suspended": body.suspended})

    @admin_only(auth)
    async def get_locked(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_matrix/client/v1/admin/lock/{userId}"""
        return ok({"locked": (await admin.existing_user(request.path_params["user_id"])).locked})

    @admin_only(auth)
    async def put_locked(request: Request, _requester: Requester, actor: Actor) -> Response:
        """PUT /_matrix/client/v1/admin/lock/{userId}"""
        body = await typed_body(request, LockBody)
        await users.set_locked(request.path_params["user_id"], body.locked, actor)
        return ok({"locked": body.locked})

    @admin_only(auth)
    async def synapse_suspend(request: Request, _requester: Requester, actor: Actor) -> Response:
        """PUT /_synapse/admin/v1/suspend/{userId}"""
        body = await typed_body(request, SynapseSuspendBody)
        user_id = request.path_params["user_id"]
        await admin.set_suspended(user_id, body.suspend, actor)
        return ok({f"user_{user_id}_suspended": body.suspend})

    @admin_only(auth)
    async def reset_password(request: Request, _requester: Requester, actor: Actor) -> Response:
        """POST /_synapse/admin/v1/reset_password/{userId}"""
        body = await typed_body(request, ResetPasswordBody)
        if not 0 < len(body.new_password) <= MAX_PASSWORD_LEN:
            raise MatrixError(400, Codes.INVALID_PARAM, f"new_password must be 1 to {MAX_PASSWORD_LEN} characters")
        await admin.reset_password(
            request.path_params["user_id"], body.new_password, actor, logout_devices=body.logout_devices
        )
        return ok({})

    @admin_only(auth)
    async def server_notice(request: Request, _requester: Requester, actor: Actor) -> Response:
        """POST /_synapse/admin/v1/send_server_notice"""
        body = await typed_body(request, ServerNoticeBody)
        return ok({"event_id": await messages.server_notice(body.user_id, body.content, actor)})

    return [
        Route(f"{SYNAPSE_V1}/send_server_notice", server_notice, methods=["POST"]),
        Route(f"{CLIENT_ADMIN}/suspend/{{user_id}}", get_suspended, methods=["GET"]),
        Route(f"{CLIENT_ADMIN}/suspend/{{user_id}}", put_suspended, methods=["PUT"]),
        Route(f"{CLIENT_ADMIN}/lock/{{user_id}}", get_locked, methods=["GET"]),
        Route(f"{CLIENT_ADMIN}/lock/{{user_id}}", put_locked, methods=["PUT"]),
        Route(f"{SYNAPSE_V1}/suspend/{{user_id}}", synapse_suspend, methods=["PUT"]),
        Route(f"{SYNAPSE_V1}/reset_password/{{user_id}}", reset_password, methods=["POST"]),
    ]
