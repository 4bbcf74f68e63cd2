"""Reporting content (spec "Reporting content"): users report an event, a room or a user; the
reports are kept for the server's admins, who list, read and delete them through the admin API
(Synapse's event, room and user report lists). Each report and each deletion is audited.

Who may report what: an event, a member of its room who may see it; a room, anyone (the spec does
not ask them to be in it); a user, anyone. What does not exist, or what the reporter may not see,
is a 404 M_NOT_FOUND: the spec's documented answer (it also allows a 200 that hides existence). Here
user IDs are no secret (the organisation's directory lists every official) and room IDs cannot be
guessed, so the 404 tells a reporter of a mistyped ID without revealing anything new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paigham.clock import now_ms
from paigham.errors import Codes, MatrixError
from paigham.ids import check_event_id, check_room_id, parse_user_id
from paigham.services.admin import Actor
from paigham.services.ports import AuditLog
from paigham.services.visibility import filter_visible
from paigham.storage.accounts import AccountStore
from paigham.storage.events import EventStore
from paigham.storage.reports import ReportRow, ReportStore
from paigham.types import JsonDict

MAX_REASON_CHARS = 1000
MIN_SCORE, MAX_SCORE = -100, 0  # the score's range (removed from the spec in v1.18; still accepted)
_ROOM_FIELDS = (("m.room.name", "name"), ("m.room.canonical_alias", "alias"), ("m.room.topic", "topic"))


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which reports a list shows: `reporter` and `room` match any part of the ID, case aside (as
    Synapse's filters do); `target` is the reported user (or the reported event's sender), exactly."""

    reporter: str | None = None
    room: str | None = None
    target: str | None = None


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """One page of an admin's report list: offset and size, order, and which reports."""

    offset: int = 0
    limit: int = 100
    newest_first: bool = True
    which: ReportFilter = ReportFilter()


@dataclass(frozen=True, slots=True)
class ReportPage:
    reports: list[JsonDict]
    total: int  # reports matching the filter, on every page
    next_offset: int | None  # the next page's offset while more remain


class ReportService:
    def __init__(self, events: EventStore, accounts: AccountStore, store: ReportStore, audit: AuditLog) -> None:
        self.events = events
        self.accounts = accounts
        self.store = store
        self.audit = audit

    # -- reporting --------------------------------------------------------------------------------
    async def report_event(
        self, reporter: Actor, room_id: str, event_id: str, reason: str | None, score: int | None
    ) -> int:
        """POST /rooms/{roomId}/report/{eventId}: the reporter must be joined and see the event."""
        user_id = _who(reporter)
        check_room_id(room_id)
        check_event_id(event_id)
        _check_reason(reason)
        if score is not None and not MIN_SCORE <= score <= MAX_SCORE:
            raise MatrixError(400, Codes.INVALID_PARAM, f"score must be between {MIN_SCORE} and {MAX_SCORE}")
        m = await self.events.membership(user_id, room_id)
        ev = await self.events.get_event(event_id) if m is not None and m.membership == "join" else None
        if ev is None or ev.room_id != room_id or not await filter_visible(self.events, user_id, room_id, [ev]):
            raise MatrixError(404, Codes.NOT_FOUND, "The event was not found or you are not joined to the room")
        report_id = await self.store.add(
            "event", user_id, now_ms(), room_id=room_id, event_id=event_id, target_user_id=ev.sender, reason=reason,
            score=score,
        )  # fmt: skip
        await self._audit("event", reporter, event_id, report_id, {"room_id": room_id})
        return report_id

    async def report_room(self, reporter: Actor, room_id: str, reason: str) -> int:
        """POST /rooms/{roomId}/report: any room that exists, member or not."""
        check_room_id(room_id)
        _check_reason(reason)
        if await self.events.get_room(room_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "The room was not found")
        report_id = await self.store.add("room", _who(reporter), now_ms(), room_id=room_id, reason=reason)
        await self._audit("room", reporter, room_id, report_id)
        return report_id

    async def report_user(self, reporter: Actor, user_id: str, reason: str) -> int:
        """POST /users/{userId}/report: any account of this server (deactivated ones too)."""
        parse_user_id(user_id)
        _check_reason(reason)
        if await self.accounts.get_user(user_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "The user was not found")
        report_id = await self.store.add("user", _who(reporter), now_ms(), target_user_id=user_id, reason=reason)
        await self._audit("user", reporter, user_id, report_id)
        return report_id

    async def _audit(
        self, kind: str, reporter: Actor, target: str, report_id: int, details: dict[str, Any] | None = None
    ) -> None:
        # The reason stays in the report (admins read it there); the chain keeps who, what and when.
        details = {"report_id": report_id, **(details or {})}
        await self.audit.record(f"report.{kind}", reporter.user_id, target, reporter.ip, reporter.device, details)

    # -- the admin's views ------------------------------------------------------------------------
    async def page(self, kind: str, q: ReportQuery) -> ReportPage:
        """A page of the reports of `kind` (event, room or user) in the admin API's shape."""
        w = q.which
        rows, total = await self.store.page(
            kind, reporter=w.reporter, room=w.room, target=w.target, offset=q.offset, limit=q.limit,
            newest_first=q.newest_first,
        )  # fmt: skip
        rooms = await self._rooms({r.room_id for r in rows if r.room_id})
        more = q.offset + len(rows) < total
        return ReportPage([_shape(r, rooms) for r in rows], total, q.offset + len(rows) if more else None)

    async def report(self, kind: str, report_id: int) -> JsonDict:
        """One report; an event report with the reported event as stored (`event_json`)."""
        row = await self.store.get(kind, report_id)
        if row is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Report not found")
        out = _shape(row, await self._rooms({row.room_id} if row.room_id else set()))
        if kind == "event" and row.event_id:
            ev = await self.events.get_event(row.event_id)
            out["event_json"] = ev.pdu if ev else None
        return out

    async def delete(self, kind: str, report_id: int, actor: Actor) -> None:
        if not await self.store.delete(kind, report_id):
            raise MatrixError(404, Codes.NOT_FOUND, "Report not found")
        details = {"kind": kind, "report_id": report_id}
        await self.audit.record("admin.report_deleted", actor.user_id, str(report_id), actor.ip, actor.device, details)

    async def _rooms(self, room_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Each room's current name, canonical alias and topic (None where unset or the room is gone)."""
        out: dict[str, dict[str, Any]] = {}
        for room_id in room_ids:
            state = {e.type: e.content for e in await self.events.current_state(room_id, [t for t, _ in _ROOM_FIELDS])}
            out[room_id] = {t: _text(state.get(t, {}).get(field)) for t, field in _ROOM_FIELDS}
        return out


def _who(actor: Actor) -> str:
    if actor.user_id is None:
        raise MatrixError(401, Codes.MISSING_TOKEN, "Reports need a signed-in user")
    return actor.user_id


def _check_reason(reason: str | None) -> None:
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"reason must be at most {MAX_REASON_CHARS} characters")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _shape(r: ReportRow, rooms: dict[str, dict[str, Any]]) -> JsonDict:
    """A report as Synapse's admin API gives it: `user_id` is the reporter."""
    base: JsonDict = {"id": r.id, "received_ts": r.received_ts, "user_id": r.reporter, "reason": r.reason}
    if r.kind == "user":
        return {**base, "target_user_id": r.target_user_id}
    room = rooms.get(r.room_id or "", {})
    named = {
        "room_id": r.room_id,
        "name": room.get("m.room.name"),
        "canonical_alias": room.get("m.room.canonical_alias"),
    }
    if r.kind == "room":
        return {**base, **named, "topic": room.get("m.room.topic")}
    return {**base, **named, "event_id": r.event_id, "sender": r.target_user_id, "score": r.score}
