"""Policy admin API: global and per-unit overrides, the effective policy of a user, the retention job,
and account renewal (also Synapse's account_validity endpoint)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import require_admin
from paigham.api.http import json_body, ok, typed_body
from paigham.clock import now_ms
from paigham.domain.org import Invalid, parse_expiry
from paigham.errors import Codes, MatrixError
from paigham.org.enforce import PolicyEnforcer, Renewals
from paigham.org.policy import GLOBAL, PolicyService, unit_scope
from paigham.services.admin import AdminService
from paigham.services.auth import AuthService

BASE = "/_paigham/admin/v1"


class RenewBody(msgspec.Struct):
    until: str | None = None  # a date or ISO time
    days: int | None = None


class SynapseValidityBody(msgspec.Struct):
    user_id: str
    expiration_ts: int | None = None
    enable_renewal_emails: bool = False


def routes(
    auth: AuthService, admin: AdminService, policies: PolicyService, enforcer: PolicyEnforcer, renewals: Renewals
) -> list[Route]:
    async def show(request: Request) -> Response:
        """GET /_paigham/admin/v1/policies"""
        await require_admin(auth, request)
        overrides = await policies.overrides()
        return ok(
            {
                "global": (await policies.global_policy()).to_json(),
                "global_overrides": overrides.get(GLOBAL, {}),
                "config_units": {u: _json(o) for u, o in policies.config_units.items()},
                "units": {k.split(":", 1)[1]: v for k, v in overrides.items() if k.startswith("unit:")},
            }
        )

    async def put_global(request: Request) -> Response:
        """PUT /_paigham/admin/v1/policies/global"""
        requester, _ = await require_admin(auth, request)
        await policies.set(GLOBAL, await json_body(request, allow_empty=True), requester.user_id)
        return ok((await policies.global_policy()).to_json())

    async def get_unit(request: Request) -> Response:
        """GET /_paigham/admin/v1/policies/units/{unitId}"""
        await require_admin(auth, request)
        unit_id = request.path_params["unit_id"]
        if await policies.org.unit(unit_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unit not found")
        overrides = (await policies.overrides()).get(unit_scope(unit_id), {})
        return ok({"overrides": overrides, "effective": (await policies.for_unit(unit_id)).to_json()})

    async def put_unit(request: Request) -> Response:
        """PUT /_paigham/admin/v1/policies/units/{unitId}"""
        requester, _ = await require_admin(auth, request)
        unit_id = request.path_params["unit_id"]
        overrides = await policies.set(
            unit_scope(unit_id), await json_body(request, allow_empty=True), requester.user_id
        )
        return ok({"overrides": _json(overrides), "effective": (await policies.for_unit(unit_id)).to_json()})

    async def delete_unit(request: Request) -> Response:
        """DELETE /_paigham/admin/v1/policies/units/{unitId}"""
        requester, _ = await require_admin(auth, request)
        await policies.set(unit_scope(request.path_params["unit_id"]), {}, requester.user_id)
        return ok({})

    async def effective(request: Request) -> Response:
        """GET /_paigham/admin/v1/policies/users/{userId}"""
        await require_admin(auth, request)
        user_id = request.path_params["user_id"]
        await admin.existing_user(user_id)
        return ok(
            {
                "user_id": user_id,
                "unit_id": await policies.unit_of(user_id),
                "policy": (await policies.for_user(user_id)).to_json(),
                "expires_ts": await enforcer.expires_at(user_id),
            }
        )

    async def run_retention(request: Request) -> Response:
        """POST /_paigham/admin/v1/retention/run"""
        await require_admin(auth, request)
        return ok(await enforcer.purge_history())

    async def renew(request: Request) -> Response:
        """POST /_paigham/admin/v1/users/{userId}/renew"""
        requester, _ = await require_admin(auth, request)
        body = await typed_body(request, RenewBody, allow_empty=True)
        user_id = request.path_params["user_id"]
        await admin.existing_user(user_id)
        until = None
        if body.until is not None:
            try:
                until = parse_expiry(body.until)[1]
            except Invalid as exc:
                raise MatrixError(400, Codes.INVALID_PARAM, str(exc)) from None
        elif body.days is not None:
            if not 1 <= body.days <= 36_500:
                raise MatrixError(400, Codes.INVALID_PARAM, "days must be from 1 to 36500")
            until = now_ms() + body.days * 86_400_000
        return ok({"expiration_ts": await renewals.renew(user_id, until, requester.user_id)})

    async def synapse_validity(request: Request) -> Response:
        """POST /_synapse/admin/v1/account_validity/validity"""
        requester, _ = await require_admin(auth, request)
        body = await typed_body(request, SynapseValidityBody)
        await admin.existing_user(body.user_id)
        if body.expiration_ts is not None and not 0 <= body.expiration_ts <= 2**53:
            raise MatrixError(400, Codes.INVALID_PARAM, "expiration_ts must be a time in milliseconds")
        return ok({"expiration_ts": await renewals.renew(body.user_id, body.expiration_ts, requester.user_id)})

    return [
        Route(f"{BASE}/policies", show, methods=["GET"]),
        Route(f"{BASE}/policies/global", put_global, methods=["PUT"]),
        Route(f"{BASE}/policies/units/{{unit_id}}", get_unit, methods=["GET"]),
        Route(f"{BASE}/policies/units/{{unit_id}}", put_unit, methods=["PUT"]),
        Route(f"{BASE}/policies/units/{{unit_id}}", delete_unit, methods=["DELETE"]),
        Route(f"{BASE}/policies/users/{{user_id}}", effective, methods=["GET"]),
        Route(f"{BASE}/retention/run", run_retention, methods=["POST"]),
        Route(f"{BASE}/users/{{user_id}}/renew", renew, methods=["POST"]),
        Route("/_synapse/admin/v1/account_validity/validity", synapse_validity, methods=["POST"]),
    ]


def _json(o: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in o.items()}
