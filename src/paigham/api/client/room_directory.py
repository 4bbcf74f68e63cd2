"""Room aliases, the public room directory and room visibility."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, ok, query_int, typed_body
from paigham.errors import Codes, MatrixError
from paigham.ids import check_room_id
from paigham.requester import Requester
from paigham.services.room_directory import RoomDirectoryService


class AliasBody(msgspec.Struct):
    room_id: str


class VisibilityBody(msgspec.Struct):
    visibility: str


class PublicRoomsBody(msgspec.Struct):
    limit: int | None = None
    since: str | None = None
    filter: dict[str, Any] | None = None
    include_all_networks: bool = False
    third_party_instance_id: str | None = None


MAX_ROOM_TYPES = 50


def _room_types(raw: object) -> frozenset[str | None] | None:
    """`filter.room_types` (spec v1.4): room types to list; null stands for rooms without a type, and an
    empty list filters nothing (as when absent)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > MAX_ROOM_TYPES:
        raise MatrixError(400, Codes.BAD_JSON, f"filter.room_types must be a list of at most {MAX_ROOM_TYPES}")
    if not all(t is None or (isinstance(t, str) and len(t) <= 255) for t in raw):
        raise MatrixError(400, Codes.BAD_JSON, "filter.room_types holds room types (strings) or null")
    return frozenset(raw) or None


def routes(auth: Authenticator, directory: RoomDirectoryService) -> list[Route]:
    async def get_alias(request: Request) -> Response:
        """GET /_matrix/client/v3/directory/room/{roomAlias}"""
        return ok(await directory.resolve(request.path_params["alias"]))

    @authed(auth)
    async def put_alias(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/directory/room/{roomAlias}"""
        alias = directory.local_alias(request.path_params["alias"])
        body = await typed_body(request, AliasBody)
        await directory.create_alias(requester.user_id, alias, body.room_id)
        return ok()

    @authed(auth)
    async def delete_alias(request: Request, requester: Requester) -> Response:
        """DELETE /_matrix/client/v3/directory/room/{roomAlias}"""
        await directory.delete_alias(requester, request.path_params["alias"])
        return ok()

    @authed(auth)
    async def room_aliases(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/aliases"""
        room_id = check_room_id(request.path_params["room_id"])
        return ok({"aliases": await directory.room_aliases(requester.user_id, room_id)})

    async def get_visibility(request: Request) -> Response:
        """GET /_matrix/client/v3/directory/list/room/{roomId}"""
        room_id = check_room_id(request.path_params["room_id"])
        return ok({"visibility": await directory.visibility(room_id)})

    @authed(auth)
    async def put_visibility(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/directory/list/room/{roomId}"""
        room_id = check_room_id(request.path_params["room_id"])
        body = await typed_body(request, VisibilityBody)
        await directory.set_visibility(requester, room_id, body.visibility)
        return ok()

    async def get_public_rooms(request: Request) -> Response:
        """GET /_matrix/client/v3/publicRooms"""
        limit = query_int(request, "limit", 100, 1, 500)
        return ok(await directory.public_rooms(limit, request.query_params.get("since"), None))

    @authed(auth)
    async def post_public_rooms(request: Request, _: Requester) -> Response:
        """POST /_matrix/client/v3/publicRooms"""
        body = await typed_body(request, PublicRoomsBody, allow_empty=True)
        flt = body.filter or {}
        term = flt.get("generic_search_term")
        limit = max(1, min(body.limit or 100, 500))
        types = _room_types(flt.get("room_types"))
        return ok(await directory.public_rooms(limit, body.since, term if isinstance(term, str) else None, types))

    return [
        *client_routes("/directory/room/{alias:path}", get_alias, ["GET"]),
        *client_routes("/directory/room/{alias:path}", put_alias, ["PUT"]),
        *client_routes("/directory/room/{alias:path}", delete_alias, ["DELETE"]),
        *client_routes("/rooms/{room_id}/aliases", room_aliases, ["GET"]),
        *client_routes("/directory/list/room/{room_id}", get_visibility, ["GET"]),
        *client_routes("/directory/list/room/{room_id}", put_visibility, ["PUT"]),
        *client_routes("/publicRooms", get_public_rooms, ["GET"]),
        *client_routes("/publicRooms", post_public_rooms, ["POST"]),
    ]
