"""Delayed events (MSC4140; issue 17, calls): an event a user schedules to be sent after a delay,
which they can postpone ("restart"), cancel or send at once. Element Call schedules its own "left
the call" membership and restarts it every few seconds; if the client crashes, the server sends it.

The shape served is the one matrix-js-sdk and Element Call speak today (docs/decisions.md
"Delayed events"): the delay as the `org.matrix.msc4140.delay` query parameter of PUT /send and
PUT /state answering `{"delay_id"}`; the actions as POST …/delayed_events/{delay_id}/{action}
(no access token needed: the delay_id is the capability, MSC4140's delegation to an SFU) and the
older POST …/delayed_events/{delay_id} `{"action"}` (signed in); the list with `scheduled`,
`finalised` and Synapse's `delayed_events`.

Firing: one scheduler task per process sleeps until the earliest `fire_at` it knows (one timer, not
one task per event; woken when a sooner event is scheduled here, and at most `poll_s` later to see
what other workers scheduled), claims the due rows with a lease (SKIP LOCKED on PostgreSQL, so on a
cluster one worker sends each), and sends each through the same path as PUT /send or PUT /state —
power levels, membership, moderation and organisation policy are checked then, not when scheduled.
A refusal finalises the row as failed with the error. The send carries the writer's transaction ID
(`delayed`, delay_id), so a worker dying between sending and marking the row cannot send it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import uuid
from collections.abc import Sequence

import structlog

from paigham.clock import now_ms
from paigham.config import Config
from paigham.domain.canonical_json import encode
from paigham.domain.events import MAX_EVENT_BYTES
from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.metrics import DELAYED_FAILED, DELAYED_SENT
from paigham.services.rooms import RoomService
from paigham.services.writer import Txn
from paigham.storage.delayed_events import CANCELLED, FAILED, SCHEDULED, SENT, DelayedEvent, DelayedEventStore
from paigham.types import JsonDict

log = structlog.get_logger(__name__)

ACTIONS = ("restart", "cancel", "send")
MAX_LISTED = 100  # finalised events per listing (scheduled ones are bounded by the per-user limit)
MAX_DELAY_IDS = 100  # delay_id filters per listing
_BATCH = 50  # due rows claimed at once

CANCELLED_BY_STATE = {
    "errcode": Codes.UNKNOWN,
    "org.matrix.msc4140.errcode": "M_CANCELLED_BY_STATE_UPDATE",
    "error": "The delayed event did not get sent because a different user updated the same state event.",
}


def max_delay_exceeded(max_delay: int) -> MatrixError:
    """What matrix-js-sdk's MembershipManager reads to retry with the allowed delay (M_UNKNOWN with
    the unstable errcode and `org.matrix.msc4140.max_delay`, as Synapse answers)."""
    return MatrixError(
        400, Codes.UNKNOWN, "The requested delay exceeds the allowed maximum.",
        **{"org.matrix.msc4140.errcode": "M_MAX_DELAY_EXCEEDED", "org.matrix.msc4140.max_delay": max_delay},
    )  # fmt: skip


def _item(d: DelayedEvent) -> JsonDict:
    item: JsonDict = {
        "delay_id": d.delay_id,
        "room_id": d.room_id,
        "type": d.event_type,
        "content": d.content,
        "delay": d.delay_ms,
        "running_since": d.running_since,
    }
    if d.state_key is not None:
        item["state_key"] = d.state_key
    return item


def _finalised(d: DelayedEvent) -> JsonDict:
    out: JsonDict = {
        "delayed_event": _item(d),
        "outcome": "send" if d.state == SENT else "cancel",
        "reason": d.reason or "action",
        "origin_server_ts": d.finalised_ts,
    }
    if d.error is not None:
        out["error"] = d.error
    if d.event_id is not None:
        out["event_id"] = d.event_id
    return out


class DelayedEventHooks:
    """What the rest of the server tells delayed events; built before the writer and AuthService
    (it needs only the store).

    `on_events` (a writer commit hook): a state event sent by one user cancels the delayed state
    events other users scheduled for the same (room, type, state_key) — MSC4140's rule, so a stale
    "hangup" does not overwrite state someone else has since set. The sender's own delayed events
    stay: they are in control of them. `user_deactivated`: the account's scheduled ones are cancelled."""

    def __init__(self, store: DelayedEventStore, *, enabled: bool = True) -> None:
        self.store, self.enabled = store, enabled

    async def on_events(self, events: list[StoredEvent]) -> None:
        if not self.enabled:
            return
        by_room: dict[str, list[StoredEvent]] = {}
        for ev in events:
            if ev.state_key is not None:
                by_room.setdefault(ev.room_id, []).append(ev)
        for room_id, state_events in by_room.items():
            try:
                slots = await self.store.scheduled_state_slots(room_id)  # once for the whole batch
                for ev in state_events:
                    if any(s[:2] == (ev.type, ev.state_key) and s[2] != ev.sender for s in slots):
                        await self.store.cancel_state_slot(
                            room_id, ev.type, str(ev.state_key), ev.sender, CANCELLED_BY_STATE, now_ms()
                        )
            except Exception:  # after commit: never fails the request that sent the state
                log.exception("delayed.state_override_failed", room_id=room_id)

    async def user_deactivated(self, user_id: str) -> None:
        await self.store.cancel_for_user(user_id, now_ms())


class DelayedEvents:
    def __init__(
        self,
        config: Config,
        store: DelayedEventStore,
        rooms: RoomService,
        *,
        owner: str | None = None,
        lease_ms: int = 60_000,
        poll_s: float = 5.0,
    ) -> None:
        self.enabled = config.delayed_events_enabled
        self.max_delay = config.max_event_delay_ms
        self.max_per_user = config.delayed_events_max_per_user
        self.keep_ms = config.delayed_events_keep_finalised_hours * 3_600_000
        self.store, self.rooms = store, rooms
        self.owner = owner or f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_ms, self.poll_s = lease_ms, poll_s
        self._wake = asyncio.Event()
        self._planned: int | None = None  # ms: when the scheduler next looks (None: not sleeping)
        self._task: asyncio.Task[None] | None = None

    # -- scheduling --------------------------------------------------------------------------------
    def check_delay(self, delay: int) -> None:
        if not self.enabled:
            raise MatrixError(400, Codes.UNRECOGNIZED, "Delayed events are not enabled on this server")
        if delay <= 0:
            raise MatrixError(400, Codes.INVALID_PARAM, "The delay must be a positive number of milliseconds")
        if delay > self.max_delay:
            raise max_delay_exceeded(self.max_delay)

    async def schedule(
        self, user_id: str, device_id: str | None, room_id: str, event_type: str, state_key: str | None,
        content: JsonDict, delay: int, txn_id: str | None = None,
    ) -> str:  # fmt: skip
        """Schedule an event to be sent `delay` ms from now: its delay_id."""
        self.check_delay(delay)
        if len(encode(content)) > MAX_EVENT_BYTES:  # what the event would be refused for when it fires
            raise MatrixError(413, Codes.TOO_LARGE, f"Event is larger than {MAX_EVENT_BYTES} bytes")
        now = now_ms()
        d = DelayedEvent(
            secrets.token_urlsafe(24), user_id, device_id, room_id, event_type, state_key, content, delay, now,
            now + delay, SCHEDULED,
        )  # fmt: skip
        got = await self.store.schedule(d, txn_id, self.max_per_user)
        if isinstance(got, int):
            wait_ms = max(0, got - now)
            raise MatrixError(
                429, Codes.LIMIT_EXCEEDED, "The maximum number of delayed events has been reached.",
                retry_after_ms=wait_ms,
            )  # fmt: skip
        if got == d.delay_id:
            self._soon(d.fire_at)
        return got

    def _soon(self, fire_at: int) -> None:
        """Wake the scheduler if it sleeps past `fire_at`."""
        if self._planned is None or fire_at < self._planned:
            self._wake.set()

    # -- the actions -------------------------------------------------------------------------------
    async def act(self, delay_id: str, action: str, user_id: str | None) -> None:
        """restart | cancel | send. `user_id`: the signed-in caller, who must own it (None: the
        delay_id alone is the capability). Unknown, someone else's, or already finalised (unless
        cancelled again): 404 M_NOT_FOUND, which clients take as "schedule a new one"."""
        if action not in ACTIONS:
            raise MatrixError(400, Codes.INVALID_PARAM, "action must be one of restart, cancel, send")
        if not self.enabled:
            raise MatrixError(404, Codes.UNRECOGNIZED, "Delayed events are not enabled on this server")
        d = await self.store.get(delay_id)
        if d is None or (user_id is not None and d.user_id != user_id):
            raise MatrixError(404, Codes.NOT_FOUND, "No such delayed event")
        if d.state == CANCELLED and action == "cancel":
            return  # a retried cancel succeeds
        done = False
        if d.state == SCHEDULED:
            if action == "restart":
                done = await self.store.restart(delay_id, now_ms()) is not None
            elif action == "cancel":
                done = await self.store.cancel(delay_id, now_ms())
            else:
                done = await self._send_now(delay_id)
        if not done:
            raise MatrixError(404, Codes.NOT_FOUND, "The delayed event is no longer scheduled")

    async def _send_now(self, delay_id: str) -> bool:
        d = await self.store.claim(delay_id, self.owner, now_ms(), self.lease_ms)
        if d is None:
            return False  # being sent by the scheduler, or just finalised
        try:
            event_id = await self._send(d)
        except BaseException:
            # Refused now (MSC4140: it stays scheduled; the cause may be gone at its send time).
            await self.store.release(delay_id, self.owner)
            raise
        await self.store.finalise(delay_id, self.owner, SENT, "action", now_ms(), event_id=event_id)
        DELAYED_SENT.inc()
        return True

    async def _send(self, d: DelayedEvent) -> str:
        """Send it as PUT /send or PUT /state would (every admission check), idempotently."""
        txn = Txn(d.user_id, "", "delayed", d.delay_id)  # no device: no transaction_id in unsigned
        if d.state_key is not None:
            return await self.rooms.send_state(d.user_id, d.room_id, d.event_type, d.state_key, d.content, txn)
        return await self.rooms.send_event(d.user_id, d.room_id, d.event_type, d.content, txn)

    # -- the list ----------------------------------------------------------------------------------
    async def listing(self, user_id: str, status: str | None, delay_ids: Sequence[str]) -> JsonDict:
        if status not in (None, "scheduled", "finalised"):
            raise MatrixError(400, Codes.INVALID_PARAM, "status must be scheduled or finalised")
        if len(delay_ids) > MAX_DELAY_IDS or any(len(i) > 64 for i in delay_ids):
            raise MatrixError(400, Codes.INVALID_PARAM, "Too many or too long delay_id values")
        out: JsonDict = {}
        if status in (None, "scheduled"):
            rows = await self.store.of_user(user_id, [SCHEDULED], delay_ids, self.max_per_user)
            out["scheduled"] = [_item(d) for d in sorted(rows, key=lambda d: d.fire_at)]
            out["delayed_events"] = out["scheduled"]  # Synapse's name for the same list
        if status in (None, "finalised"):
            rows = await self.store.of_user(user_id, [SENT, CANCELLED, FAILED], delay_ids, MAX_LISTED)
            out["finalised"] = [_finalised(d) for d in rows]
        return out

    async def one(self, user_id: str, delay_id: str) -> JsonDict:
        """One of the user's delayed events (the newest MSC's single lookup): the item, and for a
        finalised one its `event_id` or `error` and `origin_server_ts`."""
        d = await self.store.get(delay_id)
        if d is None or d.user_id != user_id:
            raise MatrixError(404, Codes.NOT_FOUND, "No such delayed event")
        item = _item(d)
        if d.state != SCHEDULED:
            fin = _finalised(d)
            item.update({k: fin[k] for k in ("event_id", "error", "origin_server_ts") if k in fin})
        return item

    # -- the scheduler -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="delayed-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.store.release_all(self.owner)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._planned = None
            nxt: int | None = None
            try:
                nxt = await self.store.next_fire_at(now_ms())
                if nxt is not None and nxt <= now_ms():  # due: claim and send, then look again
                    if not await self.fire_due():  # another worker's transaction holds them: a moment
                        await asyncio.sleep(0.05)
                    continue
            except Exception:  # the database away: try again after the poll interval
                log.exception("delayed.sweep_failed")
            now = now_ms()
            wait_ms = self.poll_s * 1000 if nxt is None else min(max(0, nxt - now), self.poll_s * 1000)
            self._planned = now + int(wait_ms)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_ms / 1000)

    async def fire_due(self) -> int:
        """Send every due delayed event this worker can claim: how many were taken."""
        taken = 0
        while batch := await self.store.claim_due(self.owner, now_ms(), self.lease_ms, _BATCH):
            taken += len(batch)
            await asyncio.gather(*(self._fire(d) for d in batch))
        return taken

    async def _fire(self, d: DelayedEvent) -> None:
        try:
            event_id = await self._send(d)
        except MatrixError as e:
            log.info("delayed.refused", delay_id=d.delay_id, errcode=e.errcode)
            await self.store.finalise(d.delay_id, self.owner, FAILED, "error", now_ms(), error=e.to_dict())
            DELAYED_FAILED.inc()
            return
        except Exception:  # not a refusal (the database away): the lease runs out, and it is retried
            log.exception("delayed.send_failed", delay_id=d.delay_id)
            return
        await self.store.finalise(d.delay_id, self.owner, SENT, "delay", now_ms(), event_id=event_id)
        DELAYED_SENT.inc()

    # -- housekeeping ------------------------------------------------------------------------------
    async def purge_finalised(self) -> int:
        """Job: forget finalised delayed events older than `delayed_events_keep_finalised_hours`."""
        return await self.store.purge_finalised(now_ms() - self.keep_ms)
