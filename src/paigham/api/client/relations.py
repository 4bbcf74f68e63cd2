"""Relations and threads (spec v1.19 "Relationships", "Threading"), plus small discovery
endpoints that have honest fixed answers on this server."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, client_routes, ok, query_int
from paigham.domain.tokens import make_token, parse_token
from paigham.errors import Codes, MatrixError
from paigham.ids import check_event_id, check_room_id
from paigham.services.auth import AuthService
from paigham.services.serializer import EventSerializer
from paigham.services.timeline import TimelineService
from paigham.services.visibility import filter_visible


def routes(auth: AuthService, timeline: TimelineService, serializer: EventSerializer) -> list[Route]:
    store = timeline.store

    async def relations(request: Request) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]"""
        requester = await auth.authenticate(bearer(request))
        room_id = check_room_id(request.path_params["room_id"])
        event_id = check_event_id(request.path_params["event_id"])
        rel_type = request.path_params.get("rel_type")
        event_type = request.path_params.get("event_type")
        await timeline.require_member(requester.user_id, room_id)
        parent = await store.get_event(event_id)
        if parent is None or parent.room_id != room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        q = request.query_params
        backwards = q.get("dir", "b") == "b"
        if q.get("dir", "b") not in ("b", "f"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be b or f")
        limit = query_int(request, "limit", 50, 1, 1000)
        cursor = parse_token(q["from"], "from") if q.get("from") else None
        found = await store.relations(
            event_id,
            rel_type,
            limit + 1,
            before=cursor + 1 if (cursor is not None and backwards) else None,
            after=cursor if (cursor is not None and not backwards) else None,
            backwards=backwards,
        )
        if event_type is not None:
            found = [e for e in found if e.type == event_type]
        page = found[:limit]
        visible = await filter_visible(store, requester.user_id, room_id, page)
        body: dict[str, Any] = {"chunk": await serializer.serialize(visible, requester)}
        if len(found) > limit and page:
            body["next_batch"] = make_token(page[-1].stream - 1 if backwards else page[-1].stream)
        return ok(body)

    async def threads(request: Request) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/threads"""
        requester = await auth.authenticate(bearer(request))
        room_id = check_room_id(request.path_params["room_id"])
        await timeline.require_member(requester.user_id, room_id)
        include = request.query_params.get("include", "all")
        if include not in ("all", "participated"):
            raise MatrixError(400, Codes.INVALID_PARAM, "include must be all or participated")
        limit = query_int(request, "limit", 20, 1, 100)
        frm = request.query_params.get("from")
        roots = await store.thread_roots(room_id, limit + 1, parse_token(frm, "from") if frm else None)
        evs = await store.get_events([r for r, _ in roots[:limit]])
        ordered = [evs[r] for r, _ in roots[:limit] if r in evs]
        ordered = await filter_visible(store, requester.user_id, room_id, ordered)
        chunk = await serializer.serialize(ordered, requester)
        if include == "participated":
            chunk = [
                e
                for e in chunk
                if e["unsigned"].get("m.relations", {}).get("m.thread", {}).get("current_user_participated")
            ]
        body: dict[str, Any] = {"chunk": chunk}
        if len(roots) > limit:
            body["next_batch"] = make_token(roots[limit - 1][1])
        return ok(body)

    async def thirdparty_protocols(request: Request) -> Response:
        """GET /_matrix/client/v3/thirdparty/protocols — no bridges are configured."""
        await auth.authenticate(bearer(request))
        return ok({})

    async def turn_server(request: Request) -> Response:
        """GET /_matrix/client/v3/voip/turnServer — no TURN server is configured."""
        await auth.authenticate(bearer(request))
        return ok({})

    return [
        Route("/_matrix/client/v1/rooms/{room_id}/relations/{event_id}", relations, methods=["GET"]),
        Route("/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}", relations, methods=["GET"]),
        Route(
            "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}",
            relations,
            methods=["GET"],
        ),
        Route("/_matrix/client/v1/rooms/{room_id}/threads", threads, methods=["GET"]),
        *client_routes("/thirdparty/protocols", thirdparty_protocols, ["GET"]),
        *client_routes("/voip/turnServer", turn_server, ["GET"]),
    ]
