"""Server-side key backup: /room_keys/version and /room_keys/keys at all three levels."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, json_body, ok
from paigham.domain.e2e_keys import BackupKey, parse_backup_key
from paigham.e2ee.backup import BackupService, parse_rooms, parse_sessions
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.types import JsonDict


def routes(auth: Authenticator, backups: BackupService) -> list[Route]:
    @authed(auth)
    async def create_version(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/room_keys/version"""
        return ok({"version": await backups.create(requester.user_id, await json_body(request))})

    @authed(auth)
    async def current_version(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/room_keys/version"""
        return ok((await backups.get(requester.user_id, None)).to_json())

    @authed(auth)
    async def get_version(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/room_keys/version/{version}"""
        return ok((await backups.get(requester.user_id, request.path_params["version"])).to_json())

    @authed(auth)
    async def update_version(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/room_keys/version/{version}"""
        await backups.update(requester.user_id, request.path_params["version"], await json_body(request))
        return ok({})

    @authed(auth)
    async def delete_version(request: Request, requester: Requester) -> Response:
        """DELETE /_matrix/client/v3/room_keys/version/{version}"""
        await backups.delete(requester.user_id, request.path_params["version"])
        return ok({})

    @authed(auth)
    async def put_keys(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/room_keys/keys (also …/keys/{roomId} and …/keys/{roomId}/{sessionId})"""
        room_id, session_id = request.path_params.get("room_id"), request.path_params.get("session_id")
        body = await json_body(request)
        if room_id is None:
            rooms = parse_rooms(body)
        elif session_id is None:
            rooms = {room_id: parse_sessions(body, room_id)}
        else:
            rooms = {room_id: {session_id: parse_backup_key(body, "key")}}
        return ok(await backups.put_keys(requester.user_id, request.query_params.get("version"), rooms))

    @authed(auth)
    async def delete_keys(request: Request, requester: Requester) -> Response:
        """DELETE /_matrix/client/v3/room_keys/keys (also …/keys/{roomId} and …/keys/{roomId}/{sessionId})"""
        return ok(
            await backups.delete_keys(
                requester.user_id,
                request.query_params.get("version"),
                request.path_params.get("room_id"),
                request.path_params.get("session_id"),
            )
        )

    @authed(auth)
    async def get_keys(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/room_keys/keys (also …/keys/{roomId} and …/keys/{roomId}/{sessionId})"""
        room_id, session_id = request.path_params.get("room_id"), request.path_params.get("session_id")
        found = await backups.get_keys(requester.user_id, request.query_params.get("version"), room_id, session_id)
        if room_id is None:
            return ok(_keys_json(found))
        sessions = found.get(room_id, {})
        if session_id is None:
            return ok({"sessions": {s: k.to_json() for s, k in sessions.items()}})
        if session_id not in sessions:
            raise MatrixError(404, Codes.NOT_FOUND, "No key for this session in the backup")
        return ok(sessions[session_id].to_json())

    levels = ("/room_keys/keys", "/room_keys/keys/{room_id}", "/room_keys/keys/{room_id}/{session_id}")
    return [
        *client_routes("/room_keys/version", create_version, ["POST"]),
        *client_routes("/room_keys/version", current_version, ["GET"]),
        *client_routes("/room_keys/version/{version}", get_version, ["GET"]),
        *client_routes("/room_keys/version/{version}", update_version, ["PUT"]),
        *client_routes("/room_keys/version/{version}", delete_version, ["DELETE"]),
        *(r for path in levels for r in client_routes(path, get_keys, ["GET"])),
        *(r for path in levels for r in client_routes(path, put_keys, ["PUT"])),
        *(r for path in levels for r in client_routes(path, delete_keys, ["DELETE"])),
    ]


def _keys_json(keys: Mapping[str, Mapping[str, BackupKey]]) -> JsonDict:
    """Every room's backed-up sessions, as GET /room_keys/keys answers them."""
    return {
        "rooms": {room: {"sessions": {s: k.to_json() for s, k in sessions.items()}} for room, sessions in keys.items()}
    }
