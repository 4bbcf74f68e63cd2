"""Relations and threads (spec v1.19 "Relationships", "Threading")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, ok, query_int
from paigham.ids import check_event_id, check_room_id
from paigham.requester import Requester
from paigham.services.relations import RelationService, RelationsRequest

V1_ROOMS = "/_matrix/client/v1/rooms/{room_id}"


def routes(auth: Authenticator, relations: RelationService) -> list[Route]:
    @authed(auth)
    async def get_relations(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]"""
        room_id = check_room_id(request.path_params["room_id"])
        event_id = check_event_id(request.path_params["event_id"])
        q = request.query_params
        req = RelationsRequest(
            rel_type=request.path_params.get("rel_type"),
            event_type=request.path_params.get("event_type"),
            direction=q.get("dir", "b"),
            limit=query_int(request, "limit", 50, 1, 1000),
            start=q.get("from"),
        )
        return ok(await relations.relations(requester, room_id, event_id, req))

    @authed(auth)
    async def get_threads(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/threads"""
        room_id = check_room_id(request.path_params["room_id"])
        q = request.query_params
        include, limit = q.get("include", "all"), query_int(request, "limit", 20, 1, 100)
        return ok(await relations.threads(requester, room_id, include=include, limit=limit, start=q.get("from")))

    return [
        Route(V1_ROOMS + "/relations/{event_id}", get_relations, methods=["GET"]),
        Route(V1_ROOMS + "/relations/{event_id}/{rel_type}", get_relations, methods=["GET"]),
        Route(V1_ROOMS + "/relations/{event_id}/{rel_type}/{event_type}", get_relations, methods=["GET"]),
        Route(V1_ROOMS + "/threads", get_threads, methods=["GET"]),
    ]
