"""GET /sync and filters."""

from __future__ import annotations

from msgspec import Raw
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, JSONInParts, authed, client_routes, json_body, ok, query_bool, query_int
from paigham.config import Config
from paigham.domain.tokens import parse_token
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.filtering import FilterService
from paigham.services.presence import PresenceService
from paigham.sync.service import SyncService


def routes(
    config: Config, auth: Authenticator, sync: SyncService, filters: FilterService, presence: PresenceService
) -> list[Route]:
    @authed(auth)
    async def do_sync(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/sync"""
        q = request.query_params
        since = parse_token(q["since"], "since") if q.get("since") else None
        timeout = query_int(request, "timeout", 0, 0, config.sync_timeout_max_ms)
        flt = await filters.sync_view(requester.user_id, q.get("filter"))
        set_presence = q.get("set_presence", "online")
        if set_presence not in ("online", "offline", "unavailable"):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid set_presence")
        await presence.on_sync(requester.user_id, set_presence)
        body = await sync.sync(requester, since, timeout, flt, query_bool(request, "full_state"))
        join = body.rooms.join
        if join and isinstance(next(iter(join.values())), Raw):
            # A response of many rooms, each JSON already (sync/sections.py): sent room by room, never
            # as one buffer, and compressed as it goes.
            members = list(join.items())
            body.rooms.join = JSONInParts.hole_object()
            return JSONInParts(body, members)
        return ok(body)

    @authed(auth)
    async def create_filter(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/user/{userId}/filter"""
        if request.path_params["user_id"] != requester.user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "Cannot create filters for other users")
        body = await json_body(request)
        return ok({"filter_id": str(await filters.create(requester.user_id, body))})

    @authed(auth)
    async def get_filter(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/user/{userId}/filter/{filterId}"""
        if request.path_params["user_id"] != requester.user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "Cannot read other users' filters")
        return ok(await filters.get(requester.user_id, request.path_params["filter_id"]))

    return [
        *client_routes("/sync", do_sync, ["GET"]),
        *client_routes("/user/{user_id}/filter", create_filter, ["POST"]),
        *client_routes("/user/{user_id}/filter/{filter_id}", get_filter, ["GET"]),
    ]
