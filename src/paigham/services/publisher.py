"""Publishes stream updates on the bus after commit, widening "this user" to the rooms they are in
when other users' syncs must wake too (presence, profile, device lists)."""

from __future__ import annotations

from paigham.bus.base import Bus, StreamUpdate
from paigham.domain.stored_event import StoredEvent
from paigham.storage.events import EventStore


class Publisher:
    def __init__(self, bus: Bus, events: EventStore) -> None:
        self.bus = bus
        self.events = events

    async def publish(self, update: StreamUpdate, rooms_of: str | None = None) -> None:
        if rooms_of is not None:
            rooms = await self.events.user_rooms(rooms_of)
            update = StreamUpdate(update.pos, sorted({*update.rooms, *rooms}), update.users)
        await self.bus.publish(update)

    async def credentials_changed(self, user_ids: list[str]) -> None:
        """Every worker's token cache forgets these users (their tokens or account changed)."""
        await self.bus.publish(StreamUpdate(0, credentials=user_ids))

    async def events_committed(self, evs: list[StoredEvent]) -> None:
        if not evs:
            return
        rooms = sorted({e.room_id for e in evs})
        users = sorted({e.state_key for e in evs if e.type == "m.room.member" and e.state_key})
        member_only = sorted({*rooms} - {e.room_id for e in evs if e.type != "m.room.member"})
        await self.bus.publish(StreamUpdate(max(e.stream for e in evs), rooms, users, member_only=member_only))
