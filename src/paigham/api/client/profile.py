"""Profiles and the user directory search."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, json_body, ok, typed_body
from paigham.errors import Codes, MatrixError
from paigham.ids import is_valid_user_id
from paigham.requester import Requester
from paigham.services.profile import ProfileService


class SearchBody(msgspec.Struct):
    search_term: str
    limit: int = 10


def routes(auth: Authenticator, profiles: ProfileService) -> list[Route]:
    async def get_profile(request: Request) -> Response:
        """GET /_matrix/client/v3/profile/{userId}"""
        user_id = request.path_params["user_id"]
        if not is_valid_user_id(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user ID")
        return ok(await profiles.get(user_id))

    async def get_field(request: Request) -> Response:
        """GET /_matrix/client/v3/profile/{userId}/{keyName}"""
        user_id = request.path_params["user_id"]
        key = request.path_params["key"]
        profile = await profiles.get(user_id)
        if key not in profile:
            raise MatrixError(404, Codes.NOT_FOUND, f"Profile field {key!r} is not set"[:200])
        return ok({key: profile[key]})

    @authed(auth)
    async def put_field(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/profile/{userId}/{keyName}"""
        user_id = request.path_params["user_id"]
        _may_change(requester, user_id)
        key = request.path_params["key"]
        body = await json_body(request)
        if key not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing {key!r} in body"[:200])
        await profiles.set(user_id, key, body[key])
        return ok()

    @authed(auth)
    async def delete_field(request: Request, requester: Requester) -> Response:
        """DELETE /_matrix/client/v3/profile/{userId}/{keyName}"""
        user_id = request.path_params["user_id"]
        _may_change(requester, user_id)
        await profiles.set(user_id, request.path_params["key"], None)
        return ok()

    @authed(auth)
    async def search(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/user_directory/search"""
        body = await typed_body(request, SearchBody)
        if len(body.search_term) > 256:
            raise MatrixError(400, Codes.INVALID_PARAM, "search_term is too long")
        limit = max(1, min(body.limit, 50))
        results, limited = await profiles.search(requester.user_id, body.search_term, limit)
        return ok({"results": results, "limited": limited})

    return [
        *client_routes("/profile/{user_id}", get_profile, ["GET"]),
        *client_routes("/profile/{user_id}/{key}", get_field, ["GET"]),
        *client_routes("/profile/{user_id}/{key}", put_field, ["PUT"]),
        *client_routes("/profile/{user_id}/{key}", delete_field, ["DELETE"]),
        *client_routes("/user_directory/search", search, ["POST"]),
    ]


def _may_change(requester: Requester, user_id: str) -> None:
    if user_id != requester.user_id and not requester.is_admin:
        raise MatrixError(403, Codes.FORBIDDEN, "You cannot change another user's profile")
