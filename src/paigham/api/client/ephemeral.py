"""Receipts, read markers, typing and presence."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import authed, client_routes, json_body, ok, require_self, typed_body
from paigham.errors import Codes, MatrixError
from paigham.ids import check_event_id, check_room_id
from paigham.requester import Requester
from paigham.services.auth import AuthService
from paigham.services.ephemeral import EphemeralService
from paigham.services.presence import PresenceService


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


def routes(auth: AuthService, eph: EphemeralService, presence: PresenceService) -> list[Route]:
    @authed(auth)
    async def receipt(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}"""
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

    @authed(auth)
    async def read_markers(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/read_markers"""
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

    @authed(auth)
    async def typing(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}"""
        require_self(requester, request.path_params["user_id"])
        body = await typed_body(request, TypingBody)
        await eph.typing(requester.user_id, check_room_id(request.path_params["room_id"]), body.typing, body.timeout)
        return ok()

    @authed(auth)
    async def get_presence(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/v3/presence/{userId}/status"""
        user_id = request.path_params["user_id"]
        if await auth.get_user(user_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown user")
        return ok(await presence.get(user_id))

    @authed(auth)
    async def put_presence(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/presence/{userId}/status"""
        require_self(requester, request.path_params["user_id"])
        body = await typed_body(request, PresenceBody)
        await presence.set(requester.user_id, body.presence, body.status_msg)
        return ok()

    return [
        *client_routes("/rooms/{room_id}/receipt/{receipt_type}/{event_id}", receipt, ["POST"]),
        *client_routes("/rooms/{room_id}/read_markers", read_markers, ["POST"]),
        *client_routes("/rooms/{room_id}/typing/{user_id}", typing, ["PUT"]),
        *client_routes("/presence/{user_id}/status", get_presence, ["GET"]),
        *client_routes("/presence/{user_id}/status", put_presence, ["PUT"]),
    ]
