"""The space hierarchy (spec "Spaces", GET /rooms/{roomId}/hierarchy): a breadth-first walk over
`m.space.child` state, children in the spec's order, through the rooms the user may peek into.

Pages are offsets into the walk (the `from` token is a number); each page walks again from the
root, as far as the page reaches, so nothing is kept between requests.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from paigham.errors import Codes, MatrixError
from paigham.services import room_summary
from paigham.storage.events import EventStore
from paigham.types import JsonDict

MAX_ROOMS_VISITED = 1000
MAX_TOKEN_DIGITS = 6


@dataclass(frozen=True, slots=True)
class HierarchyRequest:
    limit: int
    max_depth: int
    suggested_only: bool = False
    start: str | None = None  # the `from` token of a previous page's `next_batch`


class SpaceHierarchy:
    def __init__(self, events: EventStore) -> None:
        self.events = events

    async def page(self, user_id: str, root: str, req: HierarchyRequest) -> JsonDict:
        """One page of the rooms under `root` (the root first), with `next_batch` while more remain."""
        if await self.events.get_room(root) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if not await room_summary.can_peek(self.events, user_id, root):
            raise MatrixError(403, Codes.FORBIDDEN, "You cannot see this space")
        skip = _offset(req.start)
        rooms, more = await self._walk(user_id, root, req, skip + req.limit)
        body: JsonDict = {"rooms": rooms[skip : skip + req.limit]}
        if more and len(rooms) >= skip + req.limit:
            body["next_batch"] = str(skip + req.limit)
        return body

    async def _walk(self, user_id: str, root: str, req: HierarchyRequest, want: int) -> tuple[list[JsonDict], bool]:
        """Up to `want` room summaries in breadth-first order; and whether rooms were left unvisited."""
        rooms: list[JsonDict] = []
        queue: deque[tuple[str, int]] = deque([(root, 0)])
        seen: set[str] = set()
        while queue and len(seen) < MAX_ROOMS_VISITED and len(rooms) < want:
            room_id, depth = queue.popleft()
            if room_id in seen or await self.events.get_room(room_id) is None:
                continue
            seen.add(room_id)
            if room_id != root and not await room_summary.can_peek(self.events, user_id, room_id):
                continue
            children = await self._children(room_id, req.suggested_only)
            entry = await room_summary.summarise(self.events, room_id)
            entry["children_state"] = children
            rooms.append(entry)
            if depth < req.max_depth:
                queue.extend((child["state_key"], depth + 1) for child in children)
        return rooms, bool(queue)

    async def _children(self, room_id: str, suggested_only: bool) -> list[JsonDict]:
        """The room's `m.space.child` events (stripped), in the spec's order."""
        out = []
        for e in await self.events.current_state(room_id, ["m.space.child"]):
            via = e.content.get("via")
            if not isinstance(via, list) or not via or not e.state_key:
                continue  # a child without `via` is a removed child (spec)
            if suggested_only and e.content.get("suggested") is not True:
                continue
            out.append(
                {
                    "type": e.type,
                    "state_key": e.state_key,
                    "content": e.content,
                    "sender": e.sender,
                    "origin_server_ts": e.origin_server_ts,
                }
            )
        return sorted(out, key=_child_order)


def _offset(token: str | None) -> int:
    if not token:
        return 0
    if not (token.isascii() and token.isdigit() and len(token) <= MAX_TOKEN_DIGITS) or int(token) == 0:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid pagination token")
    return int(token)


def _child_order(child: JsonDict) -> tuple[str, int, str]:
    """Spec order: `order` strings first (lexicographic), then by timestamp, then by room ID."""
    order = child["content"].get("order")
    return (order if isinstance(order, str) else "\uffff", child["origin_server_ts"], child["state_key"])
