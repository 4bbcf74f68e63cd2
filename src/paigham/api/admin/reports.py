"""Synapse-compatible admin API for what users reported: event, room and user reports (list, read,
delete). Lists are newest first unless `dir=f`; `from` is an offset, as in Synapse."""

from __future__ import annotations

from typing import NamedTuple

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.admin.common import admin_only
from paigham.api.http import Authenticator, Handler, ok, query_int
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.admin import Actor
from paigham.services.reports import ReportFilter, ReportQuery, ReportService
from paigham.types import JsonDict

V1 = "/_synapse/admin/v1"
MAX_FILTER_CHARS = 255
MAX_REPORT_ID = 2**31 - 1


class ReportList(NamedTuple):
    """How Synapse names one kind's list: its path (and response key), its pagination token, and
    the query parameter that picks the reported user (None: the list has none)."""

    kind: str
    path: str
    token: str
    target_param: str | None


LISTS = (
    ReportList("event", "event_reports", "next_token", "sender_user_id"),
    ReportList("room", "room_reports", "next_batch", None),
    ReportList("user", "user_reports", "next_token", "target_user_id"),
)


def routes(auth: Authenticator, reports: ReportService) -> list[Route]:
    out: list[Route] = []
    for kind in LISTS:
        out += [
            Route(f"{V1}/{kind.path}", _list(auth, reports, kind), methods=["GET"]),
            Route(f"{V1}/{kind.path}/{{report_id}}", _get(auth, reports, kind), methods=["GET"]),
            Route(f"{V1}/{kind.path}/{{report_id}}", _delete(auth, reports, kind), methods=["DELETE"]),
        ]
    return out


def _list(auth: Authenticator, reports: ReportService, kind: ReportList) -> Handler:
    @admin_only(auth)
    async def list_reports(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v1/{event,room,user}_reports"""
        page = await reports.page(kind.kind, _query(request, kind))
        body: JsonDict = {kind.path: page.reports, "total": page.total}
        if page.next_offset is not None:
            body[kind.token] = page.next_offset
        return ok(body)

    return list_reports


def _get(auth: Authenticator, reports: ReportService, kind: ReportList) -> Handler:
    @admin_only(auth)
    async def get_report(request: Request, _requester: Requester, _actor: Actor) -> Response:
        """GET /_synapse/admin/v1/{event,room,user}_reports/{reportId}"""
        return ok(await reports.report(kind.kind, _report_id(request)))

    return get_report


def _delete(auth: Authenticator, reports: ReportService, kind: ReportList) -> Handler:
    @admin_only(auth)
    async def delete_report(request: Request, _requester: Requester, actor: Actor) -> Response:
        """DELETE /_synapse/admin/v1/{event,room,user}_reports/{reportId}"""
        await reports.delete(kind.kind, _report_id(request), actor)
        return ok()

    return delete_report


def _query(request: Request, kind: ReportList) -> ReportQuery:
    q = request.query_params
    direction = q.get("dir", "b")
    if direction not in ("f", "b"):
        raise MatrixError(400, Codes.INVALID_PARAM, "dir must be f or b")
    which = ReportFilter(
        reporter=_filter(q.get("user_id")),
        room=_filter(q.get("room_id")) if kind.kind != "user" else None,
        target=_filter(q.get(kind.target_param)) if kind.target_param else None,
    )
    offset = query_int(request, "from", 0, 0, 2**31)
    return ReportQuery(offset, query_int(request, "limit", 100, 1, 1000), direction == "b", which)


def _filter(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_FILTER_CHARS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Filters are at most {MAX_FILTER_CHARS} characters")
    return value or None


def _report_id(request: Request) -> int:
    raw = request.path_params["report_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or int(raw) > MAX_REPORT_ID:
        raise MatrixError(400, Codes.INVALID_PARAM, "The report ID must be a non-negative integer")
    return int(raw)
