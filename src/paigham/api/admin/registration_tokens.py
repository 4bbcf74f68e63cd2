"""Synapse-compatible admin API for registration tokens: list, show, create, update, delete."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import admin_only
from paigham.api.http import Authenticator, ok, query_bool, typed_body
from paigham.requester import Requester
from paigham.services.admin import Actor
from paigham.services.registration_tokens import RegistrationTokens

V1 = "/_synapse/admin/v1"


class NewTokenBody(msgspec.Struct):
    token: str | None = None
    uses_allowed: int | None = None
    expiry_time: int | None = None
    length: int = 16


class UpdateTokenBody(msgspec.Struct):
    uses_allowed: int | msgspec.UnsetType | None = msgspec.UNSET
    expiry_time: int | msgspec.UnsetType | None = msgspec.UNSET


def routes(auth: Authenticator, tokens: RegistrationTokens) -> list[Route]:
    @admin_only(auth)
    async def list_tokens(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v1/registration_tokens"""
        valid = query_bool(request, "valid") if "valid" in request.query_params else None
        return ok({"registration_tokens": await tokens.list_tokens(valid)})

    @admin_only(auth)
    async def get_token(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v1/registration_tokens/{token}"""
        return ok(await tokens.token(request.path_params["token"]))

    @admin_only(auth)
    async def new_token(request: Request, _requester: Requester, actor: Actor) -> Response:
        """POST /_synapse/admin/v1/registration_tokens/new"""
        body = await typed_body(request, NewTokenBody, allow_empty=True)
        return ok(await tokens.create(body.token, body.uses_allowed, body.expiry_time, body.length, actor))

    @admin_only(auth)
    async def update_token(request: Request, _requester: Requester, actor: Actor) -> Response:
        """PUT /_synapse/admin/v1/registration_tokens/{token}"""
        body = await typed_body(request, UpdateTokenBody, allow_empty=True)
        return ok(
            await tokens.update(
                request.path_params["token"], actor, uses_allowed=body.uses_allowed, expiry_time=body.expiry_time
            )
        )

    @admin_only(auth)
    async def delete_token(request: Request, _requester: Requester, actor: Actor) -> Response:
        """DELETE /_synapse/admin/v1/registration_tokens/{token}"""
        await tokens.delete(request.path_params["token"], actor)
        return ok({})

    return [
        Route(f"{V1}/registration_tokens", list_tokens, methods=["GET"]),
        Route(f"{V1}/registration_tokens/new", new_token, methods=["POST"]),
        Route(f"{V1}/registration_tokens/{{token}}", get_token, methods=["GET"]),
        Route(f"{V1}/registration_tokens/{{token}}", update_token, methods=["PUT"]),
        Route(f"{V1}/registration_tokens/{{token}}", delete_token, methods=["DELETE"]),
    ]
