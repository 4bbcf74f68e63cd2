"""Policy admin API: global and per-unit overrides, the effective policy of a user, the retention job,
and account renewal (also Synapse's account_validity endpoint)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import admin_only
from paigham.api.http import Authenticator, json_body, ok, typed_body
from paigham.clock import now_ms
from paigham.domain.org import Invalid, parse_expiry
from paigham.errors import Codes, MatrixError
from paigham.org.enforce import PolicyEnforcer, Renewals
from paigham.org.policy import PolicyService
from paigham.requester import Requester
from paigham.services.admin import Actor, AdminService

BASE = "/_paigham/admin/v1"


class RenewBody(msgspec.Struct):
    until: str | None = None  # a date or ISO time
    days: int | None = None


class SynapseValidityBody(msgspec.Struct):
    user_id: str
    expiration_ts: int | None = None
    enable_renewal_emails: bool = False


def routes(
    auth: Authenticator, admin: AdminService, policies: PolicyService, enforcer: PolicyEnforcer, renewals: Renewals
) -> list[Route]:
    @admin_only(auth)
    async def show(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_paigham/admin/v1/policies"""
        return ok(await policies.describe())

    @admin_only(auth)
    async def put_global(request: Request, requester: Requester, _actor: Actor) -> Response:
        """PUT /_paigham/admin/v1/policies/global"""
        return ok(await policies.set_global(await json_body(request, allow_empty=True), requester.user_id))

    @admin_only(auth)
    async def get_unit(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_paigham/admin/v1/policies/units/{unitId}"""
        return ok(await policies.unit_view(request.path_params["unit_id"]))

    @admin_only(auth)
    async def put_unit(request: Request, requester: Requester, _actor: Actor) -> Response:
        """PUT /_paigham/admin/v1/policies/units/{unitId}"""
        unit_id = request.path_params["unit_id"]
        return ok(await policies.set_unit(unit_id, await json_body(request, allow_empty=True), requester.user_id))

    @admin_only(auth)
    async def delete_unit(request: Request, requester: Requester, _actor: Actor) -> Response:
        """DELETE /_paigham/admin/v1/policies/units/{unitId}"""
        await policies.set_unit(request.path_params["unit_id"], {}, requester.user_id)
        return ok({})

    @admin_only(auth)
    async def effective(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_paigham/admin/v1/policies/users/{userId}"""
        user_id = request.path_params["user_id"]
        await admin.existing_user(user_id)
        return ok(await enforcer.user_policy(user_id))

    @admin_only(auth)
    async def run_retention(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """POST /_paigham/admin/v1/retention/run"""
        return ok(await enforcer.purge_history())

    @admin_only(auth)
    async def renew(request: Request, requester: Requester, _actor: Actor) -> Response:
        """POST /_paigham/admin/v1/users/{userId}/renew"""
        body = await typed_body(request, RenewBody, allow_empty=True)
        user_id = request.path_params["user_id"]
        await admin.existing_user(user_id)
        return ok({"expiration_ts": await renewals.renew(user_id, _until(body), requester.user_id)})

    @admin_only(auth)
    async def synapse_validity(request: Request, requester: Requester, _actor: Actor) -> Response:
        """POST /_synapse/admin/v1/account_validity/validity"""
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


def _until(body: RenewBody) -> int | None:
    """The renewal's end: a date or time, or a number of days from now; None for the validity period."""
    if body.until is not None:
        try:
            _, until = parse_expiry(body.until)
        except Invalid as exc:
            raise MatrixError(400, Codes.INVALID_PARAM, str(exc)) from None
        return until
    if body.days is not None:
        if not 1 <= body.days <= 36_500:
            raise MatrixError(400, Codes.INVALID_PARAM, "days must be from 1 to 36500")
        return now_ms() + body.days * 86_400_000
    return None
