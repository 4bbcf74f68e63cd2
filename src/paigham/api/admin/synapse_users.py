"""Synapse-compatible admin API for accounts and devices, so existing admin tools work unchanged."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import require_admin
from paigham.api.http import json_body, ok, query_bool, query_int, typed_body
from paigham.errors import Codes, MatrixError
from paigham.services.admin import AdminService
from paigham.services.auth import MAX_PASSWORD_LEN, AuthService
from paigham.storage.admin import AdminStore
from paigham.storage.org import OrgStore

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
ORDERS = ("name", "displayname", "creation_ts", "admin", "deactivated", "locked")


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


class DeactivateBody(msgspec.Struct):
    erase: bool = False


class DeleteDevicesBody(msgspec.Struct):
    devices: list[str]


def user_json(u: Any, erased: bool = False) -> dict[str, Any]:
    return {
        "name": u.user_id,
        "displayname": u.displayname,
        "avatar_url": u.avatar_url,
        "threepids": [],
        "is_guest": False,
        "admin": bool(u.admin),
        "deactivated": bool(u.deactivated),
        "erased": erased,
        "shadow_banned": False,
        "locked": bool(u.locked),
        "suspended": bool(u.suspended),
        "creation_ts": u.created_ts,
        "appservice_id": None,
        "user_type": getattr(u, "user_type", None),
        "approved": True,
        "external_ids": [],
    }


def device_json(user_id: str, d: Any) -> dict[str, Any]:
    return {
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_ts": d.last_seen_ts,
        "last_seen_user_agent": None,
        "user_id": user_id,
    }


def routes(auth: AuthService, admin: AdminService, store: AdminStore, org: OrgStore) -> list[Route]:
    async def show(user_id: str) -> dict[str, Any]:
        user = await admin.existing_user(user_id)
        out = user_json(user, await store.erased(user_id))
        off = await org.official_by_user(user_id)
        if off is not None:
            o = off.official
            out["threepids"] = [{"medium": "email", "address": o.email}] if o.email else []
            out["org.paigham.official"] = {"employee_id": o.employee_id, "unit_id": o.unit_id, "status": o.status}
        return out

    async def list_users(request: Request) -> Response:
        """GET /_synapse/admin/v2/users"""
        await require_admin(auth, request)
        offset = query_int(request, "from", 0, 0, 2**31)
        limit = query_int(request, "limit", 100, 1, 1000)
        order_by = request.query_params.get("order_by", "name")
        if order_by not in ORDERS:
            raise MatrixError(400, Codes.INVALID_PARAM, f"order_by must be one of {', '.join(ORDERS)}")
        direction = request.query_params.get("dir", "f")
        if direction not in ("f", "b"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be f or b")
        admins = request.query_params.get("admins")
        rows, total = await store.list_users(
            offset=offset,
            limit=limit,
            name=request.query_params.get("name", "")[:255] or None,
            user_id=request.query_params.get("user_id", "")[:255] or None,
            deactivated=query_bool(request, "deactivated", False),
            admins=None if admins is None else query_bool(request, "admins"),
            order_by=order_by,
            descending=direction == "b",
        )
        body: dict[str, Any] = {"users": [user_json(u) for u in rows], "total": total}
        if offset + len(rows) < total:
            body["next_token"] = str(offset + len(rows))
        return ok(body)

    async def get_user(request: Request) -> Response:
        """GET /_synapse/admin/v2/users/{userId}"""
        await require_admin(auth, request)
        return ok(await show(request.path_params["user_id"]))

    async def put_user(request: Request) -> Response:
        """PUT /_synapse/admin/v2/users/{userId}"""
        _, actor = await require_admin(auth, request)
        user_id = request.path_params["user_id"]
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
        fields = {k: v for k, v in msgspec.structs.asdict(body).items() if k in raw}
        created = await admin.put_user(user_id, fields, actor)
        return ok(await show(user_id), status=201 if created else 200)

    async def deactivate(request: Request) -> Response:
        """POST /_synapse/admin/v1/deactivate/{userId}"""
        _, actor = await require_admin(auth, request)
        body = await typed_body(request, DeactivateBody, allow_empty=True)
        await admin.deactivate(request.path_params["user_id"], actor, erase=body.erase)
        return ok({"id_server_unbind_result": "success"})

    async def list_devices(request: Request) -> Response:
        """GET /_synapse/admin/v2/users/{userId}/devices"""
        await require_admin(auth, request)
        user_id = request.path_params["user_id"]
        await admin.existing_user(user_id)
        devices = [device_json(user_id, d) for d in await auth.store.get_devices(user_id)]
        return ok({"devices": devices, "total": len(devices)})

    async def get_device(request: Request) -> Response:
        """GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}"""
        await require_admin(auth, request)
        user_id = request.path_params["user_id"]
        await admin.existing_user(user_id)
        d = await auth.store.get_device(user_id, request.path_params["device_id"])
        if d is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Device not found")
        return ok(device_json(user_id, d))

    async def delete_device(request: Request) -> Response:
        """DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}"""
        _, actor = await require_admin(auth, request)
        user_id = request.path_params["user_id"]
        await admin.existing_user(user_id)
        if await auth.store.get_device(user_id, request.path_params["device_id"]) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Device not found")
        await admin.delete_devices(user_id, [request.path_params["device_id"]], actor)
        return ok({})

    async def delete_devices(request: Request) -> Response:
        """POST /_synapse/admin/v2/users/{userId}/delete_devices"""
        _, actor = await require_admin(auth, request)
        body = await typed_body(request, DeleteDevicesBody)
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
