"""Pushers and the notification list (spec "Push Notifications": POST /pushers/set, GET /pushers,
GET /notifications; services/pushers.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, json_body, ok, query_int
from paigham.requester import Requester
from paigham.services.pushers import NotificationService, PusherService

DEFAULT_NOTIFICATIONS = 50


def routes(auth: Authenticator, pushers: PusherService, notifications: NotificationService) -> list[Route]:
    @authed(auth)
    async def get_pushers(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/pushers"""
        return ok({"pushers": await pushers.pushers(requester.user_id)})

    @authed(auth)
    async def set_pusher(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/pushers/set"""
        await pushers.set_pusher(requester, await json_body(request))
        return ok()

    @authed(auth)
    async def get_notifications(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/notifications"""
        q = request.query_params
        limit = query_int(request, "limit", DEFAULT_NOTIFICATIONS, 1, NotificationService.MAX_LIMIT)
        return ok(await notifications.page(requester, q.get("from"), limit, q.get("only")))

    return [
        *client_routes("/pushers", get_pushers, ["GET"]),
        *client_routes("/pushers/set", set_pusher, ["POST"]),
        *client_routes("/notifications", get_notifications, ["GET"]),
    ]
