"""Paigham's organisation admin API: units, officials, bulk import (with dry run) and export."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import admin_only
from paigham.api.http import Authenticator, json_body, ok, query_bool, query_int, read_body, typed_body
from paigham.domain.org import STATUSES
from paigham.errors import Codes, MatrixError
from paigham.org.importer import ReadResult, read_json
from paigham.org.service import OrgService, row_errors_text
from paigham.org.spaces import UnitSpaces
from paigham.requester import Requester
from paigham.services.admin import Actor
from paigham.services.admin_messages import AdminMessages
from paigham.types import JsonDict

BASE = "/_paigham/admin/v1"
MAX_IMPORT_BODY = 64 * 1024 * 1024


class AnnounceBody(msgspec.Struct):
    body: str


async def _record(request: Request, key: str) -> JsonDict:
    """A PUT body: one record, whose key (if given) must be the one in the path."""
    body = await json_body(request)
    if body.get(key, request.path_params[key]) != request.path_params[key]:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{key} in the body differs from the path")
    return body


async def _import_document(request: Request) -> ReadResult:
    raw = await read_body(request, MAX_IMPORT_BODY)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MatrixError(400, Codes.NOT_JSON, "The body must be UTF-8 JSON") from None
    if not text.lstrip().startswith("{"):
        raise MatrixError(400, Codes.NOT_JSON, 'The body must be a JSON object {"units": [], "officials": []}')
    return read_json(text, "request")


def _status(request: Request) -> str | None:
    status = request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise MatrixError(400, Codes.INVALID_PARAM, f"status must be one of {', '.join(STATUSES)}")
    return status


def routes(auth: Authenticator, org: OrgService, spaces: UnitSpaces, messages: AdminMessages) -> list[Route]:
    @admin_only(auth)
    async def list_units(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_paigham/admin/v1/units"""
        units = await org.units_json(request.query_params.get("parent_id"))
        return ok({"units": units, "total": len(units)})

    @admin_only(auth)
    async def get_unit(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_paigham/admin/v1/units/{unitId}"""
        return ok(await org.unit_json(request.path_params["unit_id"]))

    @admin_only(auth)
    async def put_unit(request: Request, requester: Requester, _actor: Actor) -> Response:
        """PUT /_paigham/admin/v1/units/{unitId}"""
        record = await _record(request, "unit_id")
        return ok(await org.put_unit(request.path_params["unit_id"], record, requester.user_id))

    @admin_only(auth)
    async def delete_unit(request: Request, requester: Requester, _actor: Actor) -> Response:
        """DELETE /_paigham/admin/v1/units/{unitId}"""
        await org.delete_unit(request.path_params["unit_id"], requester.user_id)
        return ok({})

    @admin_only(auth)
    async def list_officials(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_paigham/admin/v1/officials"""
        status = _status(request)
        offset = query_int(request, "from", 0, 0, 2**31)
        limit = query_int(request, "limit", 100, 1, 1000)
        page = await org.officials(request.query_params.get("unit_id"), status, offset, limit)
        body: JsonDict = {"officials": [o.to_json() for o in page.officials], "total": page.total}
        if offset + len(page.officials) < page.total:
            body["next_token"] = str(offset + len(page.officials))
        return ok(body)

    @admin_only(auth)
    async def get_official(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_paigham/admin/v1/officials/{employeeId}"""
        return ok((await org.official(request.path_params["employee_id"])).to_json())

    @admin_only(auth)
    async def put_official(request: Request, requester: Requester, _actor: Actor) -> Response:
        """PUT /_paigham/admin/v1/officials/{employeeId}"""
        record = await _record(request, "employee_id")
        official = await org.put_official(request.path_params["employee_id"], record, requester.user_id)
        return ok(official.to_json())

    @admin_only(auth)
    async def bulk_import(request: Request, requester: Requester, _actor: Actor) -> Response:
        """POST /_paigham/admin/v1/import"""
        dry_run = query_bool(request, "dry_run", False)
        plan = await org.import_rows(await _import_document(request), dry_run=dry_run, actor=requester.user_id)
        if not plan.ok:
            raise MatrixError(
                400,
                Codes.INVALID_PARAM,
                f"{len(plan.errors)} records are invalid; nothing was changed",
                errors=row_errors_text(plan.errors),
            )
        return ok(
            {
                "dry_run": dry_run,
                "summary": plan.summary(),
                "diff": plan.to_json(),
                "changes": list(plan.lines())[:10_000],
            }
        )

    @admin_only(auth)
    async def sync(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """POST /_paigham/admin/v1/sync"""
        return ok(await spaces.reconcile())

    @admin_only(auth)
    async def announce(request: Request, _requester: Requester, actor: Actor) -> Response:
        """POST /_paigham/admin/v1/units/{unitId}/announce"""
        body = await typed_body(request, AnnounceBody)
        return ok({"event_id": await messages.announce(request.path_params["unit_id"], body.body, actor)})

    @admin_only(auth)
    async def export(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_paigham/admin/v1/export"""
        return ok(await org.export())

    return [
        Route(f"{BASE}/units", list_units, methods=["GET"]),
        Route(f"{BASE}/units/{{unit_id}}", get_unit, methods=["GET"]),
        Route(f"{BASE}/units/{{unit_id}}", put_unit, methods=["PUT"]),
        Route(f"{BASE}/units/{{unit_id}}", delete_unit, methods=["DELETE"]),
        Route(f"{BASE}/officials", list_officials, methods=["GET"]),
        Route(f"{BASE}/officials/{{employee_id}}", get_official, methods=["GET"]),
        Route(f"{BASE}/officials/{{employee_id}}", put_official, methods=["PUT"]),
        Route(f"{BASE}/import", bulk_import, methods=["POST"]),
        Route(f"{BASE}/export", export, methods=["GET"]),
        Route(f"{BASE}/sync", sync, methods=["POST"]),
        Route(f"{BASE}/units/{{unit_id}}/announce", announce, methods=["POST"]),
    ]
