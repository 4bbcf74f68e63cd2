"""Admin media API, a Synapse-compatible subset: quarantine, delete, list a user's media, purge old media."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, ok, query_int
from paigham.errors import Codes, MatrixError
from paigham.ids import parse_user_id
from paigham.media.service import MediaService
from paigham.requester import Requester
from paigham.services.auth import AuthService
from paigham.storage.media import MediaRow

ADMIN = "/_synapse/admin/v1"


def media_info(row: MediaRow) -> dict[str, Any]:
    """One media in the shape of Synapse's admin API."""
    return {
        "media_id": row.media_id,
        "media_type": row.content_type,
        "media_length": row.length,
        "upload_name": row.upload_name,
        "created_ts": row.created_ts,
        "last_access_ts": row.last_access_ts,
        "quarantined_by": row.quarantined_by,
        "safe_from_quarantine": False,
        "user_id": row.user_id,
        "state": row.state,
        "sha256": row.sha256,
    }


def routes(auth: AuthService, media: MediaService) -> list[Route]:
    async def admin(request: Request) -> Requester:
        requester = await auth.authenticate(bearer(request))
        if not requester.is_admin:
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a server admin")
        return requester

    async def quarantine(request: Request) -> Response:
        """POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}"""
        requester = await admin(request)
        await media.quarantine(request.path_params["server_name"], request.path_params["media_id"], requester.user_id)
        return ok({})

    async def unquarantine(request: Request) -> Response:
        """POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}"""
        await admin(request)
        await media.quarantine(request.path_params["server_name"], request.path_params["media_id"], None)
        return ok({})

    async def info(request: Request) -> Response:
        """GET /_synapse/admin/v1/media/{serverName}/{mediaId}"""
        await admin(request)
        row = await media.row(request.path_params["server_name"], request.path_params["media_id"])
        return ok({"media_info": media_info(row)})

    async def delete_one(request: Request) -> Response:
        """DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}"""
        await admin(request)
        row = await media.row(request.path_params["server_name"], request.path_params["media_id"])
        await media.delete(row.media_id)
        return ok({"deleted_media": [row.media_id], "total": 1})

    async def delete_old(request: Request) -> Response:
        """POST /_synapse/admin/v1/media/delete?before_ts=…"""
        await admin(request)
        raw = request.query_params.get("before_ts")
        if raw is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "before_ts is required (milliseconds since the epoch)")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise MatrixError(400, Codes.INVALID_PARAM, "before_ts must be a timestamp in milliseconds")
        deleted = await media.purge(int(raw))
        return ok({"deleted_media": deleted, "total": len(deleted)})

    async def user_media(request: Request) -> Response:
        """GET /_synapse/admin/v1/users/{userId}/media"""
        await admin(request)
        user_id = request.path_params["user_id"]
        parse_user_id(user_id)
        start = query_int(request, "from", 0, 0, 2**31)
        limit = query_int(request, "limit", 100, 1, 1000)
        rows, total = await media.store.list_user(user_id, start, limit)
        body: dict[str, Any] = {"media": [media_info(r) for r in rows], "total": total}
        if start + len(rows) < total:
            body["next_token"] = start + len(rows)
        return ok(body)

    async def delete_user_media(request: Request) -> Response:
        """DELETE /_synapse/admin/v1/users/{userId}/media"""
        await admin(request)
        user_id = request.path_params["user_id"]
        parse_user_id(user_id)
        deleted = await media.purge(2**62, user_id)
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
