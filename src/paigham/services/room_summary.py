"""Public summaries of rooms (room directory, space hierarchy) and who may see them."""

from __future__ import annotations

from typing import Any

from paigham.domain.stored_event import StoredEvent
from paigham.storage.events import EventStore

_FIELDS = (
    (("m.room.name", ""), "name", "name"),
    (("m.room.topic", ""), "topic", "topic"),
    (("m.room.avatar", ""), "url", "avatar_url"),
    (("m.room.canonical_alias", ""), "alias", "canonical_alias"),
)


def summary_from_state(room_id: str, state: dict[tuple[str, str | None], StoredEvent], joined: int) -> dict[str, Any]:
    def content(key: tuple[str, str]) -> dict[str, Any]:
        ev = state.get(key)
        return ev.content if ev else {}

    entry: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": joined,
        "world_readable": content(("m.room.history_visibility", "")).get("history_visibility") == "world_readable",
        "guest_can_join": content(("m.room.guest_access", "")).get("guest_access") == "can_join",
        "join_rule": content(("m.room.join_rules", "")).get("join_rule", "invite"),
    }
    for key, field, out in _FIELDS:
        value = content(key).get(field)
        if isinstance(value, str):
            entry[out] = value
    room_type = content(("m.room.create", "")).get("type")
    if isinstance(room_type, str):
        entry["room_type"] = room_type
    return entry


async def summarise(events: EventStore, room_id: str) -> dict[str, Any]:
    state = {(e.type, e.state_key): e for e in await events.current_state(room_id) if e.type != "m.room.member"}
    counts = await events.member_counts(room_id)
    return summary_from_state(room_id, state, counts.get("join", 0))


async def can_peek(events: EventStore, user_id: str, room_id: str) -> bool:
    """Members, invitees, and anyone for public or world-readable rooms may see a room's summary."""
    m = await events.membership(user_id, room_id)
    if m is not None and m[0] in ("join", "invite"):
        return True
    state = {
        e.type: e.content
        for e in await events.current_state(room_id, ["m.room.join_rules", "m.room.history_visibility"])
    }
    return (
        state.get("m.room.join_rules", {}).get("join_rule") == "public"
        or state.get("m.room.history_visibility", {}).get("history_visibility") == "world_readable"
    )
