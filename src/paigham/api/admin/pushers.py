"""A user's pushers in the admin API: Synapse's list (GET /_synapse/admin/v1/users/{userId}/pushers,
with each pusher's ID and delivery state added) and Paigham's delete of one pusher (audited)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import admin_only
from paigham.api.http import Authenticator, ok
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.admin import Actor
from paigham.services.pushers import PusherService

SYNAPSE_V1 = "/_synapse/admin/v1"
BASE = "/_paigham/admin/v1"
MAX_PUSHER_ID = 2**63 - 1


def routes(auth: Authenticator, pushers: PusherService) -> list[Route]:
    @admin_only(auth)
    async def list_pushers(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v1/users/{userId}/pushers"""
        found = await pushers.admin_list(request.path_params["user_id"])
        return ok({"pushers": found, "total": len(found)})

    @admin_only(auth)
    async def delete_pusher(request: Request, _requester: Requester, actor: Actor) -> Response:
        """DELETE /_paigham/admin/v1/users/{userId}/pushers/{pusherId}"""
        await pushers.admin_delete(request.path_params["user_id"], _pusher_id(request), actor)
        return ok()

    return [
        Route(f"{SYNAPSE_V1}/users/{{user_id}}/pushers", list_pushers, methods=["GET"]),
        Route(f"{BASE}/users/{{user_id}}/pushers/{{pusher_id}}", delete_pusher, methods=["DELETE"]),
    ]


def _pusher_id(request: Request) -> int:
    raw = request.path_params["pusher_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or int(raw) > MAX_PUSHER_ID:
        raise MatrixError(400, Codes.INVALID_PARAM, "The pusher ID must be a non-negative integer")
    return int(raw)
