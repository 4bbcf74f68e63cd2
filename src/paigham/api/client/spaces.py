"""Spaces: GET /_matrix/client/v1/rooms/{roomId}/hierarchy (spec "Spaces")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, ok, query_bool, query_int
from paigham.ids import check_room_id
from paigham.requester import Requester
from paigham.services.spaces import HierarchyRequest, SpaceHierarchy


def routes(auth: Authenticator, hierarchy: SpaceHierarchy) -> list[Route]:
    @authed(auth)
    async def get_hierarchy(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy"""
        root = check_room_id(request.path_params["room_id"])
        page = HierarchyRequest(
            limit=query_int(request, "limit", 50, 1, 100),
            max_depth=query_int(request, "max_depth", 10, 0, 50),
            suggested_only=query_bool(request, "suggested_only"),
            start=request.query_params.get("from"),
        )
        return ok(await hierarchy.page(requester.user_id, root, page))

    return [Route("/_matrix/client/v1/rooms/{room_id}/hierarchy", get_hierarchy, methods=["GET"])]
