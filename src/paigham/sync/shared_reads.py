"""Reads that many woken /syncs make alike, made once per process.

One message into a room of thousands wakes every member's long-poll at once, and each then reads the
same things: the room's events after the same position, and the sender's member event at the same
point. Such a read is a function of the room's history up to a stream position, which does not change
once written, so one answer serves them all: the first caller reads; callers that come while it reads
wait for its answer (single flight); a small LRU keeps answers for those that come a little later.

Every key carries the positions its answer depends on, including the upper bound of the sync asking
(a redaction committed later gives a later bound, so a new key): a shared answer is the one the caller
would have read itself. Nothing needs telling between workers, since each keeps its own.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from paigham.domain.stored_event import StoredEvent
from paigham.sync.sources import RoomReads

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Answers kept after their read: enough for every room woken by one burst of writes (timelines and
# summaries: RECENT_KEPT each).
RECENT_KEPT = 512
MEMBERS_KEPT = 4096


class SingleFlight(Generic[K, V]):
    """Keyed answers, each read once while wanted: concurrent callers share one read, and the last
    `kept` answers stay (least recently used first out)."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._done: OrderedDict[K, V] = OrderedDict()
        self._running: dict[K, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._done)

    async def get_many(self, keys: Sequence[K], read: Callable[[list[K]], Awaitable[dict[K, V]]]) -> dict[K, V]:
        """The answer for each key: kept ones, those another caller is reading (awaited), and the rest
        read here in one call of `read` (which must answer every key it is given)."""
        out: dict[K, V] = {}
        pending = list(dict.fromkeys(keys))
        while pending:
            mine: list[K] = []
            theirs: list[K] = []
            for k in pending:
                if k in self._done:
                    self._done.move_to_end(k)
                    out[k] = self._done[k]
                elif k in self._running:
                    theirs.append(k)
                else:
                    mine.append(k)
            if mine:
                await self._read(mine, read, out)
            if theirs:
                # Wait for the other readers, then look again: a reader that failed (or was cancelled
                # with its request) stored nothing, and a waiter then reads for itself.
                for fut in {self._running[k] for k in theirs if k in self._running}:
                    await asyncio.shield(fut)
            pending = [k for k in theirs if k not in out]
        return out

    async def _read(self, keys: list[K], read: Callable[[list[K]], Awaitable[dict[K, V]]], out: dict[K, V]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for k in keys:
            self._running[k] = fut
        try:
            got = await read(keys)
            for k in keys:
                out[k] = self._done[k] = got[k]
            while len(self._done) > self.kept:
                self._done.popitem(last=False)
        finally:
            for k in keys:
                del self._running[k]
            fut.set_result(None)


RecentKey = tuple[str, int, int, int]  # room, after (-1: from the start), upto, limit
SummaryKey = tuple[str, int]  # room, the sync's upto
MemberKey = tuple[str, int, int, str]  # room, at, the sync's upto, user


class SharedReads:
    """The woken sync's room reads (sync/sections.py), shared between the syncs that make them alike."""

    def __init__(self, events: RoomReads) -> None:
        self.events = events
        self.recent_answers: SingleFlight[RecentKey, tuple[list[StoredEvent], list[StoredEvent]]] = SingleFlight(
            RECENT_KEPT
        )
        self.member_answers: SingleFlight[MemberKey, StoredEvent | None] = SingleFlight(MEMBERS_KEPT)
        self.summary_answers: SingleFlight[SummaryKey, tuple[dict[str, int], bool]] = SingleFlight(RECENT_KEPT)

    async def recent_with_relations(
        self, room_id: str, *, after: int | None, upto: int, limit: int
    ) -> tuple[list[StoredEvent], list[StoredEvent]]:
        """RoomReads.recent_with_relations, shared (new lists each time: callers may change theirs)."""
        key: RecentKey = (room_id, -1 if after is None else after, upto, limit)

        async def read(keys: list[RecentKey]) -> dict[RecentKey, tuple[list[StoredEvent], list[StoredEvent]]]:
            return {key: await self.events.recent_with_relations(room_id, after=after, upto=upto, limit=limit)}

        timeline, related = (await self.recent_answers.get_many([key], read))[key]
        return list(timeline), list(related)

    async def members_at(self, room_id: str, at: int, upto: int, user_ids: Sequence[str]) -> list[StoredEvent]:
        """The member events of `user_ids` at or before stream `at` (RoomReads.state_at_keys), each
        shared with the syncs at the same `upto` that want it; in the order of `user_ids`."""
        keys: list[MemberKey] = [(room_id, at, upto, u) for u in user_ids]

        async def read(missing: list[MemberKey]) -> dict[MemberKey, StoredEvent | None]:
            found = await self.events.state_at_keys(room_id, at, "m.room.member", [k[3] for k in missing])
            by_user = {e.state_key: e for e in found}
            return {k: by_user.get(k[3]) for k in missing}

        got = await self.member_answers.get_many(keys, read)
        return [e for e in (got[k] for k in keys) if e is not None]

    async def summary(self, room_id: str, upto: int) -> tuple[dict[str, int], bool]:
        """What a room's summary is made of, for the syncs at `upto`: its member counts by membership
        and whether it has a name or canonical alias (a join wakes every member's sync with one)."""
        key: SummaryKey = (room_id, upto)

        async def read(keys: list[SummaryKey]) -> dict[SummaryKey, tuple[dict[str, int], bool]]:
            counts = await self.events.member_counts(room_id)
            name = await self.events.state_for_keys(room_id, [("m.room.name", ""), ("m.room.canonical_alias", "")])
            named = any(e.content.get("name") or e.content.get("alias") for e in name.values())
            return {key: (counts, named)}

        return (await self.summary_answers.get_many([key], read))[key]
