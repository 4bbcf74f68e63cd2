"""Synapse-compatible admin API for rooms: list, details, delete (and block)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import admin_only
from paigham.api.http import Authenticator, ok, query_int, typed_body
from paigham.errors import Codes, MatrixError
from paigham.ids import check_room_id
from paigham.requester import Requester
from paigham.services.admin import Actor, AdminService
from paigham.services.admin_rooms import ROOM_ORDERS, AdminRooms, RoomQuery
from paigham.types import JsonDict

V1 = "/_synapse/admin/v1"


class DeleteRoomBody(msgspec.Struct):
    new_room_user_id: str | None = None
    room_name: str | None = None
    message: str | None = None
    block: bool = False
    purge: bool = True
    force_purge: bool = False


def _room_query(request: Request) -> RoomQuery:
    offset = query_int(request, "from", 0, 0, 2**31)
    limit = query_int(request, "limit", 100, 1, 1000)
    order = request.query_params.get("order_by", "name")
    if order not in ROOM_ORDERS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown order_by {order[:50]!r}")
    direction = request.query_params.get("dir", "f")
    if direction not in ("f", "b"):
        raise MatrixError(400, Codes.INVALID_PARAM, "dir must be f or b")
    term = request.query_params.get("search_term", "")[:255].lower()
    return RoomQuery(offset, limit, order, direction == "b", term)


def routes(auth: Authenticator, admin: AdminService, rooms: AdminRooms) -> list[Route]:
    @admin_only(auth)
    async def list_rooms(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v1/rooms"""
        q = _room_query(request)
        page = await rooms.list_rooms(q)
        body: JsonDict = {"rooms": page.rooms, "offset": q.offset, "total_rooms": page.total}
        if q.offset + len(page.rooms) < page.total:
            body["next_batch"] = q.offset + len(page.rooms)
        if q.offset > 0:
            body["prev_batch"] = max(0, q.offset - q.limit)
        return ok(body)

    @admin_only(auth)
    async def get_room(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v1/rooms/{roomId}"""
        return ok(await rooms.room(check_room_id(request.path_params["room_id"])))

    @admin_only(auth)
    async def delete_room(request: Request, _requester: Requester, actor: Actor) -> Response:
        """DELETE /_synapse/admin/v1/rooms/{roomId}"""
        room_id = check_room_id(request.path_params["room_id"])
        body = await typed_body(request, DeleteRoomBody, allow_empty=True)
        if body.new_room_user_id is not None:
            raise MatrixError(
                400,
                Codes.INVALID_PARAM,
                "new_room_user_id is not supported: members are removed and no replacement room is created",
            )
        return ok(await admin.delete_room(room_id, actor, block=body.block, purge=body.purge or body.force_purge))

    return [
        Route(f"{V1}/rooms", list_rooms, methods=["GET"]),
        Route(f"{V1}/rooms/{{room_id}}", get_room, methods=["GET"]),
        Route(f"{V1}/rooms/{{room_id}}", delete_room, methods=["DELETE"]),
    ]
