"""Room creation and membership endpoints."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, ok, typed_body
from paigham.errors import Codes, MatrixError
from paigham.ids import check_room_id
from paigham.requester import Requester
from paigham.services.rooms import CreateRoomRequest, RoomService


class CreateRoomBody(msgspec.Struct):
    visibility: str = "private"
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: list[str] = msgspec.field(default_factory=list)
    invite_3pid: list[dict[str, Any]] = msgspec.field(default_factory=list)
    room_version: str | None = None
    creation_content: dict[str, Any] = msgspec.field(default_factory=dict)
    initial_state: list[dict[str, Any]] = msgspec.field(default_factory=list)
    preset: str | None = None
    is_direct: bool = False
    power_level_content_override: dict[str, Any] | None = None


class MembershipBody(msgspec.Struct):
    user_id: str
    reason: str | None = None


class ReasonBody(msgspec.Struct):
    reason: str | None = None


def routes(auth: Authenticator, rooms: RoomService) -> list[Route]:
    @authed(auth)
    async def create_room(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/createRoom"""
        body = await typed_body(request, CreateRoomBody, allow_empty=True)
        if body.invite_3pid:
            raise MatrixError(400, Codes.UNRECOGNIZED, "Third-party invites are not supported")
        room_id = await rooms.create_room(
            CreateRoomRequest(
                creator=requester.user_id,
                visibility=body.visibility,
                room_alias_name=body.room_alias_name,
                name=body.name,
                topic=body.topic,
                invite=body.invite,
                room_version=body.room_version,
                creation_content=body.creation_content,
                initial_state=body.initial_state,
                preset=body.preset,
                is_direct=body.is_direct,
                power_level_content_override=body.power_level_content_override,
            )
        )
        return ok({"room_id": room_id})

    @authed(auth)
    async def join_by_id(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/join"""
        body = await typed_body(request, ReasonBody, allow_empty=True)
        room_id = check_room_id(request.path_params["room_id"])
        return ok({"room_id": await rooms.join(requester.user_id, room_id, body.reason)})

    @authed(auth)
    async def join_by_alias(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/join/{roomIdOrAlias}"""
        body = await typed_body(request, ReasonBody, allow_empty=True)
        target = request.path_params["room"]
        return ok({"room_id": await rooms.join(requester.user_id, target, body.reason)})

    @authed(auth)
    async def knock(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/knock/{roomIdOrAlias}"""
        body = await typed_body(request, ReasonBody, allow_empty=True)
        room_id = await rooms.resolve_room(request.path_params["room"])
        await rooms.set_membership(requester.user_id, room_id, requester.user_id, "knock", body.reason)
        return ok({"room_id": room_id})

    @authed(auth)
    async def invite(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/invite"""
        body = await typed_body(request, MembershipBody)
        room_id = check_room_id(request.path_params["room_id"])
        await rooms.set_membership(requester.user_id, room_id, body.user_id, "invite", body.reason)
        return ok()

    @authed(auth)
    async def kick(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/kick"""
        body = await typed_body(request, MembershipBody)
        await rooms.kick(requester.user_id, check_room_id(request.path_params["room_id"]), body.user_id, body.reason)
        return ok()

    @authed(auth)
    async def ban(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/ban"""
        body = await typed_body(request, MembershipBody)
        room_id = check_room_id(request.path_params["room_id"])
        await rooms.set_membership(requester.user_id, room_id, body.user_id, "ban", body.reason)
        return ok()

    @authed(auth)
    async def unban(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/unban"""
        body = await typed_body(request, MembershipBody)
        await rooms.unban(requester.user_id, check_room_id(request.path_params["room_id"]), body.user_id, body.reason)
        return ok()

    @authed(auth)
    async def leave(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/leave"""
        body = await typed_body(request, ReasonBody, allow_empty=True)
        await rooms.leave(requester.user_id, check_room_id(request.path_params["room_id"]), body.reason)
        return ok()

    @authed(auth)
    async def forget(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/forget"""
        await rooms.forget(requester.user_id, check_room_id(request.path_params["room_id"]))
        return ok()

    @authed(auth)
    async def joined_rooms(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/joined_rooms"""
        return ok({"joined_rooms": await rooms.joined_rooms(requester.user_id)})

    return [
        *client_routes("/createRoom", create_room, ["POST"]),
        *client_routes("/rooms/{room_id}/join", join_by_id, ["POST"]),
        *client_routes("/join/{room:path}", join_by_alias, ["POST"]),
        *client_routes("/knock/{room:path}", knock, ["POST"]),
        *client_routes("/rooms/{room_id}/invite", invite, ["POST"]),
        *client_routes("/rooms/{room_id}/kick", kick, ["POST"]),
        *client_routes("/rooms/{room_id}/ban", ban, ["POST"]),
        *client_routes("/rooms/{room_id}/unban", unban, ["POST"]),
        *client_routes("/rooms/{room_id}/leave", leave, ["POST"]),
        *client_routes("/rooms/{room_id}/forget", forget, ["POST"]),
        *client_routes("/joined_rooms", joined_rooms, ["GET"]),
    ]
