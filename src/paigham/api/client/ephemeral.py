"""Receipts, read markers, typing, presence, account data and tags."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, client_routes, json_body, ok, typed_body
from paigham.errors import Codes, MatrixError
from paigham.ids import check_event_id, check_room_id
from paigham.requester import Requester
from paigham.services.auth import AuthService
from paigham.services.ephemeral import EphemeralService
from paigham.services.presence import PresenceService

MAX_TAGS = 100


class TypingBody(msgspec.Struct):
    typing: bool
    timeout: int | None = None


class PresenceBody(msgspec.Struct):
    presence: str
    status_msg: str | None = None


class ReadMarkersBody(
    msgspec.Struct, rename={"fully_read": "m.fully_read", "read": "m.read", "read_private": "m.read.private"}
):
    fully_read: str | None = None
    read: str | None = None
    read_private: str | None = None


def _self(requester: Requester, user_id: str) -> None:
    if user_id != requester.user_id:
        raise MatrixError(403, Codes.FORBIDDEN, "You can only do this for yourself")


def routes(auth: AuthService, eph: EphemeralService, presence: PresenceService) -> list[Route]:
    async def receipt(request: Request) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}"""
        requester = await auth.authenticate(bearer(request))
        body = await json_body(request, allow_empty=True)
        thread_id = body.get("thread_id")
        if thread_id is not None and not isinstance(thread_id, str):
            raise MatrixError(400, Codes.BAD_JSON, "thread_id must be a string")
        if thread_id is not None and thread_id != "main":
            check_event_id(thread_id)  # a thread is named by its root event
        await eph.receipt(
            requester.user_id,
            check_room_id(request.path_params["room_id"]),
            request.path_params["receipt_type"],
            check_event_id(request.path_params["event_id"]),
            thread_id,
        )
        return ok()

    async def read_markers(request: Request) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/read_markers"""
        requester = await auth.authenticate(bearer(request))
        body = await typed_body(request, ReadMarkersBody, allow_empty=True)
        room_id = check_room_id(request.path_params["room_id"])
        for rtype, event_id in (
            ("m.fully_read", body.fully_read),
            ("m.read", body.read),
            ("m.read.private", body.read_private),
        ):
            if event_id is not None:
                await eph.receipt(requester.user_id, room_id, rtype, check_event_id(event_id), None)
        return ok()

    async def typing(request: Request) -> Response:
        """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}"""
        requester = await auth.authenticate(bearer(request))
        _self(requester, request.path_params["user_id"])
        body = await typed_body(request, TypingBody)
        await eph.typing(requester.user_id, check_room_id(request.path_params["room_id"]), body.typing, body.timeout)
        return ok()

    async def get_presence(request: Request) -> Response:
        """GET /_matrix/client/v3/presence/{userId}/status"""
        await auth.authenticate(bearer(request))
        user_id = request.path_params["user_id"]
        if await auth.store.get_user(user_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown user")
        return ok(await presence.get(user_id))

    async def put_presence(request: Request) -> Response:
        """PUT /_matrix/client/v3/presence/{userId}/status"""
        requester = await auth.authenticate(bearer(request))
        _self(requester, request.path_params["user_id"])
        body = await typed_body(request, PresenceBody)
        await presence.set(requester.user_id, body.presence, body.status_msg)
        return ok()

    async def put_global(request: Request) -> Response:
        """PUT /_matrix/client/v3/user/{userId}/account_data/{type}"""
        requester = await auth.authenticate(bearer(request))
        _self(requester, request.path_params["user_id"])
        await eph.account_data(requester.user_id, "", request.path_params["type"], await json_body(request))
        return ok()

    async def get_global(request: Request) -> Response:
        """GET /_matrix/client/v3/user/{userId}/account_data/{type}"""
        requester = await auth.authenticate(bearer(request))
        _self(requester, request.path_params["user_id"])
        return ok(await eph.get_account_data(requester.user_id, "", request.path_params["type"]))

    async def put_room(request: Request) -> Response:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
        requester = await auth.authenticate(bearer(request))
        _self(requester, request.path_params["user_id"])
        room_id = check_room_id(request.path_params["room_id"])
        await eph.account_data(requester.user_id, room_id, request.path_params["type"], await json_body(request))
        return ok()

    async def get_room(request: Request) -> Response:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
        requester = await auth.authenticate(bearer(request))
        _self(requester, request.path_params["user_id"])
        room_id = check_room_id(request.path_params["room_id"])
        return ok(await eph.get_account_data(requester.user_id, room_id, request.path_params["type"]))

    async def _tags(requester: Requester, room_id: str) -> dict[str, Any]:
        current = await eph.account_data_store.get(requester.user_id, room_id, "m.tag")
        tags = (current or {}).get("tags")
        return dict(tags) if isinstance(tags, dict) else {}

    async def get_tags(request: Request) -> Response:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags"""
        requester = await auth.authenticate(bearer(request))
        _self(requester, request.path_params["user_id"])
        return ok({"tags": await _tags(requester, check_room_id(request.path_params["room_id"]))})

    async def put_tag(request: Request) -> Response:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
        requester = await auth.authenticate(bearer(request))
        _self(requester, request.path_params["user_id"])
        room_id = check_room_id(request.path_params["room_id"])
        body = await json_body(request)
        tag = request.path_params["tag"]
        if not tag or len(tag.encode()) > 255:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid tag")
        if "order" in body and not isinstance(body["order"], int | float):
            raise MatrixError(400, Codes.BAD_JSON, "order must be a number")
        tags = await _tags(requester, room_id)
        if tag not in tags and len(tags) >= MAX_TAGS:
            raise MatrixError(400, Codes.INVALID_PARAM, "Too many tags")
        tags[tag] = body
        await eph.account_data(requester.user_id, room_id, "m.tag", {"tags": tags})
        return ok()

    async def delete_tag(request: Request) -> Response:
        """DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
        requester = await auth.authenticate(bearer(request))
        _self(requester, request.path_params["user_id"])
        room_id = check_room_id(request.path_params["room_id"])
        tags = await _tags(requester, room_id)
        tags.pop(request.path_params["tag"], None)
        await eph.account_data(requester.user_id, room_id, "m.tag", {"tags": tags})
        return ok()

    return [
        *client_routes("/rooms/{room_id}/receipt/{receipt_type}/{event_id}", receipt, ["POST"]),
        *client_routes("/rooms/{room_id}/read_markers", read_markers, ["POST"]),
        *client_routes("/rooms/{room_id}/typing/{user_id}", typing, ["PUT"]),
        *client_routes("/presence/{user_id}/status", get_presence, ["GET"]),
        *client_routes("/presence/{user_id}/status", put_presence, ["PUT"]),
        *client_routes("/user/{user_id}/account_data/{type}", put_global, ["PUT"]),
        *client_routes("/user/{user_id}/account_data/{type}", get_global, ["GET"]),
        *client_routes("/user/{user_id}/rooms/{room_id}/account_data/{type}", put_room, ["PUT"]),
        *client_routes("/user/{user_id}/rooms/{room_id}/account_data/{type}", get_room, ["GET"]),
        *client_routes("/user/{user_id}/rooms/{room_id}/tags", get_tags, ["GET"]),
        *client_routes("/user/{user_id}/rooms/{room_id}/tags/{tag}", put_tag, ["PUT"]),
        *client_routes("/user/{user_id}/rooms/{room_id}/tags/{tag}", delete_tag, ["DELETE"]),
    ]
