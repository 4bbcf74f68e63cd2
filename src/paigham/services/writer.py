"""The event pipeline: build a PDU, authorise it, hash and sign it, persist it, wake sync.

One write transaction per request — or per batch of messages queued for a busy room — holds the
room lock from reading the room's tip and state to commit, so auth checks see exactly the state the
event is appended to, even across workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.clock import now_ms
from paigham.domain.auth_rules import auth_types_for_event, check_auth
from paigham.domain.canonical_json import check_canonical
from paigham.domain.events import check_event_size, compute_v12_room_id, finalise_pdu
from paigham.domain.power_levels import action_level, user_level
from paigham.domain.room_versions import RoomVersion, get_room_version
from paigham.domain.stored_event import StoredEvent
from paigham.errors import AuthError, Codes, MatrixError
from paigham.storage.database import Database
from paigham.storage.event_writes import EventWriteStore, NewMessage
from paigham.storage.events import EventStore, RoomRow
from paigham.storage.push_actions import PushRoomRow, PushUserRow

CREATE = ("m.room.create", "")
MAX_BATCH = 100  # messages of one room in one transaction at most
POWER_LEVELS = ("m.room.power_levels", "")


def preload_keys(specs: list[EventSpec]) -> list[tuple[str, str]]:
    """The state read with the room before a write: what authorising these events usually needs
    (create, power levels, the sender's membership; for a membership event the target's and the join
    rules) and the state each replaces. Anything else an event needs is read by `persist`."""
    keys = [CREATE, POWER_LEVELS]
    for spec in specs:
        keys.append(("m.room.member", spec.sender))
        if spec.state_key is not None:
            keys.append((spec.type, spec.state_key))
            if spec.type == "m.room.member":
                keys.append(("m.room.join_rules", ""))
    return list(dict.fromkeys(keys))


@dataclass(slots=True)
class EventSpec:
    sender: str
    type: str
    content: dict[str, Any]
    state_key: str | None = None
    redacts: str | None = None


@dataclass(slots=True)
class Txn:
    user_id: str
    device_id: str
    scope: str
    txn_id: str


@dataclass
class RoomCtx:
    """What the pipeline knows of one room inside the current transaction."""

    room_id: str
    version: RoomVersion
    tip: tuple[str, int] | None
    state: dict[tuple[str, str], StoredEvent] = field(default_factory=dict)
    fresh: bool = False  # a room being created: nothing to load from the database
    pending: RoomRow | None = None  # the rooms row to insert with the create event
    # Keys already read from the database: absent from `state` means no such state.
    looked_up: set[tuple[str, str]] = field(default_factory=set)
    # Who is joined, kept current as this transaction's membership events are persisted.
    joined: set[str] | None = None
    # The push rules of the members joined when the room was read (absent: the default rules).
    push_rules: dict[str, Any] = field(default_factory=dict)
    push_rules_of: frozenset[str] = frozenset()  # whose rules `push_rules` answers for
    # Not None while the persist hooks of a message run before its row is written: the push hook
    # leaves its rows here (stream still unknown) for the writer to insert with the event.
    pending_push: tuple[PushRoomRow | None, list[PushUserRow]] | None = None
    # Set while a batch is built: its messages, written together at the end (see `_send_messages`).
    deferred: list[NewMessage] | None = None

    def joined_members(self) -> list[str] | None:
        """Who is joined now, if known (else None: ask the database)."""
        return None if self.joined is None else sorted(self.joined)

    def membership_changed(self, user_id: str, membership: str) -> None:
        if self.joined is not None:
            if membership == "join":
                self.joined.add(user_id)
            else:
                self.joined.discard(user_id)


@dataclass(frozen=True, slots=True)
class _Queued:
    spec: EventSpec
    txn: Txn | None
    fut: asyncio.Future[StoredEvent]


def _settle(fut: asyncio.Future[StoredEvent], result: StoredEvent | BaseException) -> None:
    if fut.done():  # (its caller gave up; the answer has nobody to go to)
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
        fut.exception()  # retrieved: a caller that went away must not leave a warning behind
    else:
        fut.set_result(result)


@dataclass(frozen=True, slots=True)
class Persisted:
    events: list[StoredEvent]
    position: int


# Called inside the transaction after each event is inserted (push actions, device lists, ...).
PersistHook = Callable[[AsyncConnection, StoredEvent, RoomCtx], Awaitable[None]]
# Called after commit with every event of the transaction (sync wake-ups).
CommitHook = Callable[[list[StoredEvent]], Awaitable[None]]


class EventWriter:
    def __init__(
        self, db: Database, events: EventStore, store: EventWriteStore, server_name: str, signing_key: Any
    ) -> None:
        self.db = db
        self.events = events  # reads inside the transaction
        self.store = store  # the transaction's writes
        self.server_name = server_name
        self.signing_key = signing_key
        self.persist_hooks: list[PersistHook] = []
        self.commit_hooks: list[CommitHook] = []
        # Messages waiting for their room's next batch; a room is here while a batch of it runs.
        self._waiting: dict[str, list[_Queued]] = {}
        self._batches: set[asyncio.Task[None]] = set()

    async def send(self, room_id: str, spec: EventSpec, txn: Txn | None = None) -> StoredEvent:
        """Append one event to an existing room (idempotent per transaction ID).

        Messages (non-state events other than redactions) into a room whose previous write is still
        running wait and go together into the next transaction of that room: one lock, one read, one
        commit for all of them, each built, authorised and stored as if sent alone (an event refused
        does not stop the others). Under load a busy room's writes are serialised anyway; batching
        them turns that queue into throughput. Alone, a message is one batch of one.
        """
        if spec.state_key is not None or spec.type == "m.room.redaction":
            return await self._send_alone(room_id, spec, txn)
        loop = asyncio.get_running_loop()
        item = _Queued(spec, txn, loop.create_future())
        queue = self._waiting.get(room_id)
        if queue is not None:
            queue.append(item)
        else:
            self._waiting[room_id] = [item]
            task = loop.create_task(self._drain(room_id))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
        # The batch runs in its own task: a caller that goes away does not abort the others' writes.
        return await asyncio.shield(item.fut)

    async def finish(self) -> None:
        """Let the batches already running commit (shutdown)."""
        while self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)

    async def _drain(self, room_id: str) -> None:
        """Write the room's waiting messages, batch after batch, until none are left."""
        while True:
            queue = self._waiting[room_id]
            if not queue:
                del self._waiting[room_id]
                return
            batch, self._waiting[room_id] = queue[:MAX_BATCH], queue[MAX_BATCH:]
            try:
                await self._write_batch(room_id, batch)
            except BaseException as exc:  # cancelled (shutdown): nobody is left waiting for an answer
                for item in batch:
                    _settle(item.fut, exc)
                if not isinstance(exc, Exception):
                    for item in self._waiting.pop(room_id, []):
                        _settle(item.fut, exc)
                    raise

    async def _write_batch(self, room_id: str, batch: list[_Queued]) -> None:
        if len(batch) > 1:
            try:
                results = await self._send_messages(room_id, batch)
            except Exception:  # nothing of the batch was committed: each on its own, below
                pass
            else:
                for item, result in zip(batch, results, strict=True):
                    _settle(item.fut, result)
                return
        for item in batch:
            try:
                _settle(item.fut, await self._send_alone(room_id, item.spec, item.txn))
            except Exception as exc:
                _settle(item.fut, exc)

    async def _send_messages(self, room_id: str, batch: list[_Queued]) -> list[StoredEvent | Exception]:
        """Messages into one room in one transaction, in order; a refused one gets its error."""
        results: list[StoredEvent | Exception] = []
        new: list[StoredEvent] = []
        async with self.db.write() as conn:
            await self.db.lock_room(conn, room_id)
            ctx, _ = await self.load_room(conn, room_id, None, preload_keys([item.spec for item in batch]))
            ctx.deferred = []
            keys = [(t.user_id, t.device_id, t.scope, t.txn_id) for t in (item.txn for item in batch) if t]
            done = await self.store.txn_results(conn, keys)
            by_txn: dict[tuple[str, str, str, str], StoredEvent] = {}
            for item in batch:
                t = item.txn
                key = (t.user_id, t.device_id, t.scope, t.txn_id) if t else None
                if key is not None and key in by_txn:  # the same request twice in one batch
                    results.append(by_txn[key])
                    continue
                existing = await self._event_in(conn, done.get(key)) if key is not None else None
                if existing is None:
                    try:
                        existing = await self.persist(conn, ctx, item.spec, item.txn)
                    except MatrixError as exc:  # refused before anything of it was written
                        results.append(exc)
                        continue
                    new.append(existing)
                results.append(existing)
                if key is not None:
                    by_txn[key] = existing
            await self.store.insert_messages(conn, ctx.deferred)  # every message of the batch at once
        await self._after_commit(new)
        return results

    async def _send_alone(self, room_id: str, spec: EventSpec, txn: Txn | None) -> StoredEvent:
        async with self.db.write() as conn:
            await self.db.lock_room(conn, room_id)
            ctx, done = await self.load_room(conn, room_id, txn, preload_keys([spec]))
            if done is not None:
                existing = await self._event_in(conn, done)
                if existing is not None:
                    return existing
            event = await self.persist(conn, ctx, spec, txn)
        await self._after_commit([event])
        return event

    async def send_many(self, room_id: str, specs: list[EventSpec]) -> list[StoredEvent]:
        """Append many state events to one room in one transaction (see `persist_many`)."""
        if not specs:
            return []
        async with self.db.write() as conn:
            await self.db.lock_room(conn, room_id)
            ctx, _ = await self.load_room(conn, room_id, None, preload_keys(specs))
            out = await self.persist_many(conn, ctx, specs)
        await self._after_commit(out)
        return out

    async def create_room(
        self, version: RoomVersion, specs: list[EventSpec], *, is_public: bool, room_id: str | None
    ) -> tuple[str, list[StoredEvent]]:
        """Persist a new room's first events in one transaction: all of them or none."""
        async with self.db.write() as conn:
            ctx = RoomCtx(room_id or "", version, None, fresh=True, joined=set())
            out: list[StoredEvent] = []
            for i, spec in enumerate(specs):
                if i == 0:
                    await self._start_room(conn, ctx, spec, is_public)
                out.append(await self.persist(conn, ctx, spec, None))
        await self._after_commit(out)
        return ctx.room_id, out

    async def _start_room(self, conn: AsyncConnection, ctx: RoomCtx, create: EventSpec, is_public: bool) -> None:
        if ctx.version.room_id_is_create_hash:
            ctx.room_id = ""  # known once the create event is hashed
        elif not ctx.room_id:
            raise MatrixError(500, Codes.UNKNOWN, "room ID missing")
        ctx.pending = RoomRow(ctx.room_id, ctx.version.identifier, create.sender, is_public)

    async def load_room(
        self, conn: AsyncConnection, room_id: str, txn: Txn | None = None, keys: list[tuple[str, str]] | None = None
    ) -> tuple[RoomCtx, str | None]:
        """The room's version, tip, who is joined, the current state at `keys` (default: create and
        power levels), and the event ID this transaction ID already produced (if it did), in one
        read. Other state an event needs is read by `persist`/`persist_many`."""
        keys = keys or [CREATE, POWER_LEVELS]
        found = await self.store.room_for_write(
            conn, room_id, keys, (txn.user_id, txn.device_id, txn.scope, txn.txn_id) if txn else None
        )
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        version = get_room_version(found.room.room_version)
        if version is None:
            raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION, "Room version not supported")
        ctx = RoomCtx(
            room_id,
            version,
            found.tip,
            found.state,
            looked_up=set(keys),
            joined=set(found.joined),
            push_rules=found.push_rules,
            push_rules_of=frozenset(found.joined),
        )
        return ctx, found.txn_result

    async def _state(self, conn: AsyncConnection, ctx: RoomCtx, keys: list[tuple[str, str]]) -> None:
        missing = list(dict.fromkeys(k for k in keys if k not in ctx.state and k not in ctx.looked_up))
        if missing and not ctx.fresh:
            ctx.state.update(await self.events.state_for_keys(ctx.room_id, missing, conn=conn))
            ctx.looked_up.update(missing)

    async def state_of(self, conn: AsyncConnection, ctx: RoomCtx, key: tuple[str, str]) -> StoredEvent | None:
        await self._state(conn, ctx, [key])
        return ctx.state.get(key)

    async def persist(self, conn: AsyncConnection, ctx: RoomCtx, spec: EventSpec, txn: Txn | None) -> StoredEvent:
        check_canonical(spec.content)
        keys = auth_types_for_event(spec.type, spec.state_key, spec.sender, spec.content, ctx.version)
        # The state this event replaces is loaded too, for unsigned.prev_content / replaces_state.
        replaced = [(spec.type, spec.state_key)] if spec.state_key is not None else []
        await self._state(conn, ctx, [*keys, *replaced, CREATE])
        is_create = spec.type == "m.room.create" and spec.state_key == ""
        event_id, pdu = self._build(ctx, spec, keys, is_create)
        if is_create and ctx.version.room_id_is_create_hash:
            ctx.room_id = compute_v12_room_id(pdu)
        if is_create:
            pending = ctx.pending
            if pending is None:
                raise MatrixError(400, Codes.BAD_STATE, "The room already exists")
            await self.store.insert_room(
                conn, RoomRow(ctx.room_id, pending.room_version, pending.creator, pending.is_public), now_ms()
            )
        return await self._insert(conn, ctx, event_id, pdu, spec, txn)

    async def persist_many(self, conn: AsyncConnection, ctx: RoomCtx, specs: list[EventSpec]) -> list[StoredEvent]:
        """Append many state events (bulk membership changes) to an existing room in the caller's
        transaction. Each is built, authorised and signed exactly as by `persist`, against the state the
        ones before it left; the state they need is read once, the rows are written together, and then
        the persist hooks run for each event in order."""
        for spec in specs:
            if spec.state_key is None or spec.type in ("m.room.create", "m.room.redaction"):
                raise ValueError("persist_many takes state events of an existing room")
            check_canonical(spec.content)
        all_keys = [auth_types_for_event(s.type, s.state_key, s.sender, s.content, ctx.version) for s in specs]
        replaced = {(s.type, s.state_key) for s in specs if s.state_key is not None}
        await self._state(conn, ctx, [*{k for keys in all_keys for k in keys}, *replaced, CREATE])
        if not specs:
            return []
        first = await self.db.next_position(conn, len(specs)) - len(specs) + 1
        out: list[StoredEvent] = []
        for i, (spec, keys) in enumerate(zip(specs, all_keys, strict=True)):
            event_id, pdu = self._build(ctx, spec, keys, False)
            prev = ctx.state.get((spec.type, spec.state_key))  # type: ignore[arg-type]
            unsigned = (
                None
                if prev is None
                else {"replaces_state": prev.event_id, "prev_content": prev.content, "prev_sender": prev.sender}
            )
            stored_pdu = {**pdu, "room_id": ctx.room_id}
            event = StoredEvent(
                first + i,
                event_id,
                ctx.room_id,
                spec.type,
                spec.state_key,
                spec.sender,
                pdu["origin_server_ts"],
                stored_pdu,
                unsigned,
                None,
                None,
                None,
            )
            ctx.state[(spec.type, spec.state_key)] = event  # type: ignore[index]
            if spec.type == "m.room.member":
                ctx.membership_changed(str(spec.state_key), str(spec.content.get("membership")))
            ctx.tip = (event_id, pdu["depth"])
            out.append(event)
        await self.store.insert_state_events(conn, out)
        for event in out:
            for hook in self.persist_hooks:
                await hook(conn, event, ctx)
        return out

    def _build(
        self, ctx: RoomCtx, spec: EventSpec, keys: list[tuple[str, str]], is_create: bool
    ) -> tuple[str, dict[str, Any]]:
        """The signed PDU of `spec` on top of the room's tip, authorised against `ctx.state`."""
        pdu: dict[str, Any] = {
            "type": spec.type,
            "sender": spec.sender,
            "content": spec.content,
            "origin_server_ts": now_ms(),
            "depth": ctx.tip[1] + 1 if ctx.tip else 1,
            "prev_events": [ctx.tip[0]] if ctx.tip else [],
            "auth_events": [
                ctx.state[k].event_id
                for k in keys
                if k in ctx.state and not (k == CREATE and not ctx.version.create_event_in_auth_events)
            ],
        }
        if not (is_create and ctx.version.room_id_is_create_hash):
            pdu["room_id"] = ctx.room_id
        if spec.state_key is not None:
            pdu["state_key"] = spec.state_key
        if spec.redacts is not None and not ctx.version.redacts_in_content:
            pdu["redacts"] = spec.redacts
        auth_state = {k: ctx.state[k].pdu for k in [*keys, CREATE] if k in ctx.state}
        try:
            check_auth(pdu, auth_state, ctx.version)
        except AuthError as exc:
            raise MatrixError(403, Codes.FORBIDDEN, str(exc)) from None
        event_id, pdu = finalise_pdu(pdu, self.server_name, self.signing_key, ctx.version)
        check_event_size(pdu)
        return event_id, pdu

    async def _insert(
        self,
        conn: AsyncConnection,
        ctx: RoomCtx,
        event_id: str,
        pdu: dict[str, Any],
        spec: EventSpec,
        txn: Txn | None,
    ) -> StoredEvent:
        rel = spec.content.get("m.relates_to")
        rel_type = rel.get("rel_type") if isinstance(rel, dict) else None
        rel_to = rel.get("event_id") if isinstance(rel, dict) else None
        if not (isinstance(rel_type, str) and isinstance(rel_to, str)):
            rel_type = rel_to = None
        if spec.state_key is None and spec.type != "m.room.redaction":
            return await self._insert_message(conn, ctx, event_id, pdu, spec, txn, rel_to, rel_type)
        redact_target = await self._redaction_target(conn, ctx, spec) if spec.type == "m.room.redaction" else None
        stream = await self.db.next_position(conn)
        unsigned = None
        prev = ctx.state.get((spec.type, spec.state_key)) if spec.state_key is not None else None
        if prev is not None:
            unsigned = {"replaces_state": prev.event_id, "prev_content": prev.content, "prev_sender": prev.sender}
        stored_pdu = {**pdu, "room_id": ctx.room_id}
        await self.store.insert_event(
            conn,
            stream,
            event_id,
            stored_pdu,
            unsigned=unsigned,
            txn_id=txn.txn_id if txn else None,
            device_id=txn.device_id if txn else None,
            relates_to=rel_to,
            rel_type=rel_type,
        )
        event = StoredEvent(
            stream,
            event_id,
            ctx.room_id,
            spec.type,
            spec.state_key,
            spec.sender,
            pdu["origin_server_ts"],
            stored_pdu,
            unsigned,
            None,
            txn.txn_id if txn else None,
            txn.device_id if txn else None,
        )
        if spec.state_key is not None:
            await self.store.set_current_state(conn, ctx.room_id, spec.type, spec.state_key, event_id, stream)
            ctx.state[(spec.type, spec.state_key)] = event
            if spec.type == "m.room.member":
                membership = str(spec.content.get("membership"))
                await self.store.set_membership(conn, spec.state_key, ctx.room_id, membership, event_id, stream)
                ctx.membership_changed(spec.state_key, membership)
        if redact_target is not None:
            await self.store.mark_redacted(conn, redact_target, event_id)
        if txn is not None:
            await self.store.put_txn(conn, txn.user_id, txn.device_id, txn.scope, txn.txn_id, event_id, now_ms())
        ctx.tip = (event_id, pdu["depth"])
        for hook in self.persist_hooks:
            await hook(conn, event, ctx)
        return event

    async def _insert_message(
        self,
        conn: AsyncConnection,
        ctx: RoomCtx,
        event_id: str,
        pdu: dict[str, Any],
        spec: EventSpec,
        txn: Txn | None,
        rel_to: str | None,
        rel_type: str | None,
    ) -> StoredEvent:
        """A non-state event: the persist hooks run first (on the event, its position not yet known),
        then the event, its transaction ID and its push actions are written together, late, so the
        stream counter (which orders all writers) is held for as short a time as possible."""
        stored_pdu = {**pdu, "room_id": ctx.room_id}
        event = StoredEvent(
            0,
            event_id,
            ctx.room_id,
            spec.type,
            None,
            spec.sender,
            pdu["origin_server_ts"],
            stored_pdu,
            None,
            None,
            txn.txn_id if txn else None,
            txn.device_id if txn else None,
        )
        ctx.pending_push = (None, [])
        try:
            for hook in self.persist_hooks:
                await hook(conn, event, ctx)
            pending = ctx.pending_push
        finally:
            ctx.pending_push = None
        message = NewMessage(
            event,
            rel_to,
            rel_type,
            (txn.user_id, txn.device_id, txn.scope, txn.txn_id) if txn else None,
            pending[0],
            pending[1],
        )
        ctx.tip = (event_id, pdu["depth"])
        if ctx.deferred is not None:
            ctx.deferred.append(message)  # written with the rest of its batch
        else:
            await self.store.insert_messages(conn, [message])
        return event

    async def _redaction_target(self, conn: AsyncConnection, ctx: RoomCtx, spec: EventSpec) -> str | None:
        """The event this redaction may redact now (None: accepted but not applied)."""
        target_id = spec.redacts
        target = await self._event_in(conn, target_id) if target_id else None
        if target is None or target.room_id != ctx.room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Cannot redact an unknown event")
        if target.type == "m.room.create":
            raise MatrixError(403, Codes.FORBIDDEN, "The create event cannot be redacted")
        if target.sender == spec.sender:
            return target.event_id
        pl = await self.state_of(conn, ctx, ("m.room.power_levels", ""))
        create = ctx.state[CREATE]
        level = user_level(spec.sender, pl.content if pl else None, create.pdu, ctx.version)
        if level >= action_level(pl.content if pl else None, "redact"):
            return target.event_id
        raise MatrixError(403, Codes.FORBIDDEN, "You may not redact other users' events")

    async def _event_in(self, conn: AsyncConnection, event_id: str | None) -> StoredEvent | None:
        return await self.events.get_event(event_id, conn=conn) if event_id else None

    async def _after_commit(self, evs: list[StoredEvent]) -> None:
        for hook in self.commit_hooks:
            await hook(evs)
