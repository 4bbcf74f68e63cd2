"""The rooms of a user as of a stream position, remembered per process between /syncs, so that an
incremental sync reads the membership rows that changed, not every room the user is in.

An entry (RoomList) is valid at its `position`: every membership row of the user whose stream is at
or below it is reflected. The next probe (storage/sync_probe.py) reads the user's rows with a stream
past the entry's position (an index range of `memberships_user_stream`, in the probe's own statement)
and folds them in: a join, leave, invite, kick, ban or knock written by any worker is a row with a new
stream, so the entry is checked against the database at each sync, never trusted from local
notifications. Positions at or below a statement's watermark are all committed (storage/watermark.py),
so no row can later appear at or below a position an entry was read at. Forgetting a room does not
move its stream, but only a room already left (no longer in an entry) can be forgotten.

Entries are immutable (a sync folding changes in makes a new one), so concurrent syncs of one user
never see a half-updated entry, and an entry never replaces one at a later position. The cache is an
LRU bounded by the rooms it holds over all users (CACHED_ROOMS); a user not in it (a cold worker, an
evicted entry) costs one full read of their rooms, which fills it again.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

# Rooms held over all users: a set slot (~35 bytes) each, plus the room ID (~120 bytes) once per
# process (interned: users in the same rooms share it) — 3.5 to 16 MB when full (measured with
# tracemalloc), for 100 users in 1,000 rooms or 10,000 in 10.
CACHED_ROOMS = 100_000

# The memberships an entry holds: those an incremental sync reports whether or not they moved
# (joined rooms, for `quiet` and the long-poll; invites and knocks, sent until answered).
HELD = ("join", "invite", "knock")


@dataclass(frozen=True, slots=True)
class RoomList:
    position: int  # every membership row of the user with a stream at or below it is reflected
    joined: frozenset[str]
    offered: Mapping[str, tuple[str, int]]  # invited or knocked room → (membership, its stream)

    def __len__(self) -> int:
        return len(self.joined) + len(self.offered)

    def moved_to(self, position: int, rows: Iterable[tuple[str, str, int]]) -> RoomList:
        """This list at `position`, given the user's membership rows read then that may differ from
        it (room, membership — "" for a forgotten one —, stream): copied only if one does."""
        changed: tuple[set[str], dict[str, tuple[str, int]]] | None = None
        for room_id, membership, stream in rows:
            now = _JOINED if membership == "join" else (membership, stream) if membership in HELD else None
            joined, offered = changed or (self.joined, self.offered)
            if _held(joined, offered, room_id) == now:
                continue
            if changed is None:
                changed = (set(self.joined), dict(self.offered))
            changed[0].discard(room_id)
            changed[1].pop(room_id, None)
            if now == _JOINED:
                changed[0].add(sys.intern(room_id))
            elif now is not None:
                changed[1][sys.intern(room_id)] = now
        if changed is None:
            return RoomList(position, self.joined, self.offered)
        return RoomList(position, frozenset(changed[0]), changed[1])


_JOINED = ("join", 0)  # how _held tells a joined room (whose stream a list does not keep)


def _held(joined: AbstractSet[str], offered: Mapping[str, tuple[str, int]], room_id: str) -> tuple[str, int] | None:
    return _JOINED if room_id in joined else offered.get(room_id)


def room_list(position: int, joined: Iterable[str], offered: Mapping[str, tuple[str, int]]) -> RoomList:
    """A list read whole: the user's joined rooms and invites and knocks (room IDs interned)."""
    return RoomList(position, frozenset(map(sys.intern, joined)), {sys.intern(r): v for r, v in offered.items()})


class RoomListCache:
    """user → RoomList, least recently used first, at most `max_rooms` rooms over all entries."""

    def __init__(self, max_rooms: int | None = None) -> None:
        self.max_rooms = CACHED_ROOMS if max_rooms is None else max_rooms
        self._entries: OrderedDict[str, RoomList] = OrderedDict()
        self.rooms = 0  # rooms held over all entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str) -> RoomList | None:
        found = self._entries.get(user_id)
        if found is not None:
            self._entries.move_to_end(user_id)
        return found

    def put(self, user_id: str, rooms: RoomList) -> None:
        """Keep `rooms` for the user unless an entry at a later position is there already (a
        concurrent sync's); a list larger than the whole cache is not kept."""
        old = self._entries.get(user_id)
        if old is not None:
            if old.position > rooms.position:
                return
            self.rooms -= len(old)
            del self._entries[user_id]
        if len(rooms) > self.max_rooms:
            return
        self._entries[user_id] = rooms
        self.rooms += len(rooms)
        while self.rooms > self.max_rooms:
            _, evicted = self._entries.popitem(last=False)
            self.rooms -= len(evicted)

    def drop(self, user_id: str) -> None:
        old = self._entries.pop(user_id, None)
        if old is not None:
            self.rooms -= len(old)
