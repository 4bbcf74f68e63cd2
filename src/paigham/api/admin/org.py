"""Paigham's organisation admin API: units, officials, bulk import (with dry run) and export."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import require_admin
from paigham.api.http import json_body, ok, query_bool, query_int, read_body, typed_body
from paigham.domain.org import STATUSES
from paigham.errors import Codes, MatrixError
from paigham.org.importer import read_json
from paigham.org.service import OrgService, row_errors_text
from paigham.org.spaces import UnitSpaces
from paigham.services.auth import AuthService

BASE = "/_paigham/admin/v1"
MAX_IMPORT_BODY = 64 * 1024 * 1024


class AnnounceBody(msgspec.Struct):
    body: str


def routes(auth: AuthService, org: OrgService, spaces: UnitSpaces) -> list[Route]:
    store = org.store

    async def unit_json(unit_id: str) -> dict[str, Any]:
        row = await store.unit(unit_id)
        if row is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unit not found")
        units = await store.units()
        counts = await store.unit_counts()
        return {
            **row.unit.to_json(),
            "space_id": row.space_id,
            "announcements_room_id": row.announcements_id,
            "officials": counts.get(unit_id, 0),
            "children": sorted(u for u, r in units.items() if r.unit.parent_id == unit_id),
        }

    async def list_units(request: Request) -> Response:
        """GET /_paigham/admin/v1/units"""
        await require_admin(auth, request)
        units = await store.units()
        counts = await store.unit_counts()
        parent = request.query_params.get("parent_id")
        out = [
            {
                **r.unit.to_json(),
                "space_id": r.space_id,
                "announcements_room_id": r.announcements_id,
                "officials": counts.get(uid, 0),
            }
            for uid, r in sorted(units.items())
            if parent is None or r.unit.parent_id == (parent or None)
        ]
        return ok({"units": out, "total": len(out)})

    async def get_unit(request: Request) -> Response:
        """GET /_paigham/admin/v1/units/{unitId}"""
        await require_admin(auth, request)
        return ok(await unit_json(request.path_params["unit_id"]))

    async def put_unit(request: Request) -> Response:
        """PUT /_paigham/admin/v1/units/{unitId}"""
        requester, _ = await require_admin(auth, request)
        body = await json_body(request)
        unit_id = request.path_params["unit_id"]
        if body.get("unit_id", unit_id) != unit_id:
            raise MatrixError(400, Codes.INVALID_PARAM, "unit_id in the body differs from the path")
        await org.put_records("unit", [{**body, "unit_id": unit_id}], requester.user_id)
        return ok(await unit_json(unit_id))

    async def delete_unit(request: Request) -> Response:
        """DELETE /_paigham/admin/v1/units/{unitId}"""
        requester, _ = await require_admin(auth, request)
        unit_id = request.path_params["unit_id"]
        if await store.unit(unit_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unit not found")
        await org.delete_unit(unit_id, requester.user_id)
        return ok({})

    async def list_officials(request: Request) -> Response:
        """GET /_paigham/admin/v1/officials"""
        await require_admin(auth, request)
        status = request.query_params.get("status")
        if status is not None and status not in STATUSES:
            raise MatrixError(400, Codes.INVALID_PARAM, f"status must be one of {', '.join(STATUSES)}")
        offset = query_int(request, "from", 0, 0, 2**31)
        limit = query_int(request, "limit", 100, 1, 1000)
        rows, total = await store.list_officials(
            unit_id=request.query_params.get("unit_id"), status=status, offset=offset, limit=limit
        )
        body: dict[str, Any] = {"officials": [r.official.to_json() for r in rows], "total": total}
        if offset + len(rows) < total:
            body["next_token"] = str(offset + len(rows))
        return ok(body)

    async def get_official(request: Request) -> Response:
        """GET /_paigham/admin/v1/officials/{employeeId}"""
        await require_admin(auth, request)
        row = await store.official(request.path_params["employee_id"])
        if row is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Official not found")
        return ok(row.official.to_json())

    async def put_official(request: Request) -> Response:
        """PUT /_paigham/admin/v1/officials/{employeeId}"""
        requester, _ = await require_admin(auth, request)
        body = await json_body(request)
        emp = request.path_params["employee_id"]
        if body.get("employee_id", emp) != emp:
            raise MatrixError(400, Codes.INVALID_PARAM, "employee_id in the body differs from the path")
        await org.put_records("official", [{**body, "employee_id": emp}], requester.user_id)
        row = await store.official(emp)
        assert row is not None
        return ok(row.official.to_json())

    async def bulk_import(request: Request) -> Response:
        """POST /_paigham/admin/v1/import"""
        requester, _ = await require_admin(auth, request)
        dry_run = query_bool(request, "dry_run", False)
        raw = await read_body(request, MAX_IMPORT_BODY)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MatrixError(400, Codes.NOT_JSON, "The body must be UTF-8 JSON") from None
        if not text.lstrip().startswith("{"):
            raise MatrixError(400, Codes.NOT_JSON, 'The body must be a JSON object {"units": [], "officials": []}')
        plan = await org.import_rows(read_json(text, "request"), dry_run=dry_run, actor=requester.user_id)
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

    async def sync(request: Request) -> Response:
        """POST /_paigham/admin/v1/sync"""
        await require_admin(auth, request)
        return ok(await spaces.reconcile())

    async def announce(request: Request) -> Response:
        """POST /_paigham/admin/v1/units/{unitId}/announce"""
        requester, actor = await require_admin(auth, request)
        body = await typed_body(request, AnnounceBody)
        if not body.body.strip() or len(body.body) > 16_000:
            raise MatrixError(400, Codes.INVALID_PARAM, "body must be 1 to 16000 characters")
        event_id = await spaces.announce(request.path_params["unit_id"], body.body, requester.user_id)
        await org.audit.record(
            "admin.announce",
            actor.user_id,
            request.path_params["unit_id"],
            actor.ip,
            actor.device,
            {"event_id": event_id},
        )
        return ok({"event_id": event_id})

    async def export(request: Request) -> Response:
        """GET /_paigham/admin/v1/export"""
        await require_admin(auth, request)
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
