"""Synapse-compatible admin API for accounts and devices, so existing admin tools work unchanged."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import admin_only
from paigham.api.http import Authenticator, json_body, ok, query_bool, query_int, typed_body
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.admin import Actor, AdminService
from paigham.services.admin_users import USER_ORDERS, AdminUsers, UserQuery
from paigham.services.auth import MAX_PASSWORD_LEN
from paigham.types import JsonDict

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


class UserBody(msgspec.Struct):
    password: str | None = None
    logout_devices: bool = True
    displayname: str | None = None
    avatar_url: str | None = None
    admin: bool | None = None
    deactivated: bool | None = None
    locked: bool | None = None
    user_type: str | None = None
    threepids: list[dict[str, Any]] | None = None
    external_ids: list[dict[str, Any]] | None = None


class SynapseDeactivateBody(msgspec.Struct):
    erase: bool = False


class SynapseDeleteDevicesBody(msgspec.Struct):
    devices: list[str]


def _user_query(request: Request) -> UserQuery:
    offset = query_int(request, "from", 0, 0, 2**31)
    limit = query_int(request, "limit", 100, 1, 1000)
    order_by = request.query_params.get("order_by", "name")
    if order_by not in USER_ORDERS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"order_by must be one of {', '.join(USER_ORDERS)}")
    direction = request.query_params.get("dir", "f")
    if direction not in ("f", "b"):
        raise MatrixError(400, Codes.INVALID_PARAM, "dir must be f or b")
    admins = request.query_params.get("admins")
    return UserQuery(
        offset=offset,
        limit=limit,
        name=request.query_params.get("name", "")[:255] or None,
        user_id=request.query_params.get("user_id", "")[:255] or None,
        deactivated=query_bool(request, "deactivated", False),
        admins=None if admins is None else query_bool(request, "admins"),
        order_by=order_by,
        descending=direction == "b",
    )


async def _user_fields(request: Request) -> JsonDict:
    """The fields of a PUT body that were given (absent ones stay as they are), checked."""
    raw = await json_body(request, allow_empty=True)
    try:
        body = msgspec.convert(raw, UserBody)
    except msgspec.ValidationError as exc:
        raise MatrixError(400, Codes.BAD_JSON, str(exc)) from None
    if body.password is not None and not 0 < len(body.password) <= MAX_PASSWORD_LEN:
        raise MatrixError(400, Codes.INVALID_PARAM, f"password must be 1 to {MAX_PASSWORD_LEN} characters")
    if body.displayname is not None and len(body.displayname) > 256:
        raise MatrixError(400, Codes.INVALID_PARAM, "displayname is longer than 256 characters")
    if body.user_type is not None and body.user_type not in ("bot", "support"):
        raise MatrixError(400, Codes.INVALID_PARAM, "user_type must be bot or support")
    return {k: v for k, v in msgspec.structs.asdict(body).items() if k in raw}


def routes(auth: Authenticator, admin: AdminService, users: AdminUsers) -> list[Route]:
    @admin_only(auth)
    async def list_users(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v2/users"""
        q = _user_query(request)
        page = await users.list_users(q)
        body: JsonDict = {"users": page.users, "total": page.total}
        if q.offset + len(page.users) < page.total:
            body["next_token"] = str(q.offset + len(page.users))
        return ok(body)

    @admin_only(auth)
    async def get_user(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v2/users/{userId}"""
        return ok(await users.whois(request.path_params["user_id"]))

    @admin_only(auth)
    async def put_user(request: Request, _requester: Requester, actor: Actor) -> Response:
        """PUT /_synapse/admin/v2/users/{userId}"""
        result = await users.put_user(request.path_params["user_id"], await _user_fields(request), actor)
        return ok(result.user, status=201 if result.created else 200)

    @admin_only(auth)
    async def deactivate(request: Request, _requester: Requester, actor: Actor) -> Response:
        """POST /_synapse/admin/v1/deactivate/{userId}"""
        body = await typed_body(request, SynapseDeactivateBody, allow_empty=True)
        await admin.deactivate(request.path_params["user_id"], actor, erase=body.erase)
        return ok({"id_server_unbind_result": "success"})

    @admin_only(auth)
    async def list_devices(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v2/users/{userId}/devices"""
        devices = await users.devices(request.path_params["user_id"])
        return ok({"devices": devices, "total": len(devices)})

    @admin_only(auth)
    async def get_device(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}"""
        return ok(await users.device(request.path_params["user_id"], request.path_params["device_id"]))

    @admin_only(auth)
    async def delete_device(request: Request, _requester: Requester, actor: Actor) -> Response:
        """DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}"""
        await users.delete_device(request.path_params["user_id"], request.path_params["device_id"], actor)
        return ok({})

    @admin_only(auth)
    async def delete_devices(request: Request, _requester: Requester, actor: Actor) -> Response:
        """POST /_synapse/admin/v2/users/{userId}/delete_devices"""
        body = await typed_body(request, SynapseDeleteDevicesBody)
        if len(body.devices) > 1000 or any(not d or len(d) > 255 for d in body.devices):
            raise MatrixError(400, Codes.INVALID_PARAM, "devices must be at most 1000 device IDs")
        await admin.delete_devices(request.path_params["user_id"], body.devices, actor)
        return ok({})

    return [
        Route(f"{V2}/users", list_users, methods=["GET"]),
        Route(f"{V2}/users/{{user_id}}", get_user, methods=["GET"]),
        Route(f"{V2}/users/{{user_id}}", put_user, methods=["PUT"]),
        Route(f"{V1}/deactivate/{{user_id}}", deactivate, methods=["POST"]),
        Route(f"{V2}/users/{{user_id}}/devices", list_devices, methods=["GET"]),
        Route(f"{V2}/users/{{user_id}}/devices/{{device_id}}", get_device, methods=["GET"]),
        Route(f"{V2}/users/{{user_id}}/devices/{{device_id}}", delete_device, methods=["DELETE"]),
        Route(f"{V2}/users/{{user_id}}/delete_devices", delete_devices, methods=["POST"]),
    ]
