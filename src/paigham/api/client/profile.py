"""Profiles, devices and the user directory."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, client_routes, json_body, ok, typed_body
from paigham.errors import Codes, MatrixError
from paigham.ids import is_valid_user_id
from paigham.services.auth import AuthService
from paigham.services.profile import ProfileService
from paigham.services.uia import PASSWORD, UIAService

MAX_DISPLAYNAME = 256


class DeviceUpdate(msgspec.Struct):
    display_name: str | None = None


class DeleteDevicesBody(msgspec.Struct):
    devices: list[str]
    auth: dict[str, object] | None = None


class AuthOnlyBody(msgspec.Struct):
    auth: dict[str, object] | None = None


class SearchBody(msgspec.Struct):
    search_term: str
    limit: int = 10


def routes(auth: AuthService, uia: UIAService, profiles: ProfileService) -> list[Route]:
    async def get_profile(request: Request) -> Response:
        """GET /_matrix/client/v3/profile/{userId}"""
        user_id = request.path_params["user_id"]
        if not is_valid_user_id(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user ID")
        return ok(await profiles.get(user_id))

    async def get_field(request: Request) -> Response:
        """GET /_matrix/client/v3/profile/{userId}/{keyName}"""
        user_id = request.path_params["user_id"]
        key = request.path_params["key"]
        profile = await profiles.get(user_id)
        if key not in profile:
            raise MatrixError(404, Codes.NOT_FOUND, f"Profile field {key!r} is not set"[:200])
        return ok({key: profile[key]})

    async def put_field(request: Request) -> Response:
        """PUT /_matrix/client/v3/profile/{userId}/{keyName}"""
        requester = await auth.authenticate(bearer(request))
        user_id = request.path_params["user_id"]
        if user_id != requester.user_id and not requester.is_admin:
            raise MatrixError(403, Codes.FORBIDDEN, "You cannot change another user's profile")
        key = request.path_params["key"]
        body = await json_body(request)
        if key not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing {key!r} in body"[:200])
        await profiles.set(user_id, key, body[key])
        return ok()

    async def delete_field(request: Request) -> Response:
        """DELETE /_matrix/client/v3/profile/{userId}/{keyName}"""
        requester = await auth.authenticate(bearer(request))
        user_id = request.path_params["user_id"]
        if user_id != requester.user_id and not requester.is_admin:
            raise MatrixError(403, Codes.FORBIDDEN, "You cannot change another user's profile")
        await profiles.set(user_id, request.path_params["key"], None)
        return ok()

    async def list_devices(request: Request) -> Response:
        """GET /_matrix/client/v3/devices"""
        requester = await auth.authenticate(bearer(request))
        devices = await auth.store.get_devices(requester.user_id)
        return ok({"devices": [_device(d) for d in devices]})

    async def get_device(request: Request) -> Response:
        """GET /_matrix/client/v3/devices/{deviceId}"""
        requester = await auth.authenticate(bearer(request))
        d = await auth.store.get_device(requester.user_id, request.path_params["device_id"])
        if d is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown device")
        return ok(_device(d))

    async def put_device(request: Request) -> Response:
        """PUT /_matrix/client/v3/devices/{deviceId}"""
        requester = await auth.authenticate(bearer(request))
        body = await typed_body(request, DeviceUpdate, allow_empty=True)
        if body.display_name is not None and len(body.display_name) > MAX_DISPLAYNAME:
            raise MatrixError(400, Codes.TOO_LARGE, "display_name is too long")
        if body.display_name is not None:
            found = await auth.store.update_device(
                requester.user_id, request.path_params["device_id"], display_name=body.display_name
            )
            if not found:
                raise MatrixError(404, Codes.NOT_FOUND, "Unknown device")
        elif await auth.store.get_device(requester.user_id, request.path_params["device_id"]) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown device")
        return ok()

    async def delete_device(request: Request) -> Response:
        """DELETE /_matrix/client/v3/devices/{deviceId}"""
        requester = await auth.authenticate(bearer(request))
        body = await typed_body(request, AuthOnlyBody, allow_empty=True)
        device_id = request.path_params["device_id"]
        if await auth.store.get_device(requester.user_id, device_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown device")
        await uia.check(body.auth, kind="delete_devices", flows=[[PASSWORD]], user_id=requester.user_id)
        await auth.delete_devices(requester.user_id, [device_id])
        return ok()

    async def delete_devices(request: Request) -> Response:
        """POST /_matrix/client/v3/delete_devices"""
        requester = await auth.authenticate(bearer(request))
        body = await typed_body(request, DeleteDevicesBody)
        if len(body.devices) > 1000:
            raise MatrixError(400, Codes.INVALID_PARAM, "Too many devices")
        await uia.check(body.auth, kind="delete_devices", flows=[[PASSWORD]], user_id=requester.user_id)
        await auth.delete_devices(requester.user_id, body.devices)
        return ok()

    async def search(request: Request) -> Response:
        """POST /_matrix/client/v3/user_directory/search"""
        requester = await auth.authenticate(bearer(request))
        body = await typed_body(request, SearchBody)
        if len(body.search_term) > 256:
            raise MatrixError(400, Codes.INVALID_PARAM, "search_term is too long")
        limit = max(1, min(body.limit, 50))
        results, limited = await profiles.search(requester.user_id, body.search_term, limit)
        return ok({"results": results, "limited": limited})

    return [
        *client_routes("/profile/{user_id}", get_profile, ["GET"]),
        *client_routes("/profile/{user_id}/{key}", get_field, ["GET"]),
        *client_routes("/profile/{user_id}/{key}", put_field, ["PUT"]),
        *client_routes("/profile/{user_id}/{key}", delete_field, ["DELETE"]),
        *client_routes("/devices", list_devices, ["GET"]),
        *client_routes("/devices/{device_id}", get_device, ["GET"]),
        *client_routes("/devices/{device_id}", put_device, ["PUT"]),
        *client_routes("/devices/{device_id}", delete_device, ["DELETE"]),
        *client_routes("/delete_devices", delete_devices, ["POST"]),
        *client_routes("/user_directory/search", search, ["POST"]),
    ]


def _device(d: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"device_id": d.device_id}
    if d.display_name is not None:
        out["display_name"] = d.display_name
    if d.last_seen_ts is not None:
        out["last_seen_ts"] = d.last_seen_ts
    if d.last_seen_ip is not None:
        out["last_seen_ip"] = d.last_seen_ip
    return out
