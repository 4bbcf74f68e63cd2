"""Delayed events (MSC4140, unstable prefix `org.matrix.msc4140`): the list, the actions, and the
newest MSC's scheduling endpoint. Scheduling through PUT /send and PUT /state with the
`org.matrix.msc4140.delay` query parameter — what matrix-js-sdk sends — is in room_events.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, bearer, json_body, ok
from paigham.errors import Codes, MatrixError
from paigham.ids import check_room_id
from paigham.requester import Requester
from paigham.services.delayed_events import DelayedEvents

PREFIX = "/_matrix/client/unstable/org.matrix.msc4140"
MAX_TYPE_LEN = 255


def _delay_id(request: Request) -> str:
    delay_id = request.path_params["delay_id"]
    if not delay_id or len(delay_id) > 64:
        raise MatrixError(404, Codes.NOT_FOUND, "No such delayed event")
    return str(delay_id)


def routes(auth: Authenticator, delayed: DelayedEvents) -> list[Route]:
    if not delayed.enabled:
        return []  # the paths are unknown (404 M_UNRECOGNIZED) and /versions does not list the flag

    @authed(auth)
    async def listing(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/unstable/org.matrix.msc4140/delayed_events"""
        q = request.query_params
        return ok(await delayed.listing(requester.user_id, q.get("status"), q.getlist("delay_id")))

    @authed(auth)
    async def one(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}"""
        return ok(await delayed.one(requester.user_id, _delay_id(request)))

    async def act(request: Request) -> Response:
        """POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}/{action}

        No access token needed (the delay_id is the capability: MSC4140 lets a client hand it to
        its SFU); with one, it must be the owner's."""
        token = bearer(request)
        user_id = (await auth.authenticate(token)).user_id if token else None
        await delayed.act(_delay_id(request), request.path_params["action"], user_id)
        return ok({})

    @authed(auth)
    async def act_in_body(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId} (the earlier
        form: `{"action": …}` in the body, signed in; Element Call's widget API and js-sdk's
        fallback still use it)."""
        action = (await json_body(request)).get("action")
        if not isinstance(action, str):
            raise MatrixError(400, Codes.MISSING_PARAM, "'action' is required")
        await delayed.act(_delay_id(request), action, requester.user_id)
        return ok({})

    @authed(auth)
    async def schedule(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/unstable/org.matrix.msc4140/rooms/{roomId}/delayed_event/{eventType}/{txnId}

        The newest MSC text: `{"delay", "state_key"?, "content"}` in the body."""
        room_id = check_room_id(request.path_params["room_id"])
        event_type = request.path_params["event_type"]
        if not event_type or len(event_type.encode()) > MAX_TYPE_LEN:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid event type")
        body = await json_body(request)
        delay, state_key, content = body.get("delay"), body.get("state_key"), body.get("content")
        if not isinstance(delay, int) or isinstance(delay, bool):
            raise MatrixError(400, Codes.BAD_JSON, "'delay' must be an integer number of milliseconds")
        if state_key is not None and (not isinstance(state_key, str) or len(state_key.encode()) > 255):
            raise MatrixError(400, Codes.BAD_JSON, "'state_key' must be a string of at most 255 bytes")
        if not isinstance(content, dict):
            raise MatrixError(400, Codes.BAD_JSON, "'content' must be an object")
        txn_id = request.path_params["txn_id"][:255]
        delay_id = await delayed.schedule(
            requester.user_id, requester.device_id, room_id, event_type, state_key, content, delay, txn_id
        )
        return ok({"delay_id": delay_id})

    return [
        Route(f"{PREFIX}/delayed_events", listing, methods=["GET"]),
        Route(f"{PREFIX}/delayed_events/{{delay_id}}", one, methods=["GET"]),
        Route(f"{PREFIX}/delayed_events/{{delay_id}}", act_in_body, methods=["POST"]),
        Route(f"{PREFIX}/delayed_events/{{delay_id}}/{{action}}", act, methods=["POST"]),
        Route(f"{PREFIX}/rooms/{{room_id}}/delayed_event/{{event_type}}/{{txn_id}}", schedule, methods=["PUT"]),
    ]
