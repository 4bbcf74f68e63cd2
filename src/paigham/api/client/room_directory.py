"""Room aliases, the public room directory and room visibility."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, client_routes, ok, query_int, typed_body
from paigham.config import Config
from paigham.domain.power_levels import event_level, user_level
from paigham.domain.room_versions import get_room_version
from paigham.errors import Codes, MatrixError
from paigham.ids import check_alias, check_room_id
from paigham.services import room_summary
from paigham.services.auth import AuthService
from paigham.storage.aliases import AliasStore
from paigham.storage.events import EventStore


class AliasBody(msgspec.Struct):
    room_id: str


class VisibilityBody(msgspec.Struct):
    visibility: str


class PublicRoomsBody(msgspec.Struct):
    limit: int | None = None
    since: str | None = None
    filter: dict[str, Any] | None = None
    include_all_networks: bool = False
    third_party_instance_id: str | None = None


def routes(config: Config, auth: AuthService, events: EventStore, aliases: AliasStore) -> list[Route]:
    async def can_edit(user_id: str, room_id: str, event_type: str) -> bool:
        room = await events.get_room(room_id)
        version = get_room_version(room.room_version) if room else None
        if room is None or version is None:
            return False
        state = {
            (e.type, e.state_key): e
            for e in await events.current_state(room_id, ["m.room.create", "m.room.power_levels"])
        }
        pl = state.get(("m.room.power_levels", ""))
        create = state[("m.room.create", "")]
        pl_content = pl.content if pl else None
        return user_level(user_id, pl_content, create.pdu, version) >= event_level(event_type, True, pl_content)

    async def get_alias(request: Request) -> Response:
        """GET /_matrix/client/v3/directory/room/{roomAlias}"""
        alias = request.path_params["alias"]
        check_alias(alias)
        room_id = await aliases.resolve(alias)
        if room_id is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found")
        return ok({"room_id": room_id, "servers": [config.server_name]})

    async def put_alias(request: Request) -> Response:
        """PUT /_matrix/client/v3/directory/room/{roomAlias}"""
        requester = await auth.authenticate(bearer(request))
        alias = request.path_params["alias"]
        _, server = check_alias(alias)
        if server != config.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Aliases must be on this server")
        body = await typed_body(request, AliasBody)
        room_id = check_room_id(body.room_id)
        m = await events.membership(requester.user_id, room_id)
        if m is None or m[0] != "join":
            raise MatrixError(403, Codes.FORBIDDEN, "You must be joined to the room to alias it")
        if not await aliases.create(alias, room_id, requester.user_id):
            raise MatrixError(409, Codes.UNKNOWN, "Room alias already exists")
        return ok()

    async def delete_alias(request: Request) -> Response:
        """DELETE /_matrix/client/v3/directory/room/{roomAlias}"""
        requester = await auth.authenticate(bearer(request))
        alias = request.path_params["alias"]
        check_alias(alias)
        found = await aliases.get(alias)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found")
        room_id, creator = found
        if (
            creator != requester.user_id
            and not requester.is_admin
            and not await can_edit(requester.user_id, room_id, "m.room.canonical_alias")
        ):
            raise MatrixError(403, Codes.FORBIDDEN, "You may not delete this alias")
        await aliases.delete(alias)
        return ok()

    async def room_aliases(request: Request) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/aliases"""
        requester = await auth.authenticate(bearer(request))
        room_id = check_room_id(request.path_params["room_id"])
        m = await events.membership(requester.user_id, room_id)
        if m is None or m[0] != "join":
            raise MatrixError(403, Codes.FORBIDDEN, "You are not joined to this room")
        return ok({"aliases": await aliases.for_room(room_id)})

    async def get_visibility(request: Request) -> Response:
        """GET /_matrix/client/v3/directory/list/room/{roomId}"""
        room = await events.get_room(check_room_id(request.path_params["room_id"]))
        if room is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        return ok({"visibility": "public" if room.is_public else "private"})

    async def put_visibility(request: Request) -> Response:
        """PUT /_matrix/client/v3/directory/list/room/{roomId}"""
        requester = await auth.authenticate(bearer(request))
        room_id = check_room_id(request.path_params["room_id"])
        body = await typed_body(request, VisibilityBody)
        if body.visibility not in ("public", "private"):
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be public or private")
        if await events.get_room(room_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if not requester.is_admin and not await can_edit(requester.user_id, room_id, "m.room.canonical_alias"):
            raise MatrixError(403, Codes.FORBIDDEN, "You may not change this room's visibility")
        await events.set_room_public(room_id, body.visibility == "public")
        return ok()

    async def summarise(room_id: str) -> dict[str, Any]:
        return await room_summary.summarise(events, room_id)

    async def public_rooms(limit: int, since: str | None, term: str | None) -> dict[str, Any]:
        entries = [await summarise(r) for r in await events.public_rooms()]
        if term:
            t = term.lower()
            entries = [
                e
                for e in entries
                if t in (e.get("name") or "").lower()
                or t in (e.get("topic") or "").lower()
                or t in (e.get("canonical_alias") or "").lower()
            ]
        entries.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
        if since and not (since.isascii() and since.isdigit() and len(since) <= 9):  # our tokens are offsets
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid since token")
        start = int(since) if since else 0
        chunk = entries[start : start + limit]
        out: dict[str, Any] = {"chunk": chunk, "total_room_count_estimate": len(entries)}
        if start + limit < len(entries):
            out["next_batch"] = str(start + limit)
        if start > 0:
            out["prev_batch"] = str(max(0, start - limit))
        return out

    async def get_public_rooms(request: Request) -> Response:
        """GET /_matrix/client/v3/publicRooms"""
        limit = query_int(request, "limit", 100, 1, 500)
        return ok(await public_rooms(limit, request.query_params.get("since"), None))

    async def post_public_rooms(request: Request) -> Response:
        """POST /_matrix/client/v3/publicRooms"""
        await auth.authenticate(bearer(request))
        body = await typed_body(request, PublicRoomsBody, allow_empty=True)
        term = (body.filter or {}).get("generic_search_term")
        limit = max(1, min(body.limit or 100, 500))
        return ok(await public_rooms(limit, body.since, term if isinstance(term, str) else None))

    return [
        *client_routes("/directory/room/{alias:path}", get_alias, ["GET"]),
        *client_routes("/directory/room/{alias:path}", put_alias, ["PUT"]),
        *client_routes("/directory/room/{alias:path}", delete_alias, ["DELETE"]),
        *client_routes("/rooms/{room_id}/aliases", room_aliases, ["GET"]),
        *client_routes("/directory/list/room/{room_id}", get_visibility, ["GET"]),
        *client_routes("/directory/list/room/{room_id}", put_visibility, ["PUT"]),
        *client_routes("/publicRooms", get_public_rooms, ["GET"]),
        *client_routes("/publicRooms", post_public_rooms, ["POST"]),
    ]
