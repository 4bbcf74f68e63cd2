"""Admin media API, a Synapse-compatible subset: quarantine, delete, list a user's media, purge old media."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import admin_only
from paigham.api.http import Authenticator, ok, query_int
from paigham.errors import Codes, MatrixError
from paigham.ids import parse_user_id
from paigham.media.service import MediaService, media_info
from paigham.requester import Requester
from paigham.services.admin import Actor
from paigham.types import JsonDict

ADMIN = "/_synapse/admin/v1"


def _before_ts(request: Request) -> int:
    raw = request.query_params.get("before_ts")
    if raw is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "before_ts is required (milliseconds since the epoch)")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise MatrixError(400, Codes.INVALID_PARAM, "before_ts must be a timestamp in milliseconds")
    return int(raw)


def _user_id(request: Request) -> str:
    user_id: str = request.path_params["user_id"]
    parse_user_id(user_id)
    return user_id


def routes(auth: Authenticator, media: MediaService) -> list[Route]:
    @admin_only(auth)
    async def quarantine(request: Request, _requester: Requester, actor: Actor) -> Response:
        """POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}"""
        await media.quarantine(request.path_params["server_name"], request.path_params["media_id"], actor)
        return ok({})

    @admin_only(auth)
    async def unquarantine(request: Request, _requester: Requester, actor: Actor) -> Response:
        """POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}"""
        await media.quarantine(request.path_params["server_name"], request.path_params["media_id"], actor, undo=True)
        return ok({})

    @admin_only(auth)
    async def info(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v1/media/{serverName}/{mediaId}"""
        row = await media.row(request.path_params["server_name"], request.path_params["media_id"])
        return ok({"media_info": media_info(row)})

    @admin_only(auth)
    async def delete_one(request: Request, _requester: Requester, actor: Actor) -> Response:
        """DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}"""
        media_id = await media.remove(request.path_params["server_name"], request.path_params["media_id"], actor)
        return ok({"deleted_media": [media_id], "total": 1})

    @admin_only(auth)
    async def delete_old(request: Request, _requester: Requester, actor: Actor) -> Response:
        """POST /_synapse/admin/v1/media/delete?before_ts=…"""
        deleted = await media.purge_as(actor, _before_ts(request))
        return ok({"deleted_media": deleted, "total": len(deleted)})

    @admin_only(auth)
    async def user_media(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v1/users/{userId}/media"""
        user_id = _user_id(request)
        start = query_int(request, "from", 0, 0, 2**31)
        limit = query_int(request, "limit", 100, 1, 1000)
        page = await media.user_media(user_id, start, limit)
        body: JsonDict = {"media": [media_info(r) for r in page.media], "total": page.total}
        if start + len(page.media) < page.total:
            body["next_token"] = start + len(page.media)
        return ok(body)

    @admin_only(auth)
    async def delete_user_media(request: Request, _requester: Requester, actor: Actor) -> Response:
        """DELETE /_synapse/admin/v1/users/{userId}/media"""
        deleted = await media.purge_as(actor, None, _user_id(request))
        return ok({"deleted_media": deleted, "total": len(deleted)})

    return [
        Route(f"{ADMIN}/media/quarantine/{{server_name}}/{{media_id}}", quarantine, methods=["POST"]),
        Route(f"{ADMIN}/media/unquarantine/{{server_name}}/{{media_id}}", unquarantine, methods=["POST"]),
        Route(f"{ADMIN}/media/delete", delete_old, methods=["POST"]),
        Route(f"{ADMIN}/media/{{server_name}}/{{media_id}}", info, methods=["GET"]),
        Route(f"{ADMIN}/media/{{server_name}}/{{media_id}}", delete_one, methods=["DELETE"]),
        Route(f"{ADMIN}/users/{{user_id}}/media", user_media, methods=["GET"]),
        Route(f"{ADMIN}/users/{{user_id}}/media", delete_user_media, methods=["DELETE"]),
    ]
