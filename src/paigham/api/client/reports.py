"""Reporting content: an event, a room, a user (spec "Reporting content"; services/reports.py)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_ip, client_routes, ok, typed_body
from paigham.requester import Requester
from paigham.services.admin import Actor
from paigham.services.reports import ReportService


class EventReportBody(msgspec.Struct):
    reason: str | None = None
    score: int | None = None


class ReportBody(msgspec.Struct):
    reason: str


def routes(auth: Authenticator, reports: ReportService) -> list[Route]:
    @authed(auth)
    async def report_event(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}"""
        body = await typed_body(request, EventReportBody, allow_empty=True)
        p = request.path_params
        await reports.report_event(_actor(request, requester), p["room_id"], p["event_id"], body.reason, body.score)
        return ok()

    @authed(auth)
    async def report_room(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/report"""
        body = await typed_body(request, ReportBody)
        await reports.report_room(_actor(request, requester), request.path_params["room_id"], body.reason)
        return ok()

    @authed(auth)
    async def report_user(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/users/{userId}/report"""
        body = await typed_body(request, ReportBody)
        await reports.report_user(_actor(request, requester), request.path_params["user_id"], body.reason)
        return ok()

    return [
        *client_routes("/rooms/{room_id}/report/{event_id}", report_event, ["POST"]),
        *client_routes("/rooms/{room_id}/report", report_room, ["POST"], versions=("v3",)),
        *client_routes("/users/{user_id}/report", report_user, ["POST"], versions=("v3",)),
    ]


def _actor(request: Request, requester: Requester) -> Actor:
    return Actor(requester.user_id, client_ip(request), requester.device_id)
