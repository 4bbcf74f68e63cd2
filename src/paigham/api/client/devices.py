"""Device management: list, show, rename and delete the user's devices."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, ok, typed_body
from paigham.requester import Requester
from paigham.services.devices import DeviceService


class DeviceUpdate(msgspec.Struct):
    display_name: str | None = None


class DeleteDevicesBody(msgspec.Struct):
    devices: list[str]
    auth: dict[str, object] | None = None


class AuthOnlyBody(msgspec.Struct):
    auth: dict[str, object] | None = None


def routes(auth: Authenticator, devices: DeviceService) -> list[Route]:
    @authed(auth)
    async def list_devices(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/devices"""
        return ok({"devices": await devices.list_devices(requester.user_id)})

    @authed(auth)
    async def get_device(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/devices/{deviceId}"""
        return ok(await devices.get_device(requester.user_id, request.path_params["device_id"]))

    @authed(auth)
    async def put_device(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/devices/{deviceId}"""
        body = await typed_body(request, DeviceUpdate, allow_empty=True)
        await devices.rename(requester.user_id, request.path_params["device_id"], body.display_name)
        return ok()

    @authed(auth)
    async def delete_device(request: Request, requester: Requester) -> Response:
        """DELETE /_matrix/client/v3/devices/{deviceId}"""
        body = await typed_body(request, AuthOnlyBody, allow_empty=True)
        await devices.delete(requester.user_id, request.path_params["device_id"], body.auth)
        return ok()

    @authed(auth)
    async def delete_devices(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/delete_devices"""
        body = await typed_body(request, DeleteDevicesBody)
        await devices.delete_many(requester.user_id, body.devices, body.auth)
        return ok()

    return [
        *client_routes("/devices", list_devices, ["GET"]),
        *client_routes("/devices/{device_id}", get_device, ["GET"]),
        *client_routes("/devices/{device_id}", put_device, ["PUT"]),
        *client_routes("/devices/{device_id}", delete_device, ["DELETE"]),
        *client_routes("/delete_devices", delete_devices, ["POST"]),
    ]
