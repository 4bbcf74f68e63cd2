"""Room information a client asks for around sliding sync: the room summary, the event closest to a
time, and the rooms shared with another user (services/room_info.py has the rules)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, bearer, ok
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.room_info import RoomInfo
from paigham.types import JsonDict

MAX_TS_DIGITS = 16
UNSTABLE_SUMMARY = "/_matrix/client/unstable/im.nheko.summary"


def routes(auth: Authenticator, info: RoomInfo) -> list[Route]:
    async def summary(request: Request) -> JsonDict:
        token = bearer(request)  # optional: without one, only rooms anyone may see are summarised
        user_id = (await auth.authenticate(token)).user_id if token is not None else None
        return await info.summary(user_id, request.path_params["room"])

    async def room_summary(request: Request) -> Response:
        """GET /_matrix/client/v1/room_summary/{roomIdOrAlias}"""
        return ok(await summary(request))

    async def unstable_room_summary(request: Request) -> Response:
        """GET /_matrix/client/unstable/im.nheko.summary/{rooms/{roomIdOrAlias}/summary,summary/{roomIdOrAlias}}
        (MSC3266 before v1.15): the same, with the two fields under their unstable names as well."""
        body = await summary(request)
        for field in ("room_version", "encryption"):
            if field in body:
                body[f"im.nheko.summary.{field}"] = body[field]
        return ok(body)

    @authed(auth)
    async def timestamp_to_event(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event"""
        ts = _timestamp(request.query_params.get("ts"))
        direction = request.query_params.get("dir")
        if direction is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "dir is required")
        if direction not in ("f", "b"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be f or b")
        found = await info.closest_event(requester.user_id, request.path_params["room_id"], ts, direction == "f")
        return ok({"event_id": found.event_id, "origin_server_ts": found.origin_server_ts})

    @authed(auth)
    async def mutual_rooms(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v1/mutual_rooms (v1.19) and
        GET /_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms (MSC2666)"""
        q = request.query_params
        return ok(await info.mutual_rooms(requester.user_id, q.get("user_id"), q.get("from")))

    return [
        Route("/_matrix/client/v1/room_summary/{room:path}", room_summary, methods=["GET"]),
        Route(f"{UNSTABLE_SUMMARY}/rooms/{{room:path}}/summary", unstable_room_summary, methods=["GET"]),
        Route(f"{UNSTABLE_SUMMARY}/summary/{{room:path}}", unstable_room_summary, methods=["GET"]),
        Route("/_matrix/client/v1/rooms/{room_id}/timestamp_to_event", timestamp_to_event, methods=["GET"]),
        Route("/_matrix/client/v1/mutual_rooms", mutual_rooms, methods=["GET"]),
        Route("/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms", mutual_rooms, methods=["GET"]),
    ]


def _timestamp(raw: str | None) -> int:
    if raw is None or raw == "":
        raise MatrixError(400, Codes.MISSING_PARAM, "ts is required")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_TS_DIGITS):
        raise MatrixError(400, Codes.INVALID_PARAM, "ts must be a timestamp in milliseconds")
    return int(raw)
