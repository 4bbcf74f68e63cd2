"""What the /sync sections read, as Protocols: the stores and the serializer satisfy them, and the
service tests (tests/services/) pass in-memory fakes of the same shape.

Returned rows are typed as read-only sequences and mappings of tuples, so that rows which are
NamedTuples satisfy them too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from paigham.domain.stored_event import StoredEvent
from paigham.requester import Requester
from paigham.storage.presence import PresenceRow
from paigham.storage.receipts import Receipt
from paigham.types import JsonDict

# A user's effective push ruleset, and where the push-rule stream stands.
PushRulesProvider = Callable[[str], Awaitable[tuple[JsonDict, int]]]


class RoomReads(Protocol):
    """Room history and state (storage/events.py)."""

    async def memberships_at(self, user_id: str, room_ids: Sequence[str], pos: int) -> dict[str, str]: ...

    async def recent_with_relations(
        self, room_id: str, *, after: int | None, upto: int, limit: int
    ) -> tuple[list[StoredEvent], list[StoredEvent]]: ...

    async def state_at(
        self, room_id: str, stream: int, types: Sequence[str] | None = None, *, members: bool = True
    ) -> list[StoredEvent]: ...

    async def state_changes(
        self, room_id: str, after: int, upto: int, *, members_of: Sequence[str] | None = None
    ) -> list[StoredEvent]: ...

    async def members_changed(self, room_id: str, after: int, upto: int) -> bool: ...

    async def state_at_keys(
        self, room_id: str, stream: int, type_: str, state_keys: Sequence[str]
    ) -> list[StoredEvent]: ...

    async def member_counts(self, room_id: str) -> dict[str, int]: ...

    async def current_state(self, room_id: str, types: Sequence[str] | None = None) -> list[StoredEvent]: ...

    async def state_for_keys(
        self, room_id: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredEvent]: ...

    async def heroes(self, room_id: str, exclude: str, limit: int = 5) -> list[str]: ...


class AccountDataReads(Protocol):
    """storage/account_data.py"""

    async def since(
        self, user_id: str, after: int | None, upto: int
    ) -> Sequence[tuple[str, str, Any]]: ...  # (room_id, type, content); room_id "" for global data


class ReceiptReads(Protocol):
    """storage/receipts.py"""

    async def since(self, room_ids: Sequence[str], after: int | None, upto: int) -> Sequence[Receipt]: ...


class UnreadReads(Protocol):
    """storage/push_actions.py"""

    async def unread_after_reads(self, user_id: str, joined: Mapping[str, int]) -> Mapping[str, tuple[int, int]]: ...


class TypingReads(Protocol):
    """storage/typing_notices.py"""

    async def changed(self, room_ids: Sequence[str], after: int | None, upto: int) -> set[str]: ...

    async def users(self, room_ids: Sequence[str], now: int) -> dict[str, list[str]]: ...


class PresenceReads(Protocol):
    """storage/presence.py"""

    async def of_co_members(self, user_id: str, after: int | None, upto: int) -> Sequence[PresenceRow]: ...


@dataclass(frozen=True, slots=True)
class StreamReads:
    """The stores of what moves besides room events: account data, receipts, unread counts, typing
    and presence (one store each in storage/)."""

    account_data: AccountDataReads
    receipts: ReceiptReads
    unread: UnreadReads
    typing: TypingReads
    presence: PresenceReads


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
