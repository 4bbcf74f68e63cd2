"""Delivery of notifications to push gateways (spec: Push Gateway API; issue 16).

Per pusher, one at a time and in stream order, one POST per notification with exactly one device
(what ntfy's and Sygnal's gateways expect); head-of-line: while the head notification fails, nothing
later is sent to that pusher. The cursor (`pushers.last_stream`) is committed after each 200, so
nothing is lost and, in normal operation, nothing is sent twice — also across a restart.

Who works on what:
- `PushWakeups` is a bus listener (built with the bus, in every process): each stream update's rooms
  and users are collected; the dispatcher turns them into pusher ids — the pushers of the rooms'
  joined members whose cursor is behind the update, and the pushers of the users named (an invitee;
  a read receipt's reader, whose badge may have changed).
- The dispatcher claims the pushers it found together, in one statement, with a lease
  (storage/push_delivery.py; SKIP LOCKED on PostgreSQL, so in a cluster exactly one worker holds
  each), and queues them; a fixed number of workers (`concurrency`) take them from the deduplicated
  queue, deliver what is past each cursor, and release it (a pusher queued for half its lease, or
  one a retry timer queued by id, is claimed again by the worker). What every pusher of an event
  needs — the event itself, its room's state, member count and the sender's power level — is read
  once, also when they ask at the same moment (shared reads); the user's rules are kept until a
  stream update names the user (a rule change does).
- A failure (an HTTP error status, no answer, a blocked address) puts the pusher in backoff: 1 s
  doubling to 1 h with up to 20 % jitter, `failing_since` recorded; its retry is a timer of this
  process plus a periodic sweep of the table (other workers, restarts). After 24 h of failing,
  the head notification is skipped. Nothing wakes a pusher in backoff earlier. A gateway failing
  three times in a row is taken as down (services/push_breaker.py): its pushers are parked instead
  of tried, one probe goes after 1 s, 2 s, … 1 h, and its first answer wakes them all — so 10,000
  pushers whose gateway is down cost one request per probe interval, not 10,000 retry schedules.
- `rejected` containing the pushkey → that pusher is deleted (only it).
- A URL no longer in `push_gateway_allowlist` (the setting changed since the pusher was registered)
  → nothing is sent and the notification is passed over (counted in `paigham_push_refused`); the
  pusher stays, so putting the prefix back resumes delivery without a backlog.

Payload: `event_id_only` (the pusher's `data.format`, or always with `push_force_event_id_only`)
carries event_id, room_id, prio, counts and the device without tweaks; the full format adds type,
sender, sender_display_name, room_name, room_alias, membership/user_is_target for member events,
the device's tweaks, and content only with `push_include_content`. `prio` is high for encrypted
events and for actions with a highlight or sound tweak. The tweaks come from evaluating the user's
push rules again at delivery (the push action tables store notify/highlight, not the actions), in
the room's current state; the stored notify/highlight decide whether to push and `highlight`.
`counts.unread` is pending invites + rooms with unread notifications; after a read receipt a
counts-only request goes out when that number changed (`pushers.last_badge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec
import structlog

from paigham.bus.base import StreamUpdate
from paigham.clock import now_ms
from paigham.config import Config
from paigham.domain.power_levels import notification_level, user_level
from paigham.domain.push_evaluator import (
    CompiledRule,
    PushContext,
    action_tweaks,
    compile_ruleset,
    evaluate,
    event_text,
    recipient_group,
    rules_event,
    rules_template,
)
from paigham.domain.room_versions import get_room_version
from paigham.domain.stored_event import StoredEvent
from paigham.metrics import (
    PUSH_FAILED,
    PUSH_FAILING,
    PUSH_GATEWAYS_DOWN,
    PUSH_GIVEN_UP,
    PUSH_LATENCY,
    PUSH_QUEUE_DEPTH,
    PUSH_REFUSED,
    PUSH_REJECTED,
    PUSH_SENT,
)
from paigham.services.outbound import GatewayRefused, GatewayUnreachable, OutboundClient
from paigham.services.push_breaker import STUCK_MS, GatewayBreaker, gateway_of
from paigham.storage.events import EventStore
from paigham.storage.push_delivery import Advance, Notification, PushDeliveryStore, Pusher

log = structlog.get_logger(__name__)
K = TypeVar("K")
V = TypeVar("V")

RulesOf = Callable[[str], Awaitable[tuple[dict[str, Any], int]]]  # user → (effective rules, version)

FIRST_RETRY_MS = 1_000
MAX_RETRY_MS = 3_600_000
GIVE_UP_MS = 24 * 3_600_000
SWEEP_S = 30.0  # the table is read for due retries and missed wake-ups this often
BATCH = 50  # notifications read per query
SWEEP_LIMIT = 5_000
FACTS_CACHE = 256  # events whose room facts are kept for their other pushers
RULES_KEPT = 10_000  # users whose compiled rules are kept
EVENTS_CACHE = 1_024  # positions whose events are kept for their other pushers


def backoff_ms(attempts: int) -> int:
    """The wait before retry number `attempts` (1, 2, …): 1 s doubling to 1 h, plus up to 20 %."""
    base = min(FIRST_RETRY_MS * 2 ** min(attempts - 1, 30), MAX_RETRY_MS)
    return int(base * (1 + random.random() * 0.2))


class Outcome(Enum):
    SENT = "sent"
    FAILED = "failed"  # retry later
    REJECTED = "rejected"  # the pusher is gone
    REFUSED = "refused"  # not sent (policy): pass over it
    HELD = "held"  # not sent: the gateway is down (push_breaker); wait for it to answer a probe


_RETRY = (Outcome.FAILED, Outcome.HELD)


class PushWakeups:
    """The bus listener: remembers which rooms and users stream updates named, for the dispatcher.
    Inactive (ignores updates) unless delivery runs in this process."""

    def __init__(self) -> None:
        self.active = False
        self.rooms: dict[str, int] = {}  # room → newest position named
        self.users: set[str] = set()
        self.sweep = False
        self.added = False
        self.event = asyncio.Event()

    def on_update(self, update: StreamUpdate) -> None:
        if not self.active or not (update.rooms or update.users):
            return
        for room in update.rooms:
            if self.rooms.get(room, -1) < update.pos:
                self.rooms[room] = update.pos
        self.users.update(update.users)
        self.event.set()

    def pusher_added(self) -> None:
        """A pusher was registered in this process: the delivery need not wait to learn that one
        exists (see PushDelivery._any_pushers)."""
        self.added = True

    def on_resume(self) -> None:
        """After a bus outage updates may have been missed: look at the whole table."""
        if self.active:
            self.sweep = True
            self.event.set()

    def take(self) -> tuple[dict[str, int], set[str], bool]:
        rooms, users, sweep = self.rooms, self.users, self.sweep
        self.rooms, self.users, self.sweep = {}, set(), False
        self.event.clear()
        return rooms, users, sweep


class PushDelivery:
    def __init__(
        self,
        config: Config,
        store: PushDeliveryStore,
        events: EventStore,
        rules_of: RulesOf,
        wakeups: PushWakeups,
        client: OutboundClient,
        *,
        concurrency: int = 32,
        owner: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.events = events
        self.rules_of = rules_of
        self.wakeups = wakeups
        self.client = client
        self.concurrency = concurrency
        self.owner = owner or f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_ms = int(max(60.0, 3 * config.push_request_timeout_s) * 1000)
        # a pusher id (to claim), or a pusher the dispatcher claimed already (with its claim time)
        self._queue: asyncio.Queue[int | tuple[Pusher, float, _Start | None]] = asyncio.Queue()
        self._queued: set[int] = set()
        self._in_flight: set[int] = set()
        self._again: set[int] = set()  # woken while in flight: look again when done
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        # user → compiled rules; forgotten when a stream update names the user (a rule change does)
        self._compiled: _Shared[str, _Rules] = _Shared(RULES_KEPT)
        self._facts_cache: _Shared[tuple[int, bool], _EventFacts] = _Shared(FACTS_CACHE)
        self._events_cache: dict[int, asyncio.Future[dict[int, StoredEvent]]] = {}
        self._pos = 0  # a stream position everything up to which is committed (what wake-ups named)
        self._pushers_exist, self._pushers_checked = True, 0.0
        self._sweep_timer: asyncio.TimerHandle | None = None
        self.breaker = GatewayBreaker()
        self._probe_timers: dict[str, asyncio.TimerHandle] = {}
        self._wakes: set[asyncio.Task[None]] = set()
        self._moves: list[tuple[Advance, asyncio.Future[bool]]] = []  # cursor commits asked for
        self._flushing: asyncio.Future[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.config.push_enabled or self._tasks:
            return
        self.wakeups.active = True
        self.wakeups.sweep = True  # pick up what was left when the server stopped
        self.wakeups.event.set()
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="push:dispatch"),
            asyncio.create_task(self._sweep_every(), name="push:sweep"),
        ]
        self._workers = [asyncio.create_task(self._work(), name=f"push:worker{i}") for i in range(self.concurrency)]

    async def stop(self) -> None:
        """Stop taking work; a request in flight is let finish (its cursor committed) for up to the
        request timeout, so a graceful restart sends nothing twice."""
        self.wakeups.active = False
        self._stopping = True
        for _ in self._workers:
            self._queue.put_nowait(-1)  # wakes idle workers: they exit
        if self._workers:
            await asyncio.wait(self._workers, timeout=self.config.push_request_timeout_s + 2)
        for t in [*self._tasks, *self._workers]:
            t.cancel()
        for t in [*self._tasks, *self._workers]:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        self._workers.clear()
        if self._flushing is not None:  # cursor commits asked for before the workers stopped
            with contextlib.suppress(Exception):
                await self._flushing
        for handle in [*self._timers.values(), *self._probe_timers.values()]:
            handle.cancel()
        self._timers.clear()
        self._probe_timers.clear()
        for task in self._wakes:
            task.cancel()
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        with contextlib.suppress(Exception):  # best effort: leases expire anyway
            await self.store.release_all(self.owner)
        await self.client.close()

    # -- who has work ----------------------------------------------------------------------------
    def _enqueue(self, ids: Sequence[int]) -> None:
        for pusher_id in ids:
            if pusher_id in self._timers:
                continue  # in backoff: its timer enqueues it (a wake-up must not shorten the wait)
            if pusher_id in self._in_flight:
                self._again.add(pusher_id)
            elif pusher_id not in self._queued:
                self._queued.add(pusher_id)
                self._queue.put_nowait(pusher_id)
        PUSH_QUEUE_DEPTH.set(len(self._queued) + len(self._in_flight))

    async def _claim_and_enqueue(self, ids: Sequence[int]) -> None:
        """`_enqueue` for the dispatcher: the pushers that would be queued are claimed together, in
        one statement (one per pusher was a quarter of a push's statements), and queued claimed."""
        fresh: list[int] = []
        for pusher_id in dict.fromkeys(ids):
            if pusher_id in self._timers or pusher_id in self._queued:
                continue  # in backoff (its timer enqueues it), or queued already
            if pusher_id in self._in_flight:
                self._again.add(pusher_id)
            else:
                fresh.append(pusher_id)
        if not fresh:
            return
        self._queued.update(fresh)  # reserved while the claim runs
        try:
            claimed = await self.store.claim(fresh, self.owner, now_ms(), self.lease_ms)
        finally:
            self._queued.difference_update(fresh)
        at = time.monotonic()
        for p in claimed:
            self._queued.add(p.id)
        try:  # what each run starts with, read for all of them together
            pos = self._pos if self._pos > max(p.last_stream for p in claimed) else await self.store.position()
            heads = await self.store.notifications_many([(p.user_id, p.last_stream) for p in claimed], pos, BATCH)
            prefetch = asyncio.ensure_future(self._prefetch(list(zip(claimed, heads, strict=True))))
            badges = await self.store.badges([p.user_id for p in claimed])
            prefetch.add_done_callback(_quiet)  # a failed read is read again by the worker that needs it
            starts: list[_Start | None] = [
                _Start(pos, badges.get(p.user_id, 0), head) for p, head in zip(claimed, heads, strict=True)
            ]
        except Exception:  # each run reads its own then
            log.exception("push.prefetch_failed")
            starts = [None] * len(claimed)
        for p, start in zip(claimed, starts, strict=True):
            self._queue.put_nowait((p, at, start))
        PUSH_QUEUE_DEPTH.set(len(self._queued) + len(self._in_flight))

    def _retry_at(self, pusher_id: int, when_ms: int) -> None:
        old = self._timers.pop(pusher_id, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, (when_ms - now_ms()) / 1000)

        def fire() -> None:
            self._timers.pop(pusher_id, None)
            self._enqueue([pusher_id])

        self._timers[pusher_id] = asyncio.get_running_loop().call_later(delay, fire)

    # -- gateways that are down (push_breaker) ---------------------------------------------------
    def _gateway_failed(self, gateway: str, pusher_id: int) -> None:
        probe_at = self.breaker.failed(gateway, pusher_id, now_ms())
        if probe_at is not None:
            if not self._probe_timers:
                log.warning("push.gateway_down", gateway=gateway)
            self._probe_at(gateway, probe_at)
        PUSH_GATEWAYS_DOWN.set(self.breaker.down)

    def _gateway_answered(self, gateway: str) -> None:
        if not self.breaker.is_down(gateway):
            self.breaker.answered(gateway)  # forgets the failures counted
            return
        parked = self.breaker.answered(gateway)
        log.warning("push.gateway_up", gateway=gateway, parked=len(parked))
        timer = self._probe_timers.pop(gateway, None)
        if timer is not None:
            timer.cancel()
        PUSH_GATEWAYS_DOWN.set(self.breaker.down)
        if parked:
            self._wake_parked(parked)

    def _probe_at(self, gateway: str, when_ms: int) -> None:
        """At `when_ms` wake one parked pusher of `gateway` as its probe; then look again after
        `STUCK_MS` in case that probe never reports (deleted meanwhile, or its URL refused)."""
        old = self._probe_timers.pop(gateway, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._probe_timers.pop(gateway, None)
            if not self.breaker.is_down(gateway):
                return
            probe = self.breaker.choose_probe(gateway, now_ms())
            if probe is not None:
                self._wake_parked([probe])
            self._probe_at(gateway, now_ms() + STUCK_MS)

        delay = max(0.0, (when_ms - now_ms()) / 1000)
        self._probe_timers[gateway] = asyncio.get_running_loop().call_later(delay, fire)

    def _wake_parked(self, ids: list[int]) -> None:
        async def wake() -> None:
            try:
                await self.store.unpark(ids, now_ms())
            except Exception:  # their own next attempt (an hour at most) or the sweep takes them
                log.exception("push.unpark_failed", pushers=len(ids))
                return
            for pusher_id in ids:
                timer = self._timers.pop(pusher_id, None)
                if timer is not None:
                    timer.cancel()
            self._enqueue(ids)

        task = asyncio.ensure_future(wake())
        self._wakes.add(task)
        task.add_done_callback(self._wakes.discard)

    async def _dispatch(self) -> None:
        while True:
            await self.wakeups.event.wait()
            rooms, users, sweep = self.wakeups.take()
            try:
                ids: list[int] = []
                # The stream counter is advanced under a row lock in the writing transaction, so a
                # position an update names has everything before it committed.
                self._pos = max(self._pos, *rooms.values()) if rooms else self._pos
                if users or sweep:
                    self._pos = max(self._pos, await self.store.position())
                if self.wakeups.added:
                    self.wakeups.added, self._pushers_exist = False, True
                if (rooms or sweep) and await self._any_pushers(sweep) and rooms:
                    ids += await self.store.behind_in_rooms(list(rooms), max(rooms.values()), now_ms())
                if users:
                    for user_id in users:
                        self._compiled.forget(user_id)
                    ids += await self.store.of_users(sorted(users))
                if sweep:
                    now = now_ms()
                    horizon = now + int(SWEEP_S * 1000)
                    for pusher_id, at in await self.store.due(await self.store.position(), now, horizon, SWEEP_LIMIT):
                        if at <= now:
                            ids.append(pusher_id)
                        elif pusher_id not in self._timers:
                            self._retry_at(pusher_id, at)  # before the next sweep
                await self._claim_and_enqueue(ids)
            except Exception:  # the database is out of reach: the next sweep finds what was missed
                log.exception("push.dispatch_failed")
                await asyncio.sleep(1.0)

    async def _any_pushers(self, sweep: bool) -> bool:
        """Whether any HTTP pusher exists: while none does, room updates cost no query — the
        table is looked at once a second at most (and at each sweep), and when the first pusher
        appears a sweep picks up what was passed over meanwhile (its cursor is behind)."""
        now = time.monotonic()
        if self._pushers_exist and not sweep:
            return True
        if sweep or now - self._pushers_checked >= 1.0:
            had = self._pushers_exist
            self._pushers_exist = await self.store.any_http()
            self._pushers_checked = now
            if self._pushers_exist and not had and not sweep:
                self._sweep_soon(0.0)
        elif not self._pushers_exist:
            self._sweep_soon(self._pushers_checked + 1.0 - now)  # a pusher added since is not missed
        return self._pushers_exist

    def _sweep_soon(self, delay: float) -> None:
        if self._sweep_timer is not None:
            return

        def fire() -> None:
            self._sweep_timer = None
            self.wakeups.sweep = True
            self.wakeups.event.set()

        self._sweep_timer = asyncio.get_running_loop().call_later(max(0.0, delay), fire)

    async def _sweep_every(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            self.wakeups.sweep = True
            self.wakeups.event.set()
            with contextlib.suppress(Exception):
                PUSH_FAILING.set(await self.store.failing())

    async def _work(self) -> None:
        while not self._stopping:
            item = await self._queue.get()
            if isinstance(item, int) and item < 0:
                return
            pusher_id = item if isinstance(item, int) else item[0].id
            self._queued.discard(pusher_id)
            self._in_flight.add(pusher_id)
            try:
                if isinstance(item, int):
                    await self.run_once(pusher_id)
                elif time.monotonic() - item[1] < self.lease_ms / 2000:
                    await self._deliver(item[0], item[2])
                else:  # queued for half its lease: claimed again (another worker may hold it now)
                    await self.run_once(pusher_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push.pusher_failed", pusher=pusher_id)
                with contextlib.suppress(Exception):
                    await self.store.release(pusher_id, self.owner)
                self._retry_at(pusher_id, now_ms() + 5_000)
            finally:
                self._in_flight.discard(pusher_id)
                if pusher_id in self._again:
                    self._again.discard(pusher_id)
                    self._enqueue([pusher_id])
                PUSH_QUEUE_DEPTH.set(len(self._queued) + len(self._in_flight))

    # -- one pusher ------------------------------------------------------------------------------
    async def run_once(self, pusher_id: int) -> None:
        """Claim the pusher and deliver everything past its cursor (or until a failure)."""
        claimed = await self.store.claim([pusher_id], self.owner, now_ms(), self.lease_ms)
        if not claimed:
            return  # another worker holds it, it is in backoff, or it is gone
        await self._deliver(claimed[0])

    async def _deliver(self, p: Pusher, start: _Start | None = None) -> None:
        """Deliver past the cursor, then release the pusher — unless it was released already
        (backoff), deleted, or lost to another worker. The cursor is committed after each push;
        the last commit of a run releases the lease in the same statement."""
        if start is not None:  # read by the dispatcher with the claim
            pos, badge, first = start.pos, start.badge, start.head
        else:
            pos = self._pos if self._pos > p.last_stream else await self.store.position()
            badge = await self.store.badge(p.user_id)  # once per run: the counts of every push in it
            first = None
        pending: int | None = None  # a 200 whose cursor is not committed yet
        while True:
            after = p.last_stream if pending is None else pending
            batch = first if first is not None else await self.store.notifications(p.user_id, after, pos, BATCH)
            first = None
            evs = await self._events([n.stream for n in batch])
            for n in batch:
                if self._stopping:
                    break  # the rest waits for the next start (or another worker)
                if pending is not None and not await self._advance(p, pending):
                    return
                pending = None
                ev = evs.get(n.stream)
                outcome = Outcome.REFUSED if ev is None else await self._send_event(p, n, ev, badge)
                if outcome is Outcome.REJECTED:
                    return
                if outcome in _RETRY and not await self._failed(p, n.stream, held=outcome is Outcome.HELD):
                    return
                pending = n.stream
            if len(batch) < BATCH or self._stopping:
                break
        if not self._stopping and (pending is not None or p.last_stream < pos):
            pending = pos  # everything for this pusher up to pos is done
        if not self._stopping and badge != p.last_badge:
            if p.last_badge is not None:  # a new pusher only learns the badge: there is nothing to update
                if pending is not None and not await self._advance(p, pending):
                    return
                pending = None
                body = {"counts": {"unread": badge}, "devices": [self._device(p, None)]}
                outcome = await self._send(p, body, None)
                if outcome is Outcome.REJECTED:
                    return
                if outcome in _RETRY and not await self._failed(p, None, held=outcome is Outcome.HELD):
                    return
            p.last_badge = badge
        await self._advance(p, p.last_stream if pending is None else pending, release=True)

    async def _advance(self, p: Pusher, stream: int, *, release: bool = False) -> bool:
        """Commit the cursor (and the lease, or its release) before anything more goes to `p`. The
        cursor commits of pushers answered at the same moment go in one statement (`_flush`): a
        message to 19 pushers made 19 commits."""
        p.last_stream, p.attempts, p.failing_since = stream, 0, None
        move = Advance(p.id, stream, p.last_badge, None if release else now_ms() + self.lease_ms)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._moves.append((move, done))
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush())
        return await done

    async def _flush(self) -> None:
        """Commit the cursors asked for, one batch at a time: what is asked while a batch is being
        written goes in the next (at most one in flight, as a group commit)."""
        try:
            await asyncio.sleep(0)  # the other workers answered at this moment ask too
            while self._moves:
                batch, self._moves = self._moves, []
                try:
                    moved = await self.store.advance(self.owner, [m for m, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for m, done in batch:
                    if not done.done():
                        done.set_result(m.pusher_id in moved)
        finally:
            self._flushing = None

    async def _failed(self, p: Pusher, stream: int | None, *, held: bool = False) -> bool:
        """The head (`stream`, or a badge update) failed — or was `held` back, its gateway being down.
        True if it is given up (24 h failing: the caller passes over it), False when the pusher now
        waits: in backoff, or parked until its gateway answers a probe (an hour at most)."""
        now = now_ms()
        since = p.failing_since if p.failing_since is not None else now
        if now - since >= GIVE_UP_MS:
            PUSH_GIVEN_UP.inc()
            log.warning("push.given_up", pusher=p.id, user=p.user_id, stream=stream, failing_since=since)
            return True
        p.attempts += 1
        p.failing_since = since
        wait = MAX_RETRY_MS + random.randrange(MAX_RETRY_MS // 5) if held else backoff_ms(p.attempts)  # parked: woken
        p.next_attempt_ts = now + wait
        if held:
            self.breaker.park(gateway_of(str(p.data.get("url"))), p.id)
        await self.store.failed(p.id, self.owner, p.last_stream, p.attempts, since, p.next_attempt_ts)
        self._retry_at(p.id, p.next_attempt_ts)
        return False

    # -- one request -----------------------------------------------------------------------------
    def _device(self, p: Pusher, tweaks: dict[str, Any] | None) -> dict[str, Any]:
        device: dict[str, Any] = {
            "app_id": p.app_id,
            "pushkey": p.pushkey,
            "pushkey_ts": p.pushkey_ts // 1000,
            "data": {k: v for k, v in p.data.items() if k != "url"},
        }
        if tweaks is not None:
            device["tweaks"] = tweaks
        return device

    def _facts_of(self, ev: StoredEvent, id_only: bool) -> asyncio.Future[_EventFacts]:
        """What every pusher of `ev` needs from its room, read once per event (and format): the
        room's current state at the keys the payload and the push rules use, the sender's power
        level and the joined-member count. The read starts now (shared by every asker)."""
        return self._facts_cache.start((ev.stream, id_only), lambda: self._read_facts(ev, id_only))

    async def _facts(self, ev: StoredEvent, id_only: bool) -> _EventFacts:
        return await _result(self._facts_of(ev, id_only))

    def _events_of(self, streams: Sequence[int]) -> dict[int, asyncio.Future[dict[int, StoredEvent]]]:
        """The reads of the events at `streams`, started now if not already (the newest
        EVENTS_CACHE positions kept): every pusher of a message asks for the same one."""
        tasks = {st: self._events_cache[st] for st in streams if st in self._events_cache}
        missing = [st for st in streams if st not in tasks]
        if missing:
            task = asyncio.ensure_future(self.store.events_at(missing))
            for st in missing:
                tasks[st] = self._events_cache[st] = task
                task.add_done_callback(lambda t, st=st: _forget_failed(self._events_cache, st, t))  # type: ignore[misc]
            while len(self._events_cache) > EVENTS_CACHE:
                self._events_cache.pop(next(iter(self._events_cache)))
        return tasks

    async def _events(self, streams: Sequence[int]) -> dict[int, StoredEvent]:
        """The events at `streams` (shared reads: `_events_of`)."""
        out: dict[int, StoredEvent] = {}
        for st, t in self._events_of(streams).items():
            found = (await _result(t)).get(st)
            if found is not None:
                out[st] = found
        return out

    async def _prefetch(self, heads: Sequence[tuple[Pusher, list[Notification]]]) -> None:
        """Start what the claimed pushers' first pushes will read — their users' rules, their events,
        then each event's room facts — while the dispatcher goes on, so the workers find them read or
        in flight."""
        firsts = {head[0].stream: self._id_only(p) for p, head in heads if head}
        if not firsts:
            return
        for p, head in heads:
            if head:
                self._rules_of(p.user_id)  # (a user's first push: read with the others, not after)
        evs = await self._events(list(firsts))
        for st, id_only in firsts.items():
            ev = evs.get(st)
            if ev is not None:
                self._facts_of(ev, id_only)

    def _id_only(self, p: Pusher) -> bool:
        return self.config.push_force_event_id_only or p.data.get("format") == "event_id_only"

    async def _read_facts(self, ev: StoredEvent, id_only: bool) -> _EventFacts:
        keys = [("m.room.power_levels", ""), ("m.room.create", "")]
        if not id_only:
            keys += [("m.room.member", ev.sender), ("m.room.name", ""), ("m.room.canonical_alias", "")]
        state, room = await asyncio.gather(self.events.state_for_keys(ev.room_id, keys), self.store.room(ev.room_id))
        pl, create = state.get(("m.room.power_levels", "")), state.get(("m.room.create", ""))
        room_version = get_room_version(room[0]) if room else None
        level = (
            user_level(ev.sender, pl.content if pl else None, create.pdu, room_version)
            if create and room_version
            else 0
        )
        client_event = rules_event(ev)
        return _EventFacts(
            state=state,
            sender_level=int(min(level, 2**53)),
            notify_room_level=notification_level(pl.content if pl else None, "room"),
            joined=room[1] if room else 0,
            client_event=client_event,
            text=event_text(client_event),
            tweaks={},
        )

    async def _send_event(self, p: Pusher, n: Notification, ev: StoredEvent, badge: int) -> Outcome:
        id_only = self._id_only(p)
        facts = await self._facts(ev, id_only)
        rules = await self._rules(p.user_id)
        me = None
        if not id_only or rules.name_matters:  # the display name only matters to the tweaks
            key = ("m.room.member", p.user_id)
            me = (await self.events.state_for_keys(ev.room_id, [key])).get(key)
        tweaks = _tweaks(p.user_id, n.highlight, facts, me, rules)
        high = ev.type == "m.room.encrypted" or tweaks.get("highlight") is True or "sound" in tweaks
        body: dict[str, Any] = {
            "event_id": ev.event_id,
            "room_id": ev.room_id,
            "prio": "high" if high else "low",
            "counts": {"unread": badge},
            "devices": [self._device(p, None if id_only else tweaks)],
        }
        if not id_only:
            body.update(_full_fields(p.user_id, ev, facts.state, include_content=self.config.push_include_content))
        outcome = await self._send(p, body, ev)
        if outcome is Outcome.SENT:
            p.last_badge = badge
        return outcome

    async def _send(self, p: Pusher, notification: dict[str, Any], ev: StoredEvent | None) -> Outcome:
        url = p.data.get("url")
        body = msgspec.json.encode({"notification": notification})
        gateway = ""
        try:
            if not isinstance(url, str):
                raise GatewayRefused("the pusher has no url")
            gateway = gateway_of(url)
            if not self.breaker.admits(gateway, p.id, now_ms()):
                PUSH_FAILED.labels("held").inc()
                return Outcome.HELD
            answer = await self.client.post_json(url, body)
        except GatewayRefused as exc:
            PUSH_REFUSED.inc()
            log.warning("push.refused", pusher=p.id, user=p.user_id, reason=str(exc))
            return Outcome.REFUSED
        except GatewayUnreachable as exc:
            PUSH_FAILED.labels("unreachable").inc()
            log.info("push.unreachable", pusher=p.id, reason=str(exc), attempts=p.attempts)
            self._gateway_failed(gateway, p.id)
            return Outcome.FAILED
        if not 200 <= answer.status < 300:
            PUSH_FAILED.labels(f"http_{answer.status}").inc()
            log.info("push.http_error", pusher=p.id, status=answer.status, attempts=p.attempts)
            if answer.status >= 500 or answer.status == 429:
                self._gateway_failed(gateway, p.id)
            else:  # the gateway is up; this request was wrong (413: too large, …)
                self._gateway_answered(gateway)
            return Outcome.FAILED
        self._gateway_answered(gateway)
        PUSH_SENT.inc()
        if ev is not None:
            PUSH_LATENCY.observe(max(0.0, (now_ms() - ev.origin_server_ts) / 1000))
        try:
            rejected = msgspec.json.decode(answer.body).get("rejected") if answer.body else None
        except (msgspec.DecodeError, AttributeError):
            rejected = None
        if isinstance(rejected, list) and p.pushkey in rejected:
            PUSH_REJECTED.inc()
            log.info("push.rejected", pusher=p.id, user=p.user_id, app_id=p.app_id)
            await self.store.delete(p.id)
            return Outcome.REJECTED
        return Outcome.SENT

    def _rules_of(self, user_id: str) -> asyncio.Future[_Rules]:
        """The user's push rules, compiled, and whether their display name can change which rule's
        tweaks apply to a notification whose highlight is already known: only through a
        `contains_display_name` rule that does not highlight (the default one highlights, and the
        stored highlight decides). Read once (shared by every asker) and kept until a stream update
        names the user."""
        return self._compiled.start(user_id, lambda: self._read_rules(user_id))

    async def _read_rules(self, user_id: str) -> _Rules:
        rules, _ = await self.rules_of(user_id)
        return _Rules(compile_ruleset(rules), _name_matters(rules), rules_template(user_id, rules))

    async def _rules(self, user_id: str) -> _Rules:
        return await _result(self._rules_of(user_id))


class _Rules(NamedTuple):
    compiled: tuple[CompiledRule, ...]
    name_matters: bool  # whether the display name can change which rule's tweaks apply (`_rules_of`)
    template: bytes  # the rules with the user's ID and localpart as placeholders (`rules_template`)


@dataclass(frozen=True, slots=True)
class _Start:
    """What a run starts with when the dispatcher read it: the position, the badge, the first batch."""

    pos: int
    badge: int
    head: list[Notification]


@dataclass(frozen=True, slots=True)
class _EventFacts:
    state: dict[tuple[str, str], StoredEvent]
    sender_level: int
    notify_room_level: int
    joined: int
    client_event: dict[str, Any]  # what the push rules look at
    text: str  # client_event as JSON, lower case: whether it names a recipient
    tweaks: dict[tuple[bytes, str | None], dict[str, Any]]  # rules template, display name → tweaks


class _Shared(Generic[K, V]):
    """Reads shared by every asker: one in flight per key, its result kept (the newest `size` keys), a
    failed or cancelled one forgotten (the next asker reads again)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._futures: dict[K, asyncio.Future[V]] = {}

    def start(self, key: K, read: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        """The read of `key`, started now if it is not kept or in flight."""
        task = self._futures.get(key)
        if task is None:
            while len(self._futures) >= self.size:
                self._futures.pop(next(iter(self._futures)))
            task = self._futures[key] = asyncio.ensure_future(read())
            task.add_done_callback(lambda t: _forget_failed(self._futures, key, t))
        return task

    def forget(self, key: K) -> None:
        self._futures.pop(key, None)


async def _result(task: asyncio.Future[V]) -> V:
    """A shared read's result; an asker that is cancelled does not cancel it for the others."""
    return task.result() if task.done() else await asyncio.shield(task)


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: not logged as never retrieved


def _forget_failed(cache: dict[Any, Any], key: Any, task: asyncio.Future[Any]) -> None:
    """A failed (or cancelled) shared read is not kept: the next asker reads again."""
    if (task.cancelled() or task.exception() is not None) and cache.get(key) is task:
        del cache[key]


def _tweaks(
    user_id: str,
    highlight: bool,
    facts: _EventFacts,
    me: StoredEvent | None,
    rules: _Rules,
) -> dict[str, Any]:
    """The tweaks of the user's matching rule, evaluated now in the room's current state.

    Evaluated once per event and group of recipients the event gets the same result for
    (`recipient_group`, the grouping the send path stores notify/highlight by)."""
    name = me.content.get("displayname") if me else None
    name = name if isinstance(name, str) else None
    group = recipient_group(user_id, rules.template, name, facts.client_event, facts.text)
    found = None if group is None else facts.tweaks.get(group)
    if found is None:
        ctx = PushContext(
            user_id=user_id,
            user_display_name=name,
            room_member_count=facts.joined,
            sender_power_level=facts.sender_level,
            notification_power_levels={"room": facts.notify_room_level},
        )
        found = action_tweaks(evaluate(facts.client_event, rules.compiled, ctx))
        if group is not None:
            facts.tweaks[group] = found
    tweaks = dict(found)
    if highlight:
        tweaks["highlight"] = True
    elif tweaks.get("highlight") is True:
        del tweaks["highlight"]  # what was stored when the event was sent decides
    return tweaks


def _name_matters(rules: dict[str, Any]) -> bool:
    scope = rules.get("global", rules)
    for kind_rules in scope.values() if isinstance(scope, dict) else ():
        for rule in kind_rules if isinstance(kind_rules, list) else ():
            if not isinstance(rule, dict) or rule.get("enabled") is False:
                continue
            conditions = rule.get("conditions") or ()
            if not any(isinstance(c, dict) and c.get("kind") == "contains_display_name" for c in conditions):
                continue
            tweaks = action_tweaks(rule.get("actions") if isinstance(rule.get("actions"), list) else [])
            if tweaks.get("highlight") is not True:
                return True
    return False


def _full_fields(
    user_id: str, ev: StoredEvent, state: dict[tuple[str, str], StoredEvent], *, include_content: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": ev.type, "sender": ev.sender}
    sender = state.get(("m.room.member", ev.sender))
    if sender is not None and isinstance(sender.content.get("displayname"), str):
        out["sender_display_name"] = sender.content["displayname"]
    name = state.get(("m.room.name", ""))
    if name is not None and isinstance(name.content.get("name"), str) and name.content["name"]:
        out["room_name"] = name.content["name"]
    alias = state.get(("m.room.canonical_alias", ""))
    if alias is not None and isinstance(alias.content.get("alias"), str):
        out["room_alias"] = alias.content["alias"]
    if ev.type == "m.room.member":
        out["user_is_target"] = ev.state_key == user_id
        if isinstance(ev.content.get("membership"), str):
            out["membership"] = ev.content["membership"]
    if include_content:
        out["content"] = ev.content
    return out
