"""History visibility (spec: "Server behaviour" under m.room.history_visibility)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Protocol

from paigham.domain.stored_event import StoredEvent


class RoomHistory(Protocol):
    """What the rules read (storage/events.py EventStore)."""

    async def membership_history(self, user_id: str, room_id: str) -> Sequence[tuple[int, str]]:
        """(stream, membership) of every membership event of the user in the room, oldest first."""
        ...

    async def state_history(self, room_id: str, type_: str, state_key: str = "") -> list[StoredEvent]:
        """Every state event of this type and key, oldest first."""
        ...


async def filter_visible(
    store: RoomHistory, user_id: str, room_id: str, evs: Sequence[StoredEvent]
) -> list[StoredEvent]:
    """The events of `evs` the user may see, by the room's history visibility and the user's
    membership when each was sent."""
    if not evs:
        return []
    memberships = await store.membership_history(user_id, room_id)
    hv = [
        (e.stream, str(e.content.get("history_visibility", "shared")))
        for e in await store.state_history(room_id, "m.room.history_visibility")
    ]
    mem_streams = [s for s, _ in memberships]
    hv_streams = [s for s, _ in hv]
    joins = [s for s, m in memberships if m == "join"]
    out = []
    for ev in evs:
        if ev.type == "m.room.member" and ev.state_key == user_id:
            out.append(ev)
            continue
        i = bisect_left(mem_streams, ev.stream)  # memberships strictly before the event
        membership = memberships[i - 1][1] if i else "leave"
        j = bisect_left(hv_streams, ev.stream)
        visibility = hv[j - 1][1] if j else "shared"
        if _visible(visibility, membership, any(s > ev.stream for s in joins)):
            out.append(ev)
    return out


def _visible(visibility: str, membership: str, joined_later: bool) -> bool:
    return (
        visibility == "world_readable"
        or membership == "join"
        or (visibility == "shared" and joined_later)
        or (visibility == "invited" and membership == "invite")
    )
