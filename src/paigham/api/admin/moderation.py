"""Account moderation: the spec's suspend/lock endpoints (v1.18+) and Synapse's suspend and reset-password."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import require_admin
from paigham.api.http import ok, typed_body
from paigham.errors import Codes, MatrixError
from paigham.org.notices import ServerNotices
from paigham.services.admin import AdminService
from paigham.services.auth import MAX_PASSWORD_LEN, AuthService

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
    content: dict[str, Any]


def routes(auth: AuthService, admin: AdminService, notices: ServerNotices) -> list[Route]:
    async def get_suspended(request: Request) -> Response:
        """GET /_matrix/client/v1/admin/suspend/{userId}"""
        await require_admin(auth, request)
        return ok({"suspended": (await admin.existing_user(request.path_params["user_id"])).suspended})

    async def put_suspended(request: Request) -> Response:
        """PUT /_matrix/client/v1/admin/suspend/{userId}"""
        _, actor = await require_admin(auth, request)
        body = await typed_body(request, SuspendBody)
        await admin.set_suspended(request.path_params["user_id"], body.suspended, actor)
        return ok({"suspended": body.suspended})

    async def get_locked(request: Request) -> Response:
        """GET /_matrix/client/v1/admin/lock/{userId}"""
        await require_admin(auth, request)
        return ok({"locked": (await admin.existing_user(request.path_params["user_id"])).locked})

    async def put_locked(request: Request) -> Response:
        """PUT /_matrix/client/v1/admin/lock/{userId}"""
        requester, actor = await require_admin(auth, request)
        body = await typed_body(request, LockBody)
        if body.locked and request.path_params["user_id"] == requester.user_id:
            raise MatrixError(400, Codes.INVALID_PARAM, "You cannot lock your own account")
        await admin.set_locked(request.path_params["user_id"], body.locked, actor)
        return ok({"locked": body.locked})

    async def synapse_suspend(request: Request) -> Response:
        """PUT /_synapse/admin/v1/suspend/{userId}"""
        _, actor = await require_admin(auth, request)
        body = await typed_body(request, SynapseSuspendBody)
        user_id = request.path_params["user_id"]
        await admin.set_suspended(user_id, body.suspend, actor)
        return ok({f"user_{user_id}_suspended": body.suspend})

    async def reset_password(request: Request) -> Response:
        """POST /_synapse/admin/v1/reset_password/{userId}"""
        _, actor = await require_admin(auth, request)
        body = await typed_body(request, ResetPasswordBody)
        if not 0 < len(body.new_password) <= MAX_PASSWORD_LEN:
            raise MatrixError(400, Codes.INVALID_PARAM, f"new_password must be 1 to {MAX_PASSWORD_LEN} characters")
        await admin.reset_password(
            request.path_params["user_id"], body.new_password, actor, logout_devices=body.logout_devices
        )
        return ok({})

    async def server_notice(request: Request) -> Response:
        """POST /_synapse/admin/v1/send_server_notice"""
        _, actor = await require_admin(auth, request)
        body = await typed_body(request, ServerNoticeBody)
        user = await admin.existing_user(body.user_id)
        if user.deactivated:
            raise MatrixError(400, Codes.INVALID_PARAM, "The account is deactivated")
        text = body.content.get("body")
        if (
            not isinstance(text, str)
            or not text
            or len(text) > 16_000
            or body.content.get("msgtype") not in ("m.text", "m.notice")
        ):
            raise MatrixError(400, Codes.INVALID_PARAM, "content needs msgtype m.text or m.notice and a body")
        event_id = await notices.send(body.user_id, text, {"msgtype": body.content["msgtype"], "body": text})
        await admin.audit.record(
            "admin.server_notice", actor.user_id, body.user_id, actor.ip, actor.device, {"event_id": event_id}
        )
        return ok({"event_id": event_id})

    return [
        Route(f"{SYNAPSE_V1}/send_server_notice", server_notice, methods=["POST"]),
        Route(f"{CLIENT_ADMIN}/suspend/{{user_id}}", get_suspended, methods=["GET"]),
        Route(f"{CLIENT_ADMIN}/suspend/{{user_id}}", put_suspended, methods=["PUT"]),
        Route(f"{CLIENT_ADMIN}/lock/{{user_id}}", get_locked, methods=["GET"]),
        Route(f"{CLIENT_ADMIN}/lock/{{user_id}}", put_locked, methods=["PUT"]),
        Route(f"{SYNAPSE_V1}/suspend/{{user_id}}", synapse_suspend, methods=["PUT"]),
        Route(f"{SYNAPSE_V1}/reset_password/{{user_id}}", reset_password, methods=["POST"]),
    ]
