"""What the /sync sections read, as Protocols: the stores and the serializer satisfy them, and the
service tests (tests/services/) pass in-memory fakes of the same shape.

Returned rows are typed as read-only sequences and mappings of tuples, so that rows which are
NamedTuples satisfy them too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from paigham.domain.stored_event import StoredEvent
from paigham.requester import Requester
from paigham.storage.streams import PresenceRow, Receipt
from paigham.types import JsonDict

# A user's effective push ruleset, and where the push-rule stream stands.
PushRulesProvider = Callable[[str], Awaitable[tuple[JsonDict, int]]]


class RoomReads(Protocol):
    """Room history and state (storage/events.py)."""

    async def memberships_at(self, user_id: str, room_ids: Sequence[str], pos: int) -> dict[str, str]: ...

    async def recent_with_relations(
        self, room_id: str, *, after: int | None, upto: int, limit: int
    ) -> tuple[list[StoredEvent], list[StoredEvent]]: ...

    async def state_at(self, room_id: str, stream: int, types: Sequence[str] | None = None) -> list[StoredEvent]: ...

    async def state_changes(self, room_id: str, after: int, upto: int) -> list[StoredEvent]: ...

    async def state_at_keys(
        self, room_id: str, stream: int, type_: str, state_keys: Sequence[str]
    ) -> list[StoredEvent]: ...

    async def member_counts(self, room_id: str) -> dict[str, int]: ...

    async def current_state(self, room_id: str, types: Sequence[str] | None = None) -> list[StoredEvent]: ...

    async def heroes(self, room_id: str, exclude: str, limit: int = 5) -> list[str]: ...


class StreamReads(Protocol):
    """Account data, receipts, typing, unread counts and presence (storage/streams.py)."""

    async def account_data_since(
        self, user_id: str, after: int | None, upto: int
    ) -> Sequence[tuple[str, str, Any]]: ...  # (room_id, type, content); room_id "" for global data

    async def read_positions(self, user_id: str, room_ids: Sequence[str]) -> dict[str, int]: ...

    async def unread_counts(self, user_id: str, starts: dict[str, int]) -> Mapping[str, tuple[int, int]]: ...

    async def typing_changed(self, room_ids: Sequence[str], after: int | None, upto: int) -> set[str]: ...

    async def typing_users(self, room_ids: Sequence[str], now: int) -> dict[str, list[str]]: ...

    async def receipts_since(self, room_ids: Sequence[str], after: int | None, upto: int) -> Sequence[Receipt]: ...

    async def co_member_presence(self, user_id: str, after: int | None, upto: int) -> Sequence[PresenceRow]: ...


class Serializer(Protocol):
    """Stored events to the client format (services/serializer.py)."""

    async def serialize(
        self,
        evs: Sequence[StoredEvent],
        requester: Requester | None,
        *,
        bundle: bool = True,
        related: Sequence[StoredEvent] | None = None,
    ) -> list[JsonDict]: ...
