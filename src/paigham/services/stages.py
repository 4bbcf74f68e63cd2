"""The stages of the event pipeline (services/writer.py) and what they see of a room.

Besides the auth rules, every event goes through the stages the composition root declares, in order,
in a `Stages` value given to the writer:
- checks (`EventCheck`): refusals only. Each raises `MatrixError` or returns, and writes nothing. All of
  them run once the event is built and authorised, before any effect and before anything of the
  event is written — for messages and state events alike — so a refused event costs no effect;
- effects (`EventEffect`): side effects that return what the writer writes with the event
  (`EffectRows`: today its push actions), in the event's transaction;
- after commit (`CommitHook`): with every event of the transaction (sync wake-ups, metrics, audit).

`RoomCtx` is the room as the transaction knows it: facts only, kept current as events are admitted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.room_versions import RoomVersion
from paigham.domain.stored_event import StoredEvent
from paigham.storage.events import EventStore
from paigham.storage.push_actions import PushRoomRow, PushUserRow

StateKey = tuple[str, str]  # (event type, state key)


@dataclass
class RoomCtx:
    """What the pipeline knows of one room inside the current transaction: room facts only, kept
    current as the transaction's events are admitted."""

    room_id: str
    version: RoomVersion
    tip: tuple[str, int] | None
    state: dict[StateKey, StoredEvent] = field(default_factory=dict)
    fresh: bool = False  # a room being created: nothing to load from the database
    # Keys already read from the database: absent from `state` means no such state.
    looked_up: set[StateKey] = field(default_factory=set)
    # How many members are joined, kept current as this transaction's membership events are admitted.
    joined_count: int = 0
    # The joined members known to have push rules of their own → their rules (every other joined
    # member has the server defaults), kept current as members leave; the members who joined in this
    # transaction and whose rules were not looked up yet are `unresolved`. Never the whole member list:
    # what a write reads does not grow with the room.
    push_rules: dict[str, Any] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)

    def is_joined(self, user_id: str) -> bool:
        """Whether `user_id` is joined (their member event must have been read: see `read_state`)."""
        member = self.state.get(("m.room.member", user_id))
        return member is not None and member.content.get("membership") == "join"

    async def read_state(self, conn: AsyncConnection, store: EventStore, keys: Iterable[StateKey]) -> None:
        """Make `state` answer for `keys`: those this transaction has neither read nor written are read
        from the room's current state (a room being created has none to read)."""
        missing = list(dict.fromkeys(k for k in keys if k not in self.state and k not in self.looked_up))
        if missing and not self.fresh:
            self.state.update(await store.state_for_keys(self.room_id, missing, conn=conn))
            self.looked_up.update(missing)

    def apply(self, event: StoredEvent) -> None:
        """The room's state and members after `event` (a state event; a message changes neither). The
        state the event replaces is in `state` (the writer reads it before admitting the event)."""
        if event.state_key is None:
            return
        user, was = event.state_key, event.type == "m.room.member" and self.is_joined(event.state_key)
        self.state[(event.type, event.state_key)] = event
        if event.type != "m.room.member":
            return
        now = self.is_joined(user)
        self.joined_count += int(now) - int(was)
        if not now:
            self.push_rules.pop(user, None)
            self.unresolved.discard(user)
        elif not was:
            self.unresolved.add(user)


@dataclass(frozen=True, slots=True)
class EffectRows:
    """What effects add to an event's write: its push actions — the result most recipients share
    (one row) and the recipients whose result differs. The rows' stream slot is a placeholder: they
    are written at the event's position."""

    push_room: PushRoomRow | None = None
    push_own: tuple[PushUserRow, ...] = ()

    def plus(self, other: EffectRows) -> EffectRows:
        if not (other.push_room or other.push_own):
            return self
        if not (self.push_room or self.push_own):
            return other
        if self.push_room is not None and other.push_room is not None:
            raise ValueError("two effects gave one event a shared push row each")
        return EffectRows(self.push_room or other.push_room, self.push_own + other.push_own)


NO_ROWS = EffectRows()

# A refusal: raises MatrixError or returns; never writes. Runs once the event is built and authorised,
# before any effect and before anything of the event is written. `ctx` is the room before the event:
# `ctx.state` holds at least the create and power-levels events, the event's auth state and the state
# the event replaces; read other keys with `ctx.read_state`. `event.stream` is 0 (not written yet).
EventCheck = Callable[[AsyncConnection, StoredEvent, RoomCtx], Awaitable[None]]
# A side effect in the event's transaction, once every check passed: returns the rows the writer
# writes with the event. `ctx` is the room after the event; `event.stream` is 0 (not written yet).
EventEffect = Callable[[AsyncConnection, StoredEvent, RoomCtx], Awaitable[EffectRows]]
# Called after commit with every event of the transaction, in order.
CommitHook = Callable[[list[StoredEvent]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Stages:
    """The stages every event goes through besides the auth rules, each kind run in the order given.
    The names are for docs, logs and tests."""

    checks: tuple[tuple[str, EventCheck], ...] = ()
    effects: tuple[tuple[str, EventEffect], ...] = ()
    after_commit: tuple[tuple[str, CommitHook], ...] = ()  # then the callers are answered
