"""The event pipeline: build a PDU, authorise it, admit it, hash and sign it, persist it, wake sync.

One write transaction per request — or per batch of events queued for a busy room — holds the
room lock from reading the room's tip and state to commit, so auth checks see exactly the state the
event is appended to, even across workers.

Every event, message or state event alike, goes through the same steps; the stages besides the auth
rules are declared once, in order, in the `Stages` the composition root gives the writer:
1. built on the room's tip and authorised against its state (`_build`: auth rules, hash, signature);
2. checks: refusals only — each may raise `MatrixError`, none writes; they see the room before the
   event, and nothing of the event is written yet;
3. the event is applied to the room context (its state, who is joined);
4. effects: each returns rows written with the event (push actions); they see the room after it;
5. written (the events of a batch together; a batch's messages in one statement on PostgreSQL) and
   committed;
6. after commit: the hooks, with every event of the transaction (sync wake-ups, metrics, audit,
   delayed-state overrides), then the callers' answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.clock import now_ms
from paigham.domain.auth_rules import auth_types_for_event, check_auth
from paigham.domain.canonical_json import check_canonical
from paigham.domain.events import check_event_size, compute_v12_room_id, finalise_pdu
from paigham.domain.power_levels import action_level, user_level
from paigham.domain.push_rules import mentioned_users
from paigham.domain.room_versions import RoomVersion, get_room_version
from paigham.domain.stored_event import StoredEvent
from paigham.errors import AuthError, Codes, MatrixError
from paigham.services.stages import NO_ROWS, EffectRows, RoomCtx, Stages, StateKey
from paigham.storage.database import Database
from paigham.storage.event_writes import EventWriteStore, NewMessage
from paigham.storage.events import EventStore, RoomRow
from paigham.types import JsonDict

log = structlog.get_logger(__name__)
CREATE: StateKey = ("m.room.create", "")
MAX_BATCH = 100  # messages of one room in one transaction at most
POWER_LEVELS: StateKey = ("m.room.power_levels", "")


@dataclass(slots=True)
class EventSpec:
    sender: str
    type: str
    content: JsonDict
    state_key: str | None = None
    redacts: str | None = None

    @property
    def state(self) -> StateKey | None:
        """(type, state key) of a state event; None for any other event."""
        return None if self.state_key is None else (self.type, self.state_key)

    @property
    def is_message(self) -> bool:
        """A non-state event other than a redaction: written with its room's batch (see `send`)."""
        return self.state_key is None and self.type != "m.room.redaction"

    @property
    def batchable(self) -> bool:
        """Written with its room's batch (see `send`): a message, or a state event other than the
        room's creation (a join in a storm of joins); not a redaction."""
        return self.is_message or (self.state_key is not None and self.type != "m.room.create")


@dataclass(slots=True)
class Txn:
    user_id: str
    device_id: str
    scope: str
    txn_id: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What identifies the request: (user, device, scope, transaction ID)."""
        return (self.user_id, self.device_id, self.scope, self.txn_id)


def preload_keys(specs: Sequence[EventSpec]) -> list[StateKey]:
    """The state read with the room before a write: what authorising these events usually needs
    (create, power levels, the sender's membership; for a membership event the target's and the join
    rules), the state each replaces and the membership of the users a message mentions (whose push
    rules are evaluated on their own). Anything else an event needs is read when it is built."""
    keys = [CREATE, POWER_LEVELS]
    for spec in specs:
        keys.append(("m.room.member", spec.sender))
        keys.extend(("m.room.member", user) for user in mentioned_users(spec.content))
        if spec.state is not None:
            keys.append(spec.state)
            if spec.type == "m.room.member":
                keys.append(("m.room.join_rules", ""))
    return list(dict.fromkeys(keys))


@dataclass(slots=True)
class _Admitted:
    """An event that passed every check, with what its effects add; nothing of it is written yet."""

    event: StoredEvent  # its `stream` is set when it is written
    rows: EffectRows
    txn: Txn | None
    relates_to: str | None
    rel_type: str | None
    redacts: str | None  # the event a redaction redacts now (None: accepted, not applied)

    def message(self) -> NewMessage:
        """The row batch of a message (written by `EventWriteStore.insert_messages`)."""
        rows = self.rows
        key = self.txn.key if self.txn is not None else None
        return NewMessage(self.event, self.relates_to, self.rel_type, key, rows.push_room, list(rows.push_own))


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


def _relation(content: JsonDict) -> tuple[str | None, str | None]:
    """(event ID, rel_type) of the content's `m.relates_to`, when it names both."""
    rel = content.get("m.relates_to")
    if isinstance(rel, dict) and isinstance(rel.get("event_id"), str) and isinstance(rel.get("rel_type"), str):
        return rel["event_id"], rel["rel_type"]
    return None, None


def _new_room(version: RoomVersion, room_id: str | None) -> RoomCtx:
    if version.room_id_is_create_hash:
        room_id = ""  # known once the create event is hashed
    elif not room_id:
        raise MatrixError(500, Codes.UNKNOWN, "room ID missing")
    return RoomCtx(room_id, version, None, fresh=True)


class EventWriter:
    def __init__(
        self,
        db: Database,
        events: EventStore,
        store: EventWriteStore,
        server_name: str,
        signing_key: Any,
        stages: Stages,
    ) -> None:
        self.db = db
        self.events = events  # reads inside the transaction
        self.store = store  # the transaction's writes
        self.server_name = server_name
        self.signing_key = signing_key
        self.stages = stages
        # Messages waiting for their room's next batch; a room is here while a batch of it runs.
        self._waiting: dict[str, list[_Queued]] = {}
        self._batches: set[asyncio.Task[None]] = set()

    async def send(self, room_id: str, spec: EventSpec, txn: Txn | None = None) -> StoredEvent:
        """Append one event to an existing room (idempotent per transaction ID).

        Messages, and state events, into a room whose previous write is still running wait and go
        together into the next transaction of that room (messages with messages, state events with
        state events, in the order they came): one lock, one read, one commit and one wake-up for all
        of them, each built, authorised and admitted as if sent alone, against the room as the ones
        before it left it (an event refused does not stop the others). Under load a busy room's writes
        are serialised anyway; batching them turns that queue into throughput — and a storm of joins
        into a big room waits here, not on pooled connections that other rooms' writes need, and
        wakes the room's members once per batch instead of once per join. Alone, an event is one
        batch of one. Redactions are written alone.
        """
        if not spec.batchable:
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
            # The next batch: the oldest waiting events of one kind (messages, or state events).
            batch = self._take(room_id, queue[0].spec.is_message, MAX_BATCH)
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
        """Commit the batch (which may grow: see `_send_batch`), run the after-commit hooks (wake-ups
        first), then answer the callers. The hooks run here, in the batch's own task, whatever the
        callers do; one that fails is logged (the events are committed: the batch is not retried)."""
        try:
            results, written = await self._send_batch(room_id, batch)
        except Exception:  # nothing of the batch was committed: each on its own, below
            pass
        else:
            await self._after_commit(written)
            for item, result in zip(batch, results, strict=True):
                _settle(item.fut, result)
            return
        for item in batch:
            try:
                _settle(item.fut, await self._send_alone(room_id, item.spec, item.txn))
            except Exception as exc:
                _settle(item.fut, exc)

    async def _send_batch(
        self, room_id: str, batch: list[_Queued]
    ) -> tuple[list[StoredEvent | Exception], list[StoredEvent]]:
        """Events of one kind (messages, or state events) into one room in one transaction, in order
        (the events of that kind that queued while it took the lock and read the room join it);
        a refused one gets its error. The admitted ones are written together at the end. Returns each
        caller's answer and the events written (for the after-commit hooks, which the caller runs: a
        hook's failure must not look like the batch's, which would write it again event by event)."""
        results: list[StoredEvent | Exception] = []
        admitted: list[_Admitted] = []  # private to this transaction
        async with self.db.write() as conn:
            await self.db.lock_room(conn, room_id)
            first = batch[0].txn  # its transaction ID is looked up with the room
            ctx, first_done = await self._load_room(conn, room_id, first, preload_keys([i.spec for i in batch]))
            late = self._late_arrivals(room_id, batch)
            if late:
                await ctx.read_state(conn, self.events, preload_keys([i.spec for i in late]))
            others = [item.txn.key for item in batch[1:] if item.txn]
            done = await self.store.txn_results(conn, others)  # (no statement when there are none)
            if first is not None and first_done is not None:
                done[first.key] = first_done
            by_txn: dict[tuple[str, str, str, str], StoredEvent] = {}
            for item in batch:
                key = item.txn.key if item.txn else None
                if key is not None and key in by_txn:  # the same request twice in one batch
                    results.append(by_txn[key])
                    continue
                event = await self._event_in(conn, done.get(key)) if key is not None else None
                if event is None:
                    try:
                        admitted.append(await self._prepare(conn, ctx, item.spec, item.txn))
                    except MatrixError as exc:  # refused before anything of it was written
                        results.append(exc)
                        continue
                    event = admitted[-1].event
                results.append(event)
                if key is not None:
                    by_txn[key] = event
            if batch[0].spec.is_message:
                await self.store.insert_messages(conn, [a.message() for a in admitted])  # all at once
            else:
                await self._write_state_events(conn, admitted)
        return results, [a.event for a in admitted]

    def _late_arrivals(self, room_id: str, batch: list[_Queued]) -> list[_Queued]:
        """The room's events of the batch's kind that queued while the batch took the lock and read
        the room: they join it (added to `batch`) instead of waiting for the next whole transaction.
        Senders answered together send again together; the first of them used to start a batch of
        one or two and the rest waited for all of its round trips (docs/decisions.md)."""
        late = self._take(room_id, batch[0].spec.is_message, MAX_BATCH - len(batch))
        batch.extend(late)
        return late

    def _take(self, room_id: str, messages: bool, most: int) -> list[_Queued]:
        """Take from the front of the room's queue up to `most` events of one kind (messages, or state
        events), stopping at the first of the other kind, so the order of arrival is kept."""
        queue = self._waiting.get(room_id) or []
        n = next((i for i, item in enumerate(queue[:most]) if item.spec.is_message != messages), min(most, len(queue)))
        taken, self._waiting[room_id] = queue[:n], queue[n:]
        return taken

    async def _send_alone(self, room_id: str, spec: EventSpec, txn: Txn | None) -> StoredEvent:
        async with self.db.write() as conn:
            await self.db.lock_room(conn, room_id)
            ctx, done = await self._load_room(conn, room_id, txn, preload_keys([spec]))
            existing = await self._event_in(conn, done)
            if existing is not None:
                return existing
            event = await self._write(conn, ctx, await self._prepare(conn, ctx, spec, txn))
        await self._after_commit([event])
        return event

    async def send_many(self, room_id: str, specs: list[EventSpec]) -> list[StoredEvent]:
        """Append many state events (bulk membership changes) to one room in one transaction: all of
        them or none. Each is built, authorised and admitted exactly as if sent alone, against the state
        the ones before it left; the state they need is read once and their rows are written together."""
        if not specs:
            return []
        async with self.db.write() as conn:
            await self.db.lock_room(conn, room_id)
            ctx, _ = await self._load_room(conn, room_id, None, preload_keys(specs))
            out = await self._persist_many(conn, ctx, specs)
        await self._after_commit(out)
        return out

    async def create_room(
        self, version: RoomVersion, specs: list[EventSpec], *, is_public: bool, room_id: str | None
    ) -> tuple[str, list[StoredEvent]]:
        """Persist a new room's first events (the create event first) in one transaction: all or none."""
        async with self.db.write() as conn:
            ctx = _new_room(version, room_id)
            out: list[StoredEvent] = []
            for i, spec in enumerate(specs):
                admitted = await self._prepare(conn, ctx, spec, None, creating=i == 0)
                if i == 0:  # the room's row before its first event's
                    row = RoomRow(ctx.room_id, version.identifier, spec.sender, is_public)
                    await self.store.insert_room(conn, row, now_ms())
                out.append(await self._write(conn, ctx, admitted))
        await self._after_commit(out)
        return ctx.room_id, out

    async def _load_room(
        self, conn: AsyncConnection, room_id: str, txn: Txn | None, keys: list[StateKey]
    ) -> tuple[RoomCtx, str | None]:
        """The room's version, tip, how many are joined and who of them has push rules of their own
        (with those rules), the current state at `keys`, and the event ID this transaction ID already
        produced (if it did), in one read."""
        found = await self.store.room_for_write(conn, room_id, keys, txn.key if txn else None)
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
            joined_count=found.joined_count,
            push_rules=found.push_rules,
        )
        return ctx, found.txn_result

    async def _prepare(
        self, conn: AsyncConnection, ctx: RoomCtx, spec: EventSpec, txn: Txn | None, *, creating: bool = False
    ) -> _Admitted:
        """Read the state `spec` needs (its auth state and the state it replaces), then admit it."""
        check_canonical(spec.content)
        keys = auth_types_for_event(spec.type, spec.state_key, spec.sender, spec.content, ctx.version)
        replaced = [spec.state] if spec.state is not None else []
        await ctx.read_state(conn, self.events, [*keys, *replaced, CREATE])
        return await self._admit(conn, ctx, spec, txn, keys, creating=creating)

    async def _persist_many(self, conn: AsyncConnection, ctx: RoomCtx, specs: list[EventSpec]) -> list[StoredEvent]:
        """`send_many` inside its transaction: the state every event needs in one read, each event
        admitted in order, then all rows in a few statements."""
        for spec in specs:
            if spec.state is None or spec.type in ("m.room.create", "m.room.redaction"):
                raise ValueError("send_many takes state events of an existing room")
            check_canonical(spec.content)
        all_keys = [auth_types_for_event(s.type, s.state_key, s.sender, s.content, ctx.version) for s in specs]
        replaced = [s.state for s in specs if s.state is not None]
        await ctx.read_state(conn, self.events, [*(k for keys in all_keys for k in keys), *replaced, CREATE])
        admitted = [await self._admit(conn, ctx, s, None, keys) for s, keys in zip(specs, all_keys, strict=True)]
        await self._write_state_events(conn, admitted)
        return [a.event for a in admitted]

    async def _write_state_events(self, conn: AsyncConnection, admitted: list[_Admitted]) -> None:
        """Write admitted state events of one room together, at the next stream positions in order:
        their rows, current state, memberships, push rows and transaction IDs."""
        if not admitted:
            return
        first = await self.db.next_position(conn, len(admitted)) - len(admitted) + 1
        for i, a in enumerate(admitted):
            a.event.stream = first + i
        await self.store.insert_state_events(conn, [(a.event, a.relates_to, a.rel_type) for a in admitted])
        push = [(a.event.stream, a.rows.push_room, a.rows.push_own) for a in admitted]
        await self.store.insert_push_actions(conn, push)
        for a in admitted:
            if a.txn is not None:
                await self.store.put_txn(conn, *a.txn.key, a.event.event_id, now_ms())

    async def _admit(
        self,
        conn: AsyncConnection,
        ctx: RoomCtx,
        spec: EventSpec,
        txn: Txn | None,
        keys: list[StateKey],
        *,
        creating: bool = False,
    ) -> _Admitted:
        """Build `spec` on the room's tip and authorise it, run the checks (any may refuse it), apply it
        to `ctx`, collect what the effects add to its write. Nothing is written here."""
        is_create = spec.state == CREATE
        event_id, pdu = self._build(ctx, spec, keys, is_create)
        if is_create:
            if ctx.version.room_id_is_create_hash:
                ctx.room_id = compute_v12_room_id(pdu)
            if not creating:
                raise MatrixError(400, Codes.BAD_STATE, "The room already exists")
        redacts = await self._redaction_target(conn, ctx, spec) if spec.type == "m.room.redaction" else None
        event = self._stored(ctx, event_id, pdu, spec, txn)
        for _, check in self.stages.checks:
            await check(conn, event, ctx)
        ctx.apply(event)
        rows = NO_ROWS
        for _, effect in self.stages.effects:
            rows = rows.plus(await effect(conn, event, ctx))
        ctx.tip = (event_id, pdu["depth"])  # only now: a message refused above leaves the tip alone
        relates_to, rel_type = _relation(spec.content)
        return _Admitted(event, rows, txn, relates_to, rel_type, redacts)

    def _build(self, ctx: RoomCtx, spec: EventSpec, keys: list[StateKey], is_create: bool) -> tuple[str, JsonDict]:
        """The signed PDU of `spec` on top of the room's tip, authorised against `ctx.state`."""
        pdu: JsonDict = {
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

    @staticmethod
    def _stored(ctx: RoomCtx, event_id: str, pdu: JsonDict, spec: EventSpec, txn: Txn | None) -> StoredEvent:
        """The event as it is stored; its position in the stream is set when it is written."""
        prev = ctx.state.get(spec.state) if spec.state is not None else None
        return StoredEvent(
            stream=0,
            event_id=event_id,
            room_id=ctx.room_id,
            type=spec.type,
            state_key=spec.state_key,
            sender=spec.sender,
            origin_server_ts=pdu["origin_server_ts"],
            pdu={**pdu, "room_id": ctx.room_id},
            unsigned=None
            if prev is None
            else {"replaces_state": prev.event_id, "prev_content": prev.content, "prev_sender": prev.sender},
            redacted_by=None,
            txn_id=txn.txn_id if txn else None,
            device_id=txn.device_id if txn else None,
        )

    async def _write(self, conn: AsyncConnection, ctx: RoomCtx, admitted: _Admitted) -> StoredEvent:
        """Write one admitted event: a message in one statement with its transaction ID and push rows
        (late, so the stream counter, which orders all writers, is held as briefly as possible); any
        other event with its current state, membership, redaction, transaction ID and push rows."""
        event, txn = admitted.event, admitted.txn
        if event.state_key is None and event.type != "m.room.redaction":
            await self.store.insert_messages(conn, [admitted.message()])
            return event
        event.stream = stream = await self.db.next_position(conn)
        await self.store.insert_event(
            conn,
            stream,
            event.event_id,
            event.pdu,
            unsigned=event.unsigned,
            txn_id=event.txn_id,
            device_id=event.device_id,
            relates_to=admitted.relates_to,
            rel_type=admitted.rel_type,
        )
        if event.state_key is not None:
            await self.store.set_current_state(conn, ctx.room_id, event.type, event.state_key, event.event_id, stream)
            if event.type == "m.room.member":
                membership = str(event.content.get("membership"))
                await self.store.set_membership(conn, event.state_key, ctx.room_id, membership, event.event_id, stream)
        if admitted.redacts is not None:
            await self.store.mark_redacted(conn, admitted.redacts, event.event_id)
        if txn is not None:
            await self.store.put_txn(conn, *txn.key, event.event_id, now_ms())
        await self.store.insert_push_actions(conn, [(stream, admitted.rows.push_room, admitted.rows.push_own)])
        return event

    async def _redaction_target(self, conn: AsyncConnection, ctx: RoomCtx, spec: EventSpec) -> str | None:
        """The event this redaction may redact now (None: accepted but not applied)."""
        target_id = spec.redacts
        target = await self._event_in(conn, target_id)
        if target is None or target.room_id != ctx.room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Cannot redact an unknown event")
        if target.type == "m.room.create":
            raise MatrixError(403, Codes.FORBIDDEN, "The create event cannot be redacted")
        if target.sender == spec.sender:
            return target.event_id
        await ctx.read_state(conn, self.events, [POWER_LEVELS])
        pl = ctx.state.get(POWER_LEVELS)
        create = ctx.state[CREATE]
        level = user_level(spec.sender, pl.content if pl else None, create.pdu, ctx.version)
        if level >= action_level(pl.content if pl else None, "redact"):
            return target.event_id
        raise MatrixError(403, Codes.FORBIDDEN, "You may not redact other users' events")

    async def _event_in(self, conn: AsyncConnection, event_id: str | None) -> StoredEvent | None:
        return await self.events.get_event(event_id, conn=conn) if event_id else None

    async def _after_commit(self, events: list[StoredEvent]) -> None:
        """The after-commit hooks of committed events, in order: each runs even if one before it
        failed; a failure is logged, never turned into the request's error (the events are committed:
        retrying would write them twice)."""
        if not events:
            return
        for name, hook in self.stages.after_commit:
            try:
                await hook(events)
            except Exception:
                log.exception("writer.hook_failed", hook=name, events=len(events))
