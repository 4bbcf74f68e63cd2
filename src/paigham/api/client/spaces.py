"""Spaces: GET /_matrix/client/v1/rooms/{roomId}/hierarchy (spec "Spaces")."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, ok, query_bool, query_int
from paigham.errors import Codes, MatrixError
from paigham.ids import check_room_id
from paigham.services import room_summary
from paigham.services.auth import AuthService
from paigham.storage.events import EventStore

MAX_ROOMS_VISITED = 1000


def routes(auth: AuthService, events: EventStore) -> list[Route]:
    async def children(room_id: str, suggested_only: bool) -> list[dict[str, Any]]:
        out = []
        for e in await events.current_state(room_id, ["m.space.child"]):
            via = e.content.get("via")
            if not isinstance(via, list) or not via or not e.state_key:
                continue  # a child without `via` is a removed child (spec)
            if suggested_only and e.content.get("suggested") is not True:
                continue
            out.append(
                {
                    "type": e.type,
                    "state_key": e.state_key,
                    "content": e.content,
                    "sender": e.sender,
                    "origin_server_ts": e.origin_server_ts,
                }
            )
        return sorted(out, key=_child_order)

    async def hierarchy(request: Request) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy"""
        requester = await auth.authenticate(bearer(request))
        root = check_room_id(request.path_params["room_id"])
        if await events.get_room(root) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if not await room_summary.can_peek(events, requester.user_id, root):
            raise MatrixError(403, Codes.FORBIDDEN, "You cannot see this space")
        limit = query_int(request, "limit", 50, 1, 100)
        max_depth = query_int(request, "max_depth", 10, 0, 50)
        suggested = query_bool(request, "suggested_only")
        start = request.query_params.get("from")
        skip = int(start) if start and start.isascii() and start.isdigit() and len(start) < 7 else 0
        if start and not skip:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid pagination token")
        rooms: list[dict[str, Any]] = []
        queue: list[tuple[str, int]] = [(root, 0)]
        seen: set[str] = set()
        while queue and len(seen) < MAX_ROOMS_VISITED and len(rooms) < skip + limit:
            room_id, depth = queue.pop(0)
            if room_id in seen or await events.get_room(room_id) is None:
                continue
            seen.add(room_id)
            if room_id != root and not await room_summary.can_peek(events, requester.user_id, room_id):
                continue
            kids = await children(room_id, suggested)
            entry = await room_summary.summarise(events, room_id)
            entry["children_state"] = kids
            rooms.append(entry)
            if depth < max_depth:
                queue.extend((k["state_key"], depth + 1) for k in kids)
        body: dict[str, Any] = {"rooms": rooms[skip : skip + limit]}
        if queue and len(rooms) >= skip + limit:
            body["next_batch"] = str(skip + limit)
        return ok(body)

    return [Route("/_matrix/client/v1/rooms/{room_id}/hierarchy", hierarchy, methods=["GET"])]


def _child_order(child: dict[str, Any]) -> tuple[str, int, str]:
    """Spec order: `order` strings first (lexicographic), then by timestamp, then by room ID."""
    order = child["content"].get("order")
    return (order if isinstance(order, str) else "\uffff", child["origin_server_ts"], child["state_key"])
