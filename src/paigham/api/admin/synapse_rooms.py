"""Synapse-compatible admin API for rooms (list, details, delete) and registration tokens."""

from __future__ import annotations

import secrets
import string
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import require_admin
from paigham.api.http import ok, query_bool, query_int, typed_body
from paigham.clock import now_ms
from paigham.errors import Codes, MatrixError
from paigham.ids import check_room_id
from paigham.services.admin import AdminService
from paigham.services.auth import AuthService
from paigham.storage.admin import AdminStore, RoomSummary

V1 = "/_synapse/admin/v1"
ROOM_ORDERS = (
    "name",
    "canonical_alias",
    "joined_members",
    "joined_local_members",
    "version",
    "creator",
    "encryption",
    "federatable",
    "public",
    "join_rules",
    "guest_access",
    "history_visibility",
    "state_events",
    "room_type",
    "created",
)
TOKEN_CHARS = string.ascii_letters + string.digits + "._~-"


class DeleteRoomBody(msgspec.Struct):
    new_room_user_id: str | None = None
    room_name: str | None = None
    message: str | None = None
    block: bool = False
    purge: bool = True
    force_purge: bool = False


class NewTokenBody(msgspec.Struct):
    token: str | None = None
    uses_allowed: int | None = None
    expiry_time: int | None = None
    length: int = 16


class UpdateTokenBody(msgspec.Struct):
    uses_allowed: int | msgspec.UnsetType | None = msgspec.UNSET
    expiry_time: int | msgspec.UnsetType | None = msgspec.UNSET


def _sort_key(order: str, s: RoomSummary, server_name: str) -> tuple[Any, ...]:
    if order == "created":
        return (s.created_ts, s.room_id)
    value = s.to_synapse(server_name)[order]
    return (value is None, value if not isinstance(value, str) else value.lower(), s.room_id)


def token_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("token", "uses_allowed", "pending", "completed", "expiry_time")}


def _check_uses(v: int | None) -> None:
    if v is not None and not 0 <= v <= 2**31:
        raise MatrixError(400, Codes.INVALID_PARAM, "uses_allowed must be a non-negative integer or null")


def _check_expiry(v: int | None) -> None:
    if v is not None and (v < now_ms() or v > 2**53):
        raise MatrixError(400, Codes.INVALID_PARAM, "expiry_time must be a time in the future (ms) or null")


def routes(auth: AuthService, admin: AdminService, store: AdminStore, server_name: str) -> list[Route]:
    async def list_rooms(request: Request) -> Response:
        """GET /_synapse/admin/v1/rooms"""
        await require_admin(auth, request)
        offset = query_int(request, "from", 0, 0, 2**31)
        limit = query_int(request, "limit", 100, 1, 1000)
        order = request.query_params.get("order_by", "name")
        if order not in ROOM_ORDERS:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown order_by {order[:50]!r}")
        direction = request.query_params.get("dir", "f")
        if direction not in ("f", "b"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be f or b")
        term = request.query_params.get("search_term", "")[:255].lower()
        summaries = await store.room_summaries()
        if term:
            summaries = [
                s
                for s in summaries
                if term in s.room_id.lower()
                or term in str(s.state.get("m.room.name", {}).get("name", "")).lower()
                or term in str(s.state.get("m.room.canonical_alias", {}).get("alias", "")).lower()
            ]
        summaries.sort(key=lambda s: _sort_key(order, s, server_name), reverse=direction == "b")
        page = summaries[offset : offset + limit]
        body: dict[str, Any] = {
            "rooms": [s.to_synapse(server_name) for s in page],
            "offset": offset,
            "total_rooms": len(summaries),
        }
        if offset + len(page) < len(summaries):
            body["next_batch"] = offset + len(page)
        if offset > 0:
            body["prev_batch"] = max(0, offset - limit)
        return ok(body)

    async def get_room(request: Request) -> Response:
        """GET /_synapse/admin/v1/rooms/{roomId}"""
        await require_admin(auth, request)
        room_id = check_room_id(request.path_params["room_id"])
        found = await store.room_summaries([room_id])
        if not found:
            raise MatrixError(404, Codes.NOT_FOUND, "Room not found")
        out = found[0].to_synapse(server_name)
        out["blocked"] = await store.is_blocked(room_id)
        return ok(out)

    async def delete_room(request: Request) -> Response:
        """DELETE /_synapse/admin/v1/rooms/{roomId}"""
        _, actor = await require_admin(auth, request)
        room_id = check_room_id(request.path_params["room_id"])
        body = await typed_body(request, DeleteRoomBody, allow_empty=True)
        if body.new_room_user_id is not None:
            raise MatrixError(
                400,
                Codes.INVALID_PARAM,
                "new_room_user_id is not supported: members are removed and no replacement room is created",
            )
        return ok(await admin.delete_room(room_id, actor, block=body.block, purge=body.purge or body.force_purge))

    async def list_tokens(request: Request) -> Response:
        """GET /_synapse/admin/v1/registration_tokens"""
        await require_admin(auth, request)
        rows = await auth.store.list_registration_tokens()
        if "valid" in request.query_params:
            want = query_bool(request, "valid")
            now = now_ms()

            def valid(r: dict[str, Any]) -> bool:
                return (r["expiry_time"] is None or r["expiry_time"] >= now) and (
                    r["uses_allowed"] is None or r["pending"] + r["completed"] < r["uses_allowed"]
                )

            rows = [r for r in rows if valid(r) == want]
        return ok({"registration_tokens": [token_json(r) for r in rows]})

    async def get_token(request: Request) -> Response:
        """GET /_synapse/admin/v1/registration_tokens/{token}"""
        await require_admin(auth, request)
        row = await store.get_token(request.path_params["token"])
        if row is None:
            raise MatrixError(404, Codes.NOT_FOUND, "No such registration token")
        return ok(token_json(row))

    async def new_token(request: Request) -> Response:
        """POST /_synapse/admin/v1/registration_tokens/new"""
        _, actor = await require_admin(auth, request)
        body = await typed_body(request, NewTokenBody, allow_empty=True)
        _check_uses(body.uses_allowed)
        _check_expiry(body.expiry_time)
        if body.token is None and not 1 <= body.length <= 64:
            raise MatrixError(400, Codes.INVALID_PARAM, "length must be between 1 and 64")
        token = (
            body.token if body.token is not None else "".join(secrets.choice(TOKEN_CHARS) for _ in range(body.length))
        )
        if await store.get_token(token) is not None:
            raise MatrixError(400, Codes.INVALID_PARAM, "This token already exists")
        await auth.create_registration_token(body.uses_allowed, None, token)
        if body.expiry_time is not None:
            await store.update_token(token, {"expiry_time": body.expiry_time})
        await admin.audit.record(
            "admin.registration_token_created",
            actor.user_id,
            token[:4] + "…",
            actor.ip,
            actor.device,
            {"uses_allowed": body.uses_allowed, "expiry_time": body.expiry_time},
        )
        row = await store.get_token(token)
        assert row is not None
        return ok(token_json(row))

    async def update_token(request: Request) -> Response:
        """PUT /_synapse/admin/v1/registration_tokens/{token}"""
        _, actor = await require_admin(auth, request)
        body = await typed_body(request, UpdateTokenBody, allow_empty=True)
        values: dict[str, Any] = {}
        if body.uses_allowed is not msgspec.UNSET:
            _check_uses(body.uses_allowed)
            values["uses_allowed"] = body.uses_allowed
        if body.expiry_time is not msgspec.UNSET:
            _check_expiry(body.expiry_time)
            values["expiry_time"] = body.expiry_time
        token = request.path_params["token"]
        if await store.get_token(token) is None or (values and not await store.update_token(token, values)):
            raise MatrixError(404, Codes.NOT_FOUND, "No such registration token")
        await admin.audit.record(
            "admin.registration_token_updated", actor.user_id, token[:4] + "…", actor.ip, actor.device, values
        )
        row = await store.get_token(token)
        assert row is not None
        return ok(token_json(row))

    async def delete_token(request: Request) -> Response:
        """DELETE /_synapse/admin/v1/registration_tokens/{token}"""
        _, actor = await require_admin(auth, request)
        token = request.path_params["token"]
        if not await store.delete_token(token):
            raise MatrixError(404, Codes.NOT_FOUND, "No such registration token")
        await admin.audit.record(
            "admin.registration_token_deleted", actor.user_id, token[:4] + "…", actor.ip, actor.device
        )
        return ok({})

    return [
        Route(f"{V1}/rooms", list_rooms, methods=["GET"]),
        Route(f"{V1}/rooms/{{room_id}}", get_room, methods=["GET"]),
        Route(f"{V1}/rooms/{{room_id}}", delete_room, methods=["DELETE"]),
        Route(f"{V1}/registration_tokens", list_tokens, methods=["GET"]),
        Route(f"{V1}/registration_tokens/new", new_token, methods=["POST"]),
        Route(f"{V1}/registration_tokens/{{token}}", get_token, methods=["GET"]),
        Route(f"{V1}/registration_tokens/{{token}}", update_token, methods=["PUT"]),
        Route(f"{V1}/registration_tokens/{{token}}", delete_token, methods=["DELETE"]),
    ]
