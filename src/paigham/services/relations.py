"""Relations and threads (spec "Relationships", "Threading"): the events related to a parent and a
room's thread roots, newest first, paginated by stream tokens and filtered by history visibility."""

from __future__ import annotations

from dataclasses import dataclass

from paigham.domain.tokens import make_token, parse_token
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.serializer import EventSerializer
from paigham.services.timeline import TimelineService
from paigham.services.visibility import filter_visible
from paigham.storage.events import EventStore
from paigham.types import JsonDict

THREAD_INCLUDES = ("all", "participated")


@dataclass(frozen=True, slots=True)
class RelationsRequest:
    rel_type: str | None = None
    event_type: str | None = None
    direction: str = "b"  # "b" newest first, "f" oldest first
    limit: int = 50
    start: str | None = None  # the `from` token of a previous page's `next_batch`


class RelationService:
    def __init__(self, events: EventStore, serializer: EventSerializer, timeline: TimelineService) -> None:
        self.events = events
        self.serializer = serializer
        self.timeline = timeline

    async def relations(self, requester: Requester, room_id: str, event_id: str, req: RelationsRequest) -> JsonDict:
        """The events relating to `event_id` (of `rel_type` and `event_type` when given) that the user may see."""
        await self.timeline.require_member(requester.user_id, room_id)
        parent = await self.events.get_event(event_id)
        if parent is None or parent.room_id != room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Event not found")
        if req.direction not in ("b", "f"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be b or f")
        backwards = req.direction == "b"
        cursor = parse_token(req.start, "from") if req.start else None
        found = await self.events.relations(
            event_id,
            req.rel_type,
            req.limit + 1,
            before=cursor + 1 if (cursor is not None and backwards) else None,
            after=cursor if (cursor is not None and not backwards) else None,
            backwards=backwards,
        )
        if req.event_type is not None:
            found = [e for e in found if e.type == req.event_type]
        page = found[: req.limit]
        visible = await filter_visible(self.events, requester.user_id, room_id, page)
        body: JsonDict = {"chunk": await self.serializer.serialize(visible, requester)}
        if len(found) > req.limit and page:
            body["next_batch"] = make_token(page[-1].stream - 1 if backwards else page[-1].stream)
        return body

    async def threads(
        self, requester: Requester, room_id: str, *, include: str, limit: int, start: str | None
    ) -> JsonDict:
        """The room's thread roots by latest activity; `participated` keeps those the user took part in."""
        await self.timeline.require_member(requester.user_id, room_id)
        if include not in THREAD_INCLUDES:
            raise MatrixError(400, Codes.INVALID_PARAM, "include must be all or participated")
        roots = await self.events.thread_roots(room_id, limit + 1, parse_token(start, "from") if start else None)
        evs = await self.events.get_events([r for r, _ in roots[:limit]])
        ordered = [evs[r] for r, _ in roots[:limit] if r in evs]
        ordered = await filter_visible(self.events, requester.user_id, room_id, ordered)
        chunk = await self.serializer.serialize(ordered, requester)
        if include == "participated":
            chunk = [e for e in chunk if _participated(e)]
        body: JsonDict = {"chunk": chunk}
        if len(roots) > limit:
            body["next_batch"] = make_token(roots[limit - 1][1])
        return body


def _participated(root: JsonDict) -> bool:
    return bool(root["unsigned"].get("m.relations", {}).get("m.thread", {}).get("current_user_participated"))
