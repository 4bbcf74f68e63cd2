"""Sending and reading room events: send, state, redact, event, members, messages, context."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, json_body, ok, query_int
from paigham.domain.tokens import parse_token
from paigham.errors import Codes, MatrixError
from paigham.ids import check_event_id, check_room_id
from paigham.requester import Requester
from paigham.services.delayed_events import DelayedEvents
from paigham.services.filtering import room_event_filter_param
from paigham.services.rooms import RoomService
from paigham.services.serializer import EventSerializer
from paigham.services.timeline import TimelineService
from paigham.services.writer import EventSpec, EventWriter, Txn

MAX_TYPE_LEN = 255
DELAY = "org.matrix.msc4140.delay"
PARENT_DELAY_ID = "org.matrix.msc4140.parent_delay_id"


def _check_type(event_type: str) -> str:
    if not event_type or len(event_type.encode()) > MAX_TYPE_LEN:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid event type")
    return event_type


def _delay(request: Request) -> int | None:
    """MSC4140 as matrix-js-sdk sends it: `?org.matrix.msc4140.delay=ms` schedules the event instead."""
    if PARENT_DELAY_ID in request.query_params:
        raise MatrixError(400, Codes.INVALID_PARAM, "parent_delay_id (delay groups) is not supported")
    raw = request.query_params.get(DELAY)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{DELAY} must be an integer") from None


def routes(
    auth: Authenticator,
    writer: EventWriter,
    rooms: RoomService,
    timeline: TimelineService,
    serializer: EventSerializer,
    delayed: DelayedEvents,
) -> list[Route]:
    @authed(auth)
    async def send(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"""
        room_id = check_room_id(request.path_params["room_id"])
        event_type = _check_type(request.path_params["event_type"])
        content = await json_body(request)
        delay = _delay(request)
        if delay is not None:  # MSC4140: scheduled, not sent; answers the delay_id
            delay_id = await delayed.schedule(
                requester.user_id, requester.device_id, room_id, event_type, None, content, delay,
                request.path_params["txn_id"][:255],
            )  # fmt: skip
            return ok({"delay_id": delay_id})
        txn = Txn(requester.user_id, requester.device_id, "send", request.path_params["txn_id"][:255])
        return ok({"event_id": await rooms.send_event(requester.user_id, room_id, event_type, content, txn)})

    @authed(auth)
    async def put_state(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
        room_id = check_room_id(request.path_params["room_id"])
        event_type = _check_type(request.path_params["event_type"])
        state_key = request.path_params.get("state_key", "")
        if len(state_key.encode()) > 255:
            raise MatrixError(400, Codes.INVALID_PARAM, "state_key is too long")
        content = await json_body(request)
        delay = _delay(request)
        if delay is not None:
            delay_id = await delayed.schedule(
                requester.user_id, requester.device_id, room_id, event_type, state_key, content, delay
            )
            return ok({"delay_id": delay_id})
        return ok({"event_id": await rooms.send_state(requester.user_id, room_id, event_type, state_key, content)})

    @authed(auth)
    async def redact(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}"""
        room_id = check_room_id(request.path_params["room_id"])
        target = check_event_id(request.path_params["event_id"])
        body = await json_body(request, allow_empty=True)
        content: dict[str, Any] = {"redacts": target}
        if isinstance(body.get("reason"), str):
            content["reason"] = body["reason"][:1024]
        txn = Txn(requester.user_id, requester.device_id, "redact", request.path_params["txn_id"][:255])
        event = await writer.send(
            room_id, EventSpec(requester.user_id, "m.room.redaction", content, None, redacts=target), txn
        )
        return ok({"event_id": event.event_id})

    @authed(auth)
    async def get_event(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}"""
        room_id = check_room_id(request.path_params["room_id"])
        event_id = check_event_id(request.path_params["event_id"])
        return ok(await timeline.get_event(requester, room_id, event_id))

    @authed(auth)
    async def get_state(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/state"""
        room_id = check_room_id(request.path_params["room_id"])
        state = await timeline.state(requester, room_id)
        return ok(await serializer.serialize(state, requester, bundle=False))

    @authed(auth)
    async def get_state_event(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
        room_id = check_room_id(request.path_params["room_id"])
        event_type = request.path_params["event_type"]
        state_key = request.path_params.get("state_key", "")
        found = [
            e for e in await timeline.state(requester, room_id) if e.type == event_type and e.state_key == state_key
        ]
        if not found:
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        if request.query_params.get("format") == "event":
            return ok((await serializer.serialize(found, requester, bundle=False))[0])
        ev = (await serializer.serialize(found, requester, bundle=False))[0]
        return ok(ev["content"])

    @authed(auth)
    async def members(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/members"""
        room_id = check_room_id(request.path_params["room_id"])
        at = request.query_params.get("at")
        evs = await timeline.members(requester, room_id, parse_token(at, "at") if at else None)
        want = request.query_params.get("membership")
        not_want = request.query_params.get("not_membership")
        evs = [
            e
            for e in evs
            if (want is None or e.content.get("membership") == want)
            and (not_want is None or e.content.get("membership") != not_want)
        ]
        return ok({"chunk": await serializer.serialize(evs, requester, bundle=False)})

    @authed(auth)
    async def joined_members(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/joined_members"""
        room_id = check_room_id(request.path_params["room_id"])
        return ok({"joined": await timeline.joined_members(requester, room_id)})

    @authed(auth)
    async def messages(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/messages"""
        room_id = check_room_id(request.path_params["room_id"])
        q = request.query_params
        direction = q.get("dir", "b")
        if direction not in ("b", "f"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be b or f")
        flt = room_event_filter_param(q.get("filter"))
        limit = query_int(request, "limit", 10, 0, 1000)
        page = await timeline.messages(
            requester,
            room_id,
            from_pos=parse_token(q["from"], "from") if q.get("from") else None,
            to_pos=parse_token(q["to"], "to") if q.get("to") else None,
            backwards=direction == "b",
            limit=flt.limit or limit if "limit" not in q else limit,
            predicate=flt.predicate,
            lazy_members=flt.lazy_load_members,
        )
        body: dict[str, Any] = {"chunk": page.chunk, "start": page.start, "state": page.state}
        if page.end is not None:
            body["end"] = page.end
        return ok(body)

    @authed(auth)
    async def context(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}"""
        room_id = check_room_id(request.path_params["room_id"])
        event_id = check_event_id(request.path_params["event_id"])
        flt = room_event_filter_param(request.query_params.get("filter"))
        limit = query_int(request, "limit", 10, 0, 100)
        return ok(await timeline.context(requester, room_id, event_id, limit, flt.predicate, flt.lazy_load_members))

    return [
        *client_routes("/rooms/{room_id}/send/{event_type}/{txn_id}", send, ["PUT"]),
        *client_routes("/rooms/{room_id}/state/{event_type}", put_state, ["PUT"]),
        *client_routes("/rooms/{room_id}/state/{event_type}/{state_key:path}", put_state, ["PUT"]),
        *client_routes("/rooms/{room_id}/state", get_state, ["GET"]),
        *client_routes("/rooms/{room_id}/state/{event_type}", get_state_event, ["GET"]),
        *client_routes("/rooms/{room_id}/state/{event_type}/{state_key:path}", get_state_event, ["GET"]),
        *client_routes("/rooms/{room_id}/redact/{event_id}/{txn_id}", redact, ["PUT"]),
        *client_routes("/rooms/{room_id}/event/{event_id}", get_event, ["GET"]),
        *client_routes("/rooms/{room_id}/members", members, ["GET"]),
        *client_routes("/rooms/{room_id}/joined_members", joined_members, ["GET"]),
        *client_routes("/rooms/{room_id}/messages", messages, ["GET"]),
        *client_routes("/rooms/{room_id}/context/{event_id}", context, ["GET"]),
    ]
