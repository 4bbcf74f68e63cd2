"""Client config (account data, global and per room) and room tags."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, json_body, ok, require_self
from paigham.ids import check_room_id
from paigham.requester import Requester
from paigham.services.ephemeral import EphemeralService
from paigham.services.tags import TagService

USER = "/user/{user_id}"
ROOM = "/user/{user_id}/rooms/{room_id}"


def routes(auth: Authenticator, account_data: EphemeralService, tags: TagService) -> list[Route]:
    @authed(auth)
    async def put_global(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/user/{userId}/account_data/{type}"""
        require_self(requester, request.path_params["user_id"])
        content = await json_body(request)
        await account_data.account_data(requester.user_id, "", request.path_params["type"], content)
        return ok()

    @authed(auth)
    async def get_global(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/user/{userId}/account_data/{type}"""
        require_self(requester, request.path_params["user_id"])
        return ok(await account_data.get_account_data(requester.user_id, "", request.path_params["type"]))

    @authed(auth)
    async def put_room(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
        require_self(requester, request.path_params["user_id"])
        room_id = check_room_id(request.path_params["room_id"])
        content = await json_body(request)
        await account_data.account_data(requester.user_id, room_id, request.path_params["type"], content)
        return ok()

    @authed(auth)
    async def get_room(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
        require_self(requester, request.path_params["user_id"])
        room_id = check_room_id(request.path_params["room_id"])
        return ok(await account_data.get_account_data(requester.user_id, room_id, request.path_params["type"]))

    @authed(auth)
    async def get_tags(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags"""
        require_self(requester, request.path_params["user_id"])
        return ok({"tags": await tags.tags(requester.user_id, check_room_id(request.path_params["room_id"]))})

    @authed(auth)
    async def put_tag(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
        require_self(requester, request.path_params["user_id"])
        room_id = check_room_id(request.path_params["room_id"])
        content = await json_body(request)
        await tags.put(requester.user_id, room_id, request.path_params["tag"], content)
        return ok()

    @authed(auth)
    async def delete_tag(request: Request, requester: Requester) -> Response:
        """DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
        require_self(requester, request.path_params["user_id"])
        room_id = check_room_id(request.path_params["room_id"])
        await tags.delete(requester.user_id, room_id, request.path_params["tag"])
        return ok()

    return [
        *client_routes(USER + "/account_data/{type}", put_global, ["PUT"]),
        *client_routes(USER + "/account_data/{type}", get_global, ["GET"]),
        *client_routes(ROOM + "/account_data/{type}", put_room, ["PUT"]),
        *client_routes(ROOM + "/account_data/{type}", get_room, ["GET"]),
        *client_routes(ROOM + "/tags", get_tags, ["GET"]),
        *client_routes(ROOM + "/tags/{tag}", put_tag, ["PUT"]),
        *client_routes(ROOM + "/tags/{tag}", delete_tag, ["DELETE"]),
    ]
