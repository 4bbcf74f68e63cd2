"""The workloads. Each one talks to one server through the Client-Server API only and returns a
dict of figures (plus raw latency samples for the plot). Every loop is bounded in count and time."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import brotli
import zstandard

from bench import memory
from bench import names
from bench.client import COUNTERS, Client, bounded_gather, new_session, ss_timeline_events, timeline_events
from bench.gateway import Gateway
from bench.servers import PaighamServer, Server, proc_status_mb

now = time.perf_counter


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def summary(xs: list[float]) -> dict[str, float]:
    """Latency summary in milliseconds."""
    return {"n": len(xs), "p50_ms": pct(xs, 50) * 1000, "p95_ms": pct(xs, 95) * 1000,
            "p99_ms": pct(xs, 99) * 1000, "max_ms": (max(xs) if xs else float("nan")) * 1000}


def loadavg() -> float:
    return float(open("/proc/loadavg").read().split()[0])


@dataclass
class Scale:
    """Workload sizes; `quick()` is a smoke-test size."""

    latency_messages: int = 200
    tp_rooms: int = 5
    tp_members: int = 20
    tp_syncing: int = 4
    tp_duration_s: float = 20.0
    tp_max_per_sender: int = 1000
    fanout_members: int = 500
    fanout_syncing: int = 50
    fanout_messages: int = 50
    is_rooms: int = 200
    is_messages_per_room: int = 5
    is_repeats: int = 5
    idle_connections: int = 5000
    idle_hold_s: float = 10.0
    idle_latency_messages: int = 30
    ss_rooms: int = 200
    ss_messages_per_member: int = 2
    ss_first_window: int = 20
    ss_batch: int = 100
    ss_repeats: int = 10
    ss_idle_connections: int = 5000
    ss_idle_hold_s: float = 10.0
    ss_idle_timeout_ms: int = 600_000  # longer than the measurement: no long-poll is answered during it
    push_drain_s: float = 300.0  # after the load, wait at most this long for the pushes still owed
    push_idle_stop_s: float = 30.0  # ... or until the gateway has heard nothing new for this long
    ps_interval_s: float = 1.25  # push at a fixed rate: one message into each throughput room this often
    ps_duration_s: float = 30.0
    ps_drain_s: float = 60.0
    pd_users: int = 250  # gateway down: users, each with pd_pushers_per_user pushers (10,000)
    pd_pushers_per_user: int = 40
    pd_room_size: int = 10
    pd_duration_s: float = 30.0
    pd_interval_s: float = 2.0  # one message into each room this often
    pd_tail_s: float = 15.0  # measured on after the messages stop
    de_users: int = 100  # delayed events: users, each scheduling de_per_user (10,000 pending)
    de_per_user: int = 100  # (Paigham's default per-user limit is 100)
    de_room_size: int = 10
    de_delay_ms: int = 3_600_000  # long: none fires during the measurement
    de_idle_s: float = 10.0  # CPU measured this long with them all pending
    de_restarts: int = 500  # heartbeats ("restart") timed
    mr_rooms: int = 1000  # many rooms: one user in this many rooms (one message each)
    mr_setup_concurrency: int = 6  # room creations and sends in flight while setting up
    mr_repeats: int = 3  # initial syncs (new devices) and full_state syncs timed
    mr_incremental: int = 20  # incremental syncs timed, each after one message in one room
    lr_members: int = 10_000  # large room: members, on both servers and both engines
    lr_members_pg_paigham: int = 50_000  # then, on PostgreSQL, Paigham's room grown to this (Paigham only)
    lr_syncing: int = 300  # of them long-polling /sync (lazy-loading members)
    lr_messages: int = 30  # sent one at a time, each once every receiver has the one before
    lr_join_concurrency: int = 8  # set-up joins in flight at once
    lr_repeats: int = 5  # /members, /joined_members, lazy-loaded initial syncs timed this often
    lr_storm_joins: int = 2000  # join storm: this many new members ...
    lr_storm_s: float = 60.0  # ... offered at an even pace over this long
    lr_storm_max_in_flight: int = 64  # (a join waits when this many are unanswered)
    lr_storm_drain_s: float = 60.0  # joins not yet sent this long after the storm's last offer are dropped
    lr_quiet_s: float = 20.0  # the small room's latency measured this long without the storm first
    lr_seq_joins: int = 30  # one-at-a-time joins timed into a small room and into the large one
    dir_officials: int = 100_000  # directory: officials imported with `paigham org import` ...
    dir_accounts: int = 100_000  # ... and plain accounts with `paigham user import`
    dir_searchers: int = 20
    dir_keystroke_s: float = 0.15  # typing: one search per keystroke, this long after the previous answer
    dir_duration_s: float = 30.0
    dir_warmup_s: float = 5.0  # typing first, not recorded: a running server's connections and plans are warm
    dir_saturation_s: float = 10.0  # then the same searchers without a pause (the server's capacity)
    dir_burst_rounds: int = 10  # then every searcher's first two letters sent in the same tick, this many times

    @classmethod
    def quick(cls) -> Scale:
        return cls(latency_messages=20, tp_rooms=2, tp_members=5, tp_syncing=2, tp_duration_s=3,
                   fanout_members=30, fanout_syncing=5, fanout_messages=5, is_rooms=10, is_messages_per_room=2,
                   is_repeats=2, idle_connections=200, idle_hold_s=2, idle_latency_messages=5,
                   ss_rooms=12, ss_first_window=5, ss_batch=5, ss_repeats=3, ss_idle_connections=200,
                   ss_idle_hold_s=2, push_drain_s=60, push_idle_stop_s=10, ps_duration_s=3, ps_drain_s=20,
                   pd_users=20, pd_pushers_per_user=10, pd_room_size=5, pd_duration_s=6, pd_tail_s=3, de_users=5,
                   de_per_user=10, de_room_size=5, de_idle_s=2, de_restarts=20, mr_rooms=30, mr_repeats=2,
                   mr_incremental=5,
                   lr_members=60,
                   lr_members_pg_paigham=150, lr_syncing=10, lr_messages=5, lr_repeats=2, lr_storm_joins=40,
                   lr_storm_s=4, lr_storm_drain_s=10, lr_quiet_s=3, lr_seq_joins=5, dir_officials=2000,
                   dir_accounts=2000, dir_duration_s=4, dir_saturation_s=2, dir_warmup_s=1, dir_burst_rounds=2)


@dataclass
class Run:
    server: Server
    http: aiohttp.ClientSession
    scale: Scale
    results: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    log: Callable[[str], None] = print
    # Called when a workload's measured window opens; returns what to call when it closes (profiling).
    # (Its argument: the part of the workload being measured, `part`, "" for a workload in one part.)
    window_hook: Callable[[str], Callable[[], None] | None] | None = None
    part: str = ""
    _closer: Callable[[], None] | None = None
    _depth: int = 0  # windows nest: an inner open/close (closed_loop's) leaves the outer one open

    @property
    def measuring(self) -> bool:
        """Whether a measured window is open (the memory samples taken then are the workload's steady state)."""
        return self._depth > 0

    def window_open(self) -> None:
        self._depth += 1
        if self._depth == 1:
            self._closer = self.window_hook(self.part) if self.window_hook else None

    def window_close(self, force: bool = False) -> None:
        self._depth = 0 if force else max(0, self._depth - 1)
        if self._depth == 0 and self._closer is not None:
            self._closer()
            self._closer = None

    def client(self) -> Client:
        return Client(self.http, self.server.base_url)

    async def users(self, prefix: str, n: int) -> list[Client]:
        out = [self.client() for _ in range(n)]
        await bounded_gather(8, [c.register(self.server.secret, f"{prefix}{i}", f"pw-{prefix}{i}")
                                 for i, c in enumerate(out)])
        return out

    def cpu(self) -> float:
        return self.server.cpu_seconds()


class Receiver:
    """One user's /sync long-poll loop: records when each tracked message body arrives."""

    def __init__(self, client: Client, since: str, sent_at: dict[str, float], flt: str | None = None,
                 timeout_ms: int = 30_000) -> None:
        self.client = client
        self.since = since
        self.sent_at = sent_at
        self.flt = flt
        self.timeout_ms = timeout_ms
        self.latencies: dict[str, float] = {}
        self.limited = 0
        self.syncs = 0
        self.listeners: list[Callable[[str], None]] = []
        self.task: asyncio.Task[None] | None = None

    async def poll(self) -> list[tuple[str, dict[str, Any], bool]]:
        """One long-poll; returns its timeline events and moves the position on."""
        kwargs: dict[str, Any] = {} if self.flt is None else {"flt": self.flt}
        body = await self.client.sync(self.since, timeout_ms=self.timeout_ms, **kwargs)
        self.since = body["next_batch"]
        return timeline_events(body)

    async def run(self) -> None:
        while True:
            events = await self.poll()
            t = now()
            self.syncs += 1
            for _, ev, limited in events:
                self.limited += limited
                text = ev.get("content", {}).get("body")
                if isinstance(text, str) and text in self.sent_at and text not in self.latencies:
                    self.latencies[text] = t - self.sent_at[text]
                    for fn in self.listeners:
                        fn(text)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def first_since(c: Client, flt: str | None = None) -> str:
    kwargs: dict[str, Any] = {} if flt is None else {"flt": flt}
    body = await c.sync(**kwargs)
    # Catch up with what the first sync itself caused (presence going online), so the next
    # long-poll waits for real news.
    body = await c.sync(body["next_batch"], **kwargs)
    return str(body["next_batch"])


# -- one sender at a time ------------------------------------------------------------------------
async def one_receiver(b: Client) -> tuple[Receiver, dict[str, float], dict[str, asyncio.Event]]:
    """B's long-poll, started: (the receiver, when each body was sent, an event per body set on arrival)."""
    sent_at: dict[str, float] = {}
    rx = Receiver(b, await first_since(b), sent_at)
    arrived: dict[str, asyncio.Event] = {}
    rx.listeners.append(lambda text: arrived[text].set() if text in arrived else None)
    rx.start()
    await asyncio.sleep(0.2)
    return rx, sent_at, arrived


async def one_sender(run: Run, n: int, key: str, pair: tuple[Client, Client, str] | None = None) -> dict[str, Any]:
    """A sends, B's long-polling /sync receives; the next message goes once B has it."""
    if pair is None:
        a, b = await run.users(f"{key}_", 2)
        room = await a.create_room()
        await b.join(room)
    else:
        a, b, room = pair
    rx, sent_at, arrived = await one_receiver(b)
    send_lat: list[float] = []
    run.window_open()
    cpu0 = run.cpu()
    deadline = time.monotonic() + 600
    try:
        for i in range(n):
            if time.monotonic() > deadline:
                break
            text = f"{key}-{i}-{time.time_ns()}"
            arrived[text] = asyncio.Event()
            t0 = now()
            sent_at[text] = t0
            await a.send(room, text)
            send_lat.append(now() - t0)
            await asyncio.wait_for(arrived[text].wait(), 60)
            await asyncio.sleep(0.02)  # B's next long-poll is parked before the next send
    finally:
        cpu = run.cpu() - cpu0
        run.window_close()
        await rx.stop()
    deliver = list(rx.latencies.values())
    run.samples[f"{key}_send"] = send_lat
    run.samples[f"{key}_delivery"] = deliver
    return {"messages": len(send_lat), "send": summary(send_lat), "delivery": summary(deliver),
            "cpu_ms_per_message": cpu / max(1, len(send_lat)) * 1000, "pair": (a, b, room)}


async def w_latency(run: Run) -> dict[str, Any]:
    out = await one_sender(run, run.scale.latency_messages, "latency")
    run.results["_pair"] = out.pop("pair")
    return out


# -- many concurrent senders ------------------------------------------------------------------------
async def load_rooms(run: Run, prefix: str) -> tuple[list[Client], list[str], list[Client]]:
    """The throughput set-up: `tp_rooms` rooms of `tp_members` users; the first `tp_syncing` of each room sync."""
    s = run.scale
    users = await run.users(prefix, s.tp_rooms * s.tp_members)
    rooms = [await users[r * s.tp_members].create_room() for r in range(s.tp_rooms)]
    await bounded_gather(8, [users[r * s.tp_members + k].join(rooms[r])
                             for r in range(s.tp_rooms) for k in range(1, s.tp_members)])
    syncers = [users[r * s.tp_members + k] for r in range(s.tp_rooms) for k in range(s.tp_syncing)]
    return users, rooms, syncers


async def closed_loop(run: Run, users: list[Client], rooms: list[str], receivers: list[Receiver],
                      sent_at: dict[str, float], key: str, tag: str,
                      event_ids: dict[str, str] | None = None) -> dict[str, Any]:
    """All members send in a closed loop for `tp_duration_s` while `receivers` long-poll; see w_throughput.
    Samples go under `<key>_send` and `<key>_delivery`; message bodies are `<tag>-<sender>-<n>`
    (with `event_ids`, each body's event ID is recorded there)."""
    s = run.scale
    for rx in receivers:
        rx.start()
    await asyncio.sleep(1)
    send_lat: list[float] = []
    acked = 0
    stop_at = time.monotonic() + s.tp_duration_s
    run.window_open()
    t_start = now()
    cpu0 = run.cpu()
    gen0 = time.process_time()
    last_ack = t_start

    async def sender(i: int, c: Client) -> None:
        nonlocal acked, last_ack
        room = rooms[i // s.tp_members]
        for n in range(s.tp_max_per_sender):
            if time.monotonic() >= stop_at:
                return
            text = f"{tag}-{i}-{n}"
            t0 = now()
            sent_at[text] = t0
            event_id = await c.send(room, text)
            last_ack = now()
            if event_ids is not None:
                event_ids[text] = event_id
            send_lat.append(last_ack - t0)
            acked += 1

    await asyncio.gather(*(sender(i, c) for i, c in enumerate(users)))
    expected = acked * s.tp_syncing
    deadline = time.monotonic() + 60
    while sum(len(rx.latencies) for rx in receivers) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    t_done = now()
    cpu = run.cpu() - cpu0
    gen_cpu = time.process_time() - gen0
    run.window_close()
    for rx in receivers:
        await rx.stop()
    deliveries = [lat for rx in receivers for lat in rx.latencies.values()]
    run.samples[f"{key}_send"] = send_lat
    run.samples[f"{key}_delivery"] = deliveries
    return {
        "senders": len(users), "rooms": s.tp_rooms, "members_per_room": s.tp_members,
        "syncing": len(receivers), "messages": acked,
        "messages_per_s": acked / (last_ack - t_start),
        "cpu_ms_per_message": cpu / max(1, acked) * 1000,
        "server_cpu_util": cpu / (t_done - t_start),
        "loadgen_cpu_util": gen_cpu / (t_done - t_start),
        "send": summary(send_lat), "delivery": summary(deliveries),
        "deliveries_missing": expected - len(deliveries), "limited_timelines": sum(rx.limited for rx in receivers),
    }


async def w_throughput(run: Run) -> dict[str, Any]:
    users, rooms, syncers = await load_rooms(run, "tp_")
    sent_at: dict[str, float] = {}
    sinces = await bounded_gather(10, [first_since(c) for c in syncers])
    receivers = [Receiver(c, since, sent_at) for c, since in zip(syncers, sinces, strict=True)]
    return await closed_loop(run, users, rooms, receivers, sent_at, "throughput", "tp")


# -- fan-out into a big room -----------------------------------------------------------------------
FANOUT_FILTER = json.dumps({"room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": True}}})


async def w_fanout(run: Run) -> dict[str, Any]:
    s = run.scale
    pool: list[Client] = run.results["_pool"]
    members = pool[: s.fanout_members]
    sender = members[0]
    room = await sender.create_room()
    t0 = now()
    await bounded_gather(4, [m.join(room) for m in members[1:]])
    join_s = now() - t0
    syncers = members[1 : 1 + s.fanout_syncing]
    sent_at: dict[str, float] = {}
    sinces = await bounded_gather(10, [first_since(c, FANOUT_FILTER) for c in syncers])
    receivers = [Receiver(c, since, sent_at, FANOUT_FILTER) for c, since in zip(syncers, sinces, strict=True)]
    out = await one_at_a_time(run, room, sender, receivers, sent_at, s.fanout_messages, "fanout")
    return {"members": len(members), "join_all_s": join_s, **out}


async def one_at_a_time(run: Run, room: str, sender: Client, receivers: list[Receiver], sent_at: dict[str, float],
                        n: int, key: str, part: str = "") -> dict[str, Any]:
    """`n` messages into the room, one at a time, each once every receiver has the one before (after one
    unmeasured warm-up message): send and delivery latency (every (message, receiver) pair, samples under
    `<key>_delivery`), time until the last receiver, server CPU per message."""
    counts: dict[str, int] = {}
    done: dict[str, asyncio.Event] = {}

    def seen(text: str) -> None:
        counts[text] = counts.get(text, 0) + 1
        if counts[text] == len(receivers) and text in done:
            done[text].set()

    for rx in receivers:
        rx.listeners.append(seen)
        rx.start()
    await asyncio.sleep(1)
    # One message first, not measured: the first after the set-up pays one-time costs on either server
    # (caches filled, statements prepared, code run for the first time). Unmeasured, one such message
    # decided a whole run's p99 (its 300 deliveries were 3 % of the 9,000 samples; session 20).
    warm = f"{key}-warm-up-{time.time_ns()}"
    done[warm] = asyncio.Event()
    sent_at[warm] = now()
    await sender.send(room, warm)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done[warm].wait(), 120)
    for rx in receivers:
        rx.latencies.pop(warm, None)
    del sent_at[warm]
    last: list[float] = []
    send_lat: list[float] = []
    run.part = part
    run.window_open()
    cpu0 = run.cpu()
    try:
        for m in range(n):
            text = f"{key}-{m}-{time.time_ns()}"
            done[text] = asyncio.Event()
            t = now()
            sent_at[text] = t
            await sender.send(room, text)
            send_lat.append(now() - t)
            try:
                await asyncio.wait_for(done[text].wait(), 120)
            except TimeoutError:
                run.log(f"  {key} message {m}: only {counts.get(text, 0)} of {len(receivers)} received in 120 s")
            last.append(now() - t)
            await asyncio.sleep(0.1)
        cpu = run.cpu() - cpu0
    finally:
        run.window_close()
        for rx in receivers:
            await rx.stop()
    deliveries = [lat for rx in receivers for lat in rx.latencies.values()]
    run.samples[f"{key}_delivery"] = deliveries
    return {"syncing": len(receivers), "messages": len(last), "send": summary(send_lat),
            "delivery": summary(deliveries), "last_receiver": summary(last),
            "cpu_ms_per_message": cpu / max(1, len(last)) * 1000,
            "deliveries_missing": len(last) * len(receivers) - len(deliveries)}


# -- initial sync of a user in many rooms -------------------------------------------------------------
IS_FILTER = json.dumps({"room": {"timeline": {"limit": 10}}})


async def w_initial_sync(run: Run) -> dict[str, Any]:
    s = run.scale
    heavy, peer = await run.users("is_", 2)
    t0 = now()
    rooms = await bounded_gather(4, [heavy.create_room(name=f"room {i}") for i in range(s.is_rooms)])
    await bounded_gather(8, [peer.join(r) for r in rooms])
    await bounded_gather(8, [heavy.send(r, f"message {k} in {r}")
                             for r in rooms for k in range(s.is_messages_per_room)])
    setup_s = now() - t0
    times: list[float] = []
    sizes: list[int] = []
    cpu_total = 0.0
    # New devices (logged in first: password hashing is not what is measured): nothing cached for them.
    devices = [await heavy.login("is_0", "pw-is_0") for _ in range(s.is_repeats)]
    await asyncio.sleep(1)
    run.window_open()
    for device in devices:
        await asyncio.sleep(0.5)
        cpu0 = run.cpu()
        t = now()
        body = await device.sync(flt=IS_FILTER)
        times.append(now() - t)
        cpu_total += run.cpu() - cpu0
        joined = body.get("rooms", {}).get("join", {})
        if len(joined) != s.is_rooms:
            raise AssertionError(f"initial sync returned {len(joined)} rooms, expected {s.is_rooms}")
        sizes.append(len(json.dumps(body)))
    run.window_close()
    run.samples["initial_sync"] = times
    # Slow links: the bytes of this initial sync and of an incremental one (a message in one room), as sent
    # (Accept-Encoding: identity; both servers run uncompressed) and compressed as Paigham's
    # api/compression.py does (same libraries and levels), with the CPU each compression takes.
    device = devices[-1]
    raw_initial = await _raw_get(device, "/_matrix/client/v3/sync", {"filter": IS_FILTER, "timeout": "0"})
    await peer.send(rooms[0], "one more message, as a typical incremental sync carries")
    since = json.loads(raw_initial)["next_batch"]
    raw_incremental = await _raw_get(device, "/_matrix/client/v3/sync",
                                     {"filter": IS_FILTER, "timeout": "0", "since": since})
    return {"rooms": s.is_rooms, "messages_per_room": s.is_messages_per_room, "setup_s": setup_s,
            "median_s": pct(times, 50), "min_s": min(times), "max_s": max(times),
            "cpu_s": cpu_total / len(times), "response_bytes": int(sum(sizes) / len(sizes)),
            "slow_links": {"initial": compressed_sizes(raw_initial), "incremental": compressed_sizes(raw_incremental)}}


async def _raw_get(client: Client, path: str, params: dict[str, str]) -> bytes:
    """A GET's body exactly as the server sent it (no decompression asked for)."""
    headers = {"Authorization": f"Bearer {client.token}", "Accept-Encoding": "identity"}
    async with client.http.get(client.base + path, params=params, headers=headers) as r:
        r.raise_for_status()
        return await r.read()


# Paigham's codings and levels (src/paigham/api/compression.py), to size and time each body the same way.
CODECS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": zstandard.ZstdCompressor(level=3).compress,
    "br": lambda b: bytes(brotli.compress(b, quality=4)),
    "gzip": lambda b: gzip.compress(b, compresslevel=5, mtime=0),
}


def compressed_sizes(body: bytes, repeats: int = 20) -> dict[str, float]:
    out: dict[str, float] = {"raw_bytes": len(body)}
    for name, fn in CODECS.items():
        t = time.process_time()
        for _ in range(repeats):
            data = fn(body)
        out[f"{name}_bytes"] = len(data)
        out[f"{name}_cpu_ms"] = (time.process_time() - t) / repeats * 1000
    return out


# -- one user in many rooms -----------------------------------------------------------------------------
MR_FILTER = json.dumps({"room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": True}}})


async def _sync_measured(run: Run, client: Client, **kw: Any) -> tuple[dict[str, Any], float, float, float]:
    """One /sync: its body, wall time, server CPU and the server's RSS growth while it ran (the peak,
    from VmHWM reset just before where the kernel allows it, and from samples every 10 ms)."""
    srv = run.server
    reset = True
    for pid in srv.pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as fh:
                fh.write("5")  # VmHWM := VmRSS
        except OSError:
            reset = False
    rss0 = peak = srv.rss_mb()
    task = asyncio.create_task(client.sync(**kw))
    cpu0, t = run.cpu(), now()
    while not task.done():
        peak = max(peak, srv.rss_mb())
        await asyncio.wait([task], timeout=0.01)
    wall, cpu = now() - t, run.cpu() - cpu0
    if reset:  # else VmHWM is the process's lifetime peak, not this request's
        peak = max(peak, srv.peak_rss_mb())
    return task.result(), wall, cpu, max(0.0, peak - rss0)


async def _one_change_syncs(device: Client, peer: Client, room: str, since: str, n: int) -> tuple[list[float], str]:
    """`n` times: the peer says one thing in `room`, then `device` syncs from `since` (timed; it must get
    that room alone, with that message). The times, and where the device stands at the end."""
    times: list[float] = []
    for k in range(n):
        text = f"one change {k} at {now()}"
        await peer.send(room, text)
        t = now()
        body = await device.sync(since, flt=MR_FILTER)
        times.append(now() - t)
        since = body["next_batch"]
        got = [ev.get("content", {}).get("body") for _, ev, _ in timeline_events(body)]
        if text not in got or len(body.get("rooms", {}).get("join", {})) != 1:
            raise AssertionError(f"incremental sync: expected only {room} with {text!r}, got {got}")
    return times, since


async def w_many_rooms(run: Run) -> dict[str, Any]:
    """One user in `mr_rooms` rooms (issue #18): initial sync (time, CPU, RSS growth, bytes), an incremental
    sync after one message in one room (also timed earlier, when the user was in 10 rooms: the difference is
    what the other rooms cost), and a full_state sync; filter: timeline 10, lazy-loaded members."""
    s = run.scale
    heavy, peer = await run.users("mr_", 2)
    few = min(10, s.mr_rooms)

    async def make_rooms(first: int, count: int) -> list[str]:
        made = await bounded_gather(s.mr_setup_concurrency, [heavy.create_room(name=f"room {i}")
                                                             for i in range(first, first + count)])
        await bounded_gather(s.mr_setup_concurrency, [heavy.send(r, f"welcome to {r}") for r in made])
        return list(made)

    t0 = now()
    rooms = await make_rooms(0, few)
    busy = rooms[0]
    await peer.join(busy)
    setup_s = now() - t0
    watcher = await heavy.login("mr_0", "pw-mr_0")
    since = await first_since(watcher, MR_FILTER)
    run.window_open()
    incremental_few, since = await _one_change_syncs(watcher, peer, busy, since, s.mr_incremental)
    run.window_close()
    t1 = now()
    rooms += await make_rooms(few, s.mr_rooms - few)
    setup_s += now() - t1
    run.log(f"  many_rooms: {s.mr_rooms} rooms set up in {setup_s:.1f} s")
    devices = [await heavy.login("mr_0", "pw-mr_0") for _ in range(s.mr_repeats)]
    await asyncio.sleep(1)
    run.window_open()
    initial: list[float] = []
    initial_cpu: list[float] = []
    initial_rss: list[float] = []
    sizes: list[int] = []
    for device in devices:
        await asyncio.sleep(0.5)
        body, wall, cpu, grew = await _sync_measured(run, device, flt=MR_FILTER)
        if len(body.get("rooms", {}).get("join", {})) != s.mr_rooms:
            raise AssertionError(f"initial sync returned {len(body['rooms']['join'])} rooms, expected {s.mr_rooms}")
        initial.append(wall)
        initial_cpu.append(cpu)
        initial_rss.append(grew)
        sizes.append(len(json.dumps(body)))
    # The watcher catches up (the new rooms), then the same one-change syncs in all the rooms.
    caught = await watcher.sync(since, flt=MR_FILTER)
    since = str((await watcher.sync(caught["next_batch"], flt=MR_FILTER))["next_batch"])
    cpu0 = run.cpu()
    incremental, since = await _one_change_syncs(watcher, peer, busy, since, s.mr_incremental)
    incremental_cpu_ms = (run.cpu() - cpu0) / s.mr_incremental * 1000  # the send and the sync
    # full_state from an up-to-date token: every room's whole state, no history (nothing new).
    full: list[float] = []
    full_cpu: list[float] = []
    full_bytes: list[int] = []
    for _ in range(s.mr_repeats):
        body, wall, cpu, _grew = await _sync_measured(run, watcher, since=since, flt=MR_FILTER, full_state=True)
        if len(body.get("rooms", {}).get("join", {})) != s.mr_rooms:
            raise AssertionError(f"full_state sync returned {len(body['rooms']['join'])} rooms")
        full.append(wall)
        full_cpu.append(cpu)
        full_bytes.append(len(json.dumps(body)))
    run.window_close()
    run.samples["many_rooms_initial"] = initial
    run.samples["many_rooms_incremental"] = incremental
    run.samples["many_rooms_full_state"] = full
    return {"rooms": s.mr_rooms, "setup_s": setup_s,
            "initial": {"median_s": pct(initial, 50), "min_s": min(initial), "max_s": max(initial),
                        "cpu_s": pct(initial_cpu, 50), "rss_growth_mb": max(initial_rss),
                        "rss_growth_median_mb": pct(initial_rss, 50), "response_bytes": int(pct(sizes, 50))},
            "incremental": {**summary(incremental), "cpu_ms_round": incremental_cpu_ms},
            "incremental_few_rooms": {"rooms": few, **summary(incremental_few)},
            "full_state": {"median_s": pct(full, 50), "max_s": max(full), "cpu_s": pct(full_cpu, 50),
                           "response_bytes": int(pct(full_bytes, 50))}}


# -- many idle long-polls ------------------------------------------------------------------------------
async def w_idle_syncs(run: Run) -> dict[str, Any]:
    s = run.scale
    pool: list[Client] = run.results["_pool"]
    per_user = max(1, s.idle_connections // len(pool))
    sinces = await bounded_gather(20, [first_since(c) for c in pool])
    await asyncio.sleep(2)
    rss_before = run.server.rss_mb()
    sockets_before = run.server.sockets()
    http = new_session(limit=0)
    early = 0
    errors = 0
    inflight = 0  # long-polls sent and not yet answered: what the server is holding

    async def hold(c: Client, since: str) -> None:
        nonlocal early, errors, inflight
        mine = Client(http, c.base, c.token, c.user_id)
        for _ in range(100):
            inflight += 1
            try:
                body = await mine.sync(since, timeout_ms=58_000)
                since = body["next_batch"]
                early += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                errors += 1
                await asyncio.sleep(1)
            finally:
                inflight -= 1

    tasks: list[asyncio.Task[None]] = []
    t0 = now()
    try:
        for i in range(s.idle_connections):
            u = i // per_user % len(pool)
            tasks.append(asyncio.create_task(hold(pool[u], sinces[u])))
            if i % 200 == 199:
                await asyncio.sleep(0.2)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if inflight >= s.idle_connections and run.server.sockets() >= s.idle_connections:
                break
            await asyncio.sleep(0.25)
        open_s = now() - t0
        settle_deadline = time.monotonic() + 30  # until the server has answered the first round
        while time.monotonic() < settle_deadline and await _cpu_util(run.server, 1) > 0.05:
            pass
        cpu0 = run.cpu()
        t1 = now()
        await asyncio.sleep(s.idle_hold_s)
        idle_cpu = (run.cpu() - cpu0) / (now() - t1)
        rss_held = run.server.rss_mb()
        # Held = requests in flight (sent, unanswered) that the server holds open; its socket count is
        # a cross-check (idle keep-alive sockets it closed meanwhile make the difference inexact).
        held = inflight
        server_sockets = run.server.sockets()
        lat = await one_sender(run, s.idle_latency_messages, "idle_latency", run.results.get("_pair"))
        lat.pop("pair", None)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.close()
    await asyncio.sleep(3)
    return {"connections": s.idle_connections, "held": held, "server_sockets": server_sockets,
            "server_sockets_before": sockets_before, "open_s": open_s, "rss_before_mb": rss_before,
            "rss_held_mb": rss_held, "kb_per_connection": (rss_held - rss_before) * 1024 / max(1, held),
            "idle_cpu_util": idle_cpu, "early_returns": early, "errors": errors,
            "delivery_with_idle": lat["delivery"], "send_with_idle": lat["send"]}


# -- Simplified Sliding Sync (MSC4186), as Element X speaks it ----------------------------------------
# The room-list connection's required_state: the 17 pairs of matrix-rust-sdk's room list service
# (DEFAULT_REQUIRED_STATE; /work/shared/research/element-x.md §2).
SS_REQUIRED_STATE: list[list[str]] = [
    ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"],
    ["m.room.topic", ""], ["m.room.avatar", ""], ["m.room.canonical_alias", ""], ["m.room.power_levels", ""],
    ["org.matrix.msc3401.call.member", "*"], ["m.room.join_rules", ""], ["m.room.tombstone", ""],
    ["m.room.create", ""], ["m.room.history_visibility", ""], ["io.element.functional_members", ""],
    ["m.space.parent", "*"], ["m.space.child", "*"], ["org.matrix.msc3672.beacon_info", "*"],
]
SS_EXTENSIONS: dict[str, Any] = {"account_data": {"enabled": True}, "receipts": {"enabled": True, "rooms": ["*"]},
                                 "typing": {"enabled": True}}


def room_list_body(last: int, conn_id: str = "room-list", opened: tuple[str, ...] = ()) -> dict[str, Any]:
    """Element X's room-list request: list `all_rooms` over [0, last] (timeline 1, the 17 state pairs);
    each of `opened` as a room subscription, as for a room open on screen (timeline 20, plus pinned events)."""
    body: dict[str, Any] = {
        "conn_id": conn_id,
        "lists": {"all_rooms": {"ranges": [[0, last]], "timeline_limit": 1, "required_state": SS_REQUIRED_STATE,
                                "filters": {}}},
        "extensions": SS_EXTENSIONS,
    }
    if opened:
        sub = {"timeline_limit": 20, "required_state": [*SS_REQUIRED_STATE, ["m.room.pinned_events", ""]]}
        body["room_subscriptions"] = {room: sub for room in opened}
    return body


def growing_ranges(rooms: int, first: int, batch: int) -> list[int]:
    """The list's last index in each request while Element X loads its room list: [0, first-1] (the
    selective start), then growing by `batch` ([0,99], [0,199], ...) until the window covers every room."""
    ends = [first - 1]
    e = batch - 1
    while ends[-1] < rooms - 1:
        if e > ends[-1]:
            ends.append(min(e, rooms - 1))
        e += batch
    return ends


class SlidingReceiver(Receiver):
    """A Receiver long-polling sliding sync on one connection (`since` holds the `pos`)."""

    def __init__(self, client: Client, pos: str, sent_at: dict[str, float], body: dict[str, Any],
                 timeout_ms: int = 30_000) -> None:
        super().__init__(client, pos, sent_at, timeout_ms=timeout_ms)
        self.body = body

    async def poll(self) -> list[tuple[str, dict[str, Any], bool]]:
        out = await self.client.ss_sync(self.body, self.since, self.timeout_ms)
        self.since = str(out["pos"])
        return ss_timeline_events(out)


async def first_pos(c: Client, body: dict[str, Any]) -> str:
    """Open a connection (no pos: answered at once), then catch up once, so the next long-poll waits for news."""
    out = await c.ss_sync(body)
    out = await c.ss_sync(body, str(out["pos"]))
    return str(out["pos"])


async def _ss_room_list(run: Run) -> dict[str, Any]:
    """Element X's first screen: a user in `ss_rooms` rooms opens a fresh room-list connection and grows
    the window until every room is loaded (timeout=0 throughout, as the SDK does while the list grows)."""
    s = run.scale
    heavy, *peers = await run.users("ssl_", 4)
    t0 = now()
    # Every third room unnamed (a DM-like room: its name comes from heroes), 2 or 3 other members in each.
    rooms = await bounded_gather(4, [heavy.create_room(name=None if i % 3 == 0 else f"room {i}")
                                     for i in range(s.ss_rooms)])
    members = [(room, peers[(i + k) % len(peers)]) for i, room in enumerate(rooms) for k in range(2 + i % 2)]
    await bounded_gather(8, [peer.join(room) for room, peer in members])
    await bounded_gather(8, [peer.send(room, f"message {k} from {peer.user_id}")
                             for room, peer in members for k in range(s.ss_messages_per_member)])
    setup_s = now() - t0
    ends = growing_ranges(s.ss_rooms, s.ss_first_window, s.ss_batch)
    # New devices (logged in first: password hashing is not what is measured): a fresh connection each.
    devices = [await heavy.login("ssl_0", "pw-ssl_0") for _ in range(s.ss_repeats)]
    first: list[float] = []
    full: list[float] = []
    steps: list[list[float]] = [[] for _ in ends]
    cpu: list[float] = []
    sizes: list[int] = []
    problems: list[str] = []
    await asyncio.sleep(1)
    run.window_open()
    for device in devices:
        await asyncio.sleep(0.5)
        cpu0 = run.cpu()
        pos: str | None = None
        seen: set[str] = set()
        size = 0
        t = now()
        for i, last in enumerate(ends):
            t1 = now()
            out = await device.ss_sync(room_list_body(last), pos, 0)
            steps[i].append(now() - t1)
            pos = str(out["pos"])
            got = out.get("rooms", {})
            size += len(json.dumps(out))
            count = out.get("lists", {}).get("all_rooms", {}).get("count")
            if count != s.ss_rooms:
                problems.append(f"range [0,{last}]: list count {count}, expected {s.ss_rooms}")
            for room_id, room in got.items():  # a room sent for the first time comes in full
                types = {ev.get("type") for ev in room.get("required_state", [])}
                if room_id not in seen and ("m.room.create" not in types or not room.get("timeline")):
                    problems.append(f"range [0,{last}]: {room_id} first sent without its m.room.create state "
                                    "or a timeline event")
            seen |= set(got)
        full.append(now() - t)
        first.append(steps[0][-1])
        cpu.append(run.cpu() - cpu0)
        sizes.append(size)
        if len(seen) != s.ss_rooms:
            problems.append(f"{len(seen)} rooms sent over the growing window, expected {s.ss_rooms}")
    run.window_close()
    for p in dict.fromkeys(problems):
        run.log(f"  sliding sync room list: {p}")
    run.samples["sliding_sync_first_list"] = first
    run.samples["sliding_sync_full_list"] = full

    def ms(xs: list[float]) -> dict[str, float]:
        return {"p50": pct(xs, 50) * 1000, "p90": pct(xs, 90) * 1000, "min": min(xs) * 1000, "max": max(xs) * 1000}

    return {"rooms": s.ss_rooms, "repeats": len(devices), "ranges": [[0, e] for e in ends], "setup_s": setup_s,
            "first_ms": ms(first), "full_ms": ms(full), "step_ms": [ms(xs) for xs in steps],
            "cpu_ms": pct(cpu, 50) * 1000, "response_kb": pct([float(x) for x in sizes], 50) / 1024,
            "problems": list(dict.fromkeys(problems))[:20]}


async def _ss_delivery(run: Run) -> dict[str, Any]:
    """The throughput load, received over sliding sync: each receiver's room-list connection has its room
    in the list and open (a room subscription), and long-polls with timeout=30000."""
    s = run.scale
    users, rooms, syncers = await load_rooms(run, "ssd_")
    bodies = [room_list_body(19, opened=(rooms[j // s.tp_syncing],)) for j in range(len(syncers))]
    sent_at: dict[str, float] = {}
    poss = await bounded_gather(10, [first_pos(c, b) for c, b in zip(syncers, bodies, strict=True)])
    receivers: list[Receiver] = [SlidingReceiver(c, pos, sent_at, b)
                                 for c, pos, b in zip(syncers, poss, bodies, strict=True)]
    return await closed_loop(run, users, rooms, receivers, sent_at, "sliding_sync", "ss")


async def _ss_idle(run: Run) -> dict[str, Any]:
    """`ss_idle_connections` idle sliding-sync connections of the pool's users (10 conn_ids a user, the
    room-list request, no rooms), each with a long-poll held: server RSS before, with the connections
    opened (state only) and with the long-polls held."""
    s = run.scale
    pool: list[Client] = run.results["_pool"]
    n = s.ss_idle_connections
    per_user = -(-n // len(pool))
    await asyncio.sleep(2)
    rss_before = run.server.rss_mb()
    sockets_before = run.server.sockets()
    http = new_session(limit=0)
    early = errors = inflight = 0
    tasks: list[asyncio.Task[None]] = []

    async def open_one(i: int) -> tuple[Client, dict[str, Any], str]:
        c = pool[i // per_user]
        mine = Client(http, c.base, c.token, c.user_id)
        body = room_list_body(19, conn_id=f"idle-{i % per_user}")
        return mine, body, str((await mine.ss_sync(body))["pos"])

    async def hold(mine: Client, body: dict[str, Any], pos: str) -> None:
        nonlocal early, errors, inflight
        for _ in range(100):
            inflight += 1
            try:
                pos = str((await mine.ss_sync(body, pos, s.ss_idle_timeout_ms))["pos"])
                early += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                errors += 1
                await asyncio.sleep(1)
            finally:
                inflight -= 1

    try:
        t0 = now()
        opened = await bounded_gather(20, [open_one(i) for i in range(n)])
        open_s = now() - t0
        await asyncio.sleep(2)
        rss_opened = run.server.rss_mb()
        t0 = now()
        for i, (mine, body, pos) in enumerate(opened):
            tasks.append(asyncio.create_task(hold(mine, body, pos)))
            if i % 200 == 199:
                await asyncio.sleep(0.2)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if inflight >= n and run.server.sockets() >= n:
                break
            await asyncio.sleep(0.25)
        hold_s = now() - t0
        settle_deadline = time.monotonic() + 30  # until the server has parked them all
        while time.monotonic() < settle_deadline and await _cpu_util(run.server, 1) > 0.05:
            pass
        cpu0 = run.cpu()
        t1 = now()
        await asyncio.sleep(s.ss_idle_hold_s)
        idle_cpu = (run.cpu() - cpu0) / (now() - t1)
        rss_held = run.server.rss_mb()
        held = inflight
        server_sockets = run.server.sockets()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.close()
    await asyncio.sleep(3)
    return {"connections": n, "users": len(pool), "per_user": per_user, "held": held,
            "server_sockets": server_sockets, "server_sockets_before": sockets_before,
            "open_s": open_s, "hold_s": hold_s, "rss_before_mb": rss_before, "rss_opened_mb": rss_opened,
            "rss_held_mb": rss_held, "kb_per_connection": (rss_held - rss_before) * 1024 / max(1, held),
            "idle_cpu_util": idle_cpu, "early_returns": early, "errors": errors,
            "timeout_ms": s.ss_idle_timeout_ms}


async def w_sliding_sync(run: Run) -> dict[str, Any]:
    """Simplified Sliding Sync: Element X's room list, delivery under load, memory per idle connection."""
    out: dict[str, Any] = {}
    for part, fn in (("room_list", _ss_room_list), ("delivery", _ss_delivery), ("idle", _ss_idle)):
        run.log(f"  {run.server.name}: sliding_sync {part} ...")
        resent, errors = COUNTERS.reconnects, COUNTERS.errors
        out[part] = await fn(run)
        out[part]["requests_resent"] = COUNTERS.reconnects - resent  # see client.Client.request
        out[part]["error_responses"] = COUNTERS.errors - errors
    return out


# -- push notifications: every receiver with a pusher; 10,000 pushers whose gateway is down -----------------
PUSH_APP_ID = "org.paigham.bench"


@dataclass
class _Received:
    got: dict[tuple[str, str], float]  # (event, pushkey) → when the gateway received it
    dup: int = 0
    unexpected: int = 0
    badge_only: int = 0
    wait_ended: str = "deadline"  # pushes were still coming in when the wait ended
    wait_s: float = 0.0


def _owed(run: Run, event_ids: dict[str, str], sent_at: dict[str, float]) -> dict[tuple[str, str], float]:
    """(event, pushkey) → when its message was sent: every room member but the sender is owed a push
    (bodies `<tag>-<sender>-<n>`, senders numbered as in `load_rooms`)."""
    s = run.scale
    owed: dict[tuple[str, str], float] = {}
    for text, event_id in event_ids.items():
        sender = int(text.split("-")[1])
        r = sender // s.tp_members
        for j in range(r * s.tp_members, (r + 1) * s.tp_members):
            if j != sender:
                owed[(event_id, f"pu-{j}")] = sent_at[text]
    return owed


async def _await_pushes(run: Run, gw: Gateway, owed: dict[tuple[str, str], float], first: int,
                        drain_s: float) -> _Received:
    """Wait until every owed push reached the gateway (from `gw.pushes[first:]`), at most `drain_s`, or
    until nothing new arrived for `push_idle_stop_s`; then 2 s more for late duplicates."""
    rx = _Received({})
    seen = first

    def absorb() -> None:
        nonlocal seen
        for p in gw.pushes[seen:]:
            if p.event_id is None:
                rx.badge_only += 1
                continue
            key = (p.event_id, p.pushkey)
            if key not in owed:
                rx.unexpected += 1
            elif key in rx.got:
                rx.dup += 1
            else:
                rx.got[key] = p.t
        seen = len(gw.pushes)

    t_wait = now()
    deadline = time.monotonic() + drain_s
    quiet_since, last_count = time.monotonic(), -1
    while time.monotonic() < deadline:
        absorb()
        if len(rx.got) >= len(owed):
            rx.wait_ended = "all received"
            break
        if len(gw.pushes) != last_count:
            quiet_since, last_count = time.monotonic(), len(gw.pushes)
        elif time.monotonic() - quiet_since > run.scale.push_idle_stop_s:
            rx.wait_ended = "nothing new for push_idle_stop_s"  # the missing ones are lost, not late
            break
        await asyncio.sleep(0.25)
    rx.wait_s = now() - t_wait
    await asyncio.sleep(2)  # duplicates arriving late
    absorb()
    return rx


def _push_figures(owed: dict[tuple[str, str], float], rx: _Received) -> dict[str, Any]:
    lat = [rx.got[k] - owed[k] for k in rx.got]
    # A push not received when the wait ended took at least until then: counted so, the percentiles over every
    # owed pair are lower bounds when some are missing (the received ones alone would flatter a slow server).
    t_end = now()
    lat_owed = lat + [t_end - at for k, at in owed.items() if k not in rx.got]
    return {"notify": summary(lat_owed), "notify_received": summary(lat),
            "pushes_expected": len(owed), "pushes_received": len(rx.got), "pushes_missing": len(owed) - len(rx.got),
            "pushes_duplicate": rx.dup, "pushes_unexpected": rx.unexpected, "pushes_badge_only": rx.badge_only,
            "wait_ended": rx.wait_ended, "wait_after_load_s": rx.wait_s}


async def _push_steady(run: Run, gw: Gateway, users: list[Client], rooms: list[str]) -> dict[str, Any]:
    """The same rooms and pushers at a fixed offered rate both servers can take: one message into each room
    every `ps_interval_s` (senders in turn) for `ps_duration_s` — push latency at equal load."""
    s = run.scale
    sent_at: dict[str, float] = {}
    event_ids: dict[str, str] = {}
    send_lat: list[float] = []
    errors = 0
    first = len(gw.pushes)
    t0 = now()
    stop_at = t0 + s.ps_duration_s

    async def room_sender(r: int) -> None:
        nonlocal errors
        await asyncio.sleep(r * s.ps_interval_s / len(rooms))
        for n in range(100_000):
            t = now()
            if t >= stop_at:
                return
            sender = r * s.tp_members + n % s.tp_members
            text = f"ps-{sender}-{n}"
            sent_at[text] = t
            try:
                event_ids[text] = await users[sender].send(rooms[r], text)
                send_lat.append(now() - t)
            except Exception:
                errors += 1
                del sent_at[text]
            await asyncio.sleep(max(0.0, s.ps_interval_s - (now() - t)))

    cpu0 = run.cpu()
    await asyncio.gather(*(room_sender(r) for r in range(len(rooms))))
    duration = now() - t0
    owed = _owed(run, event_ids, sent_at)
    rx = await _await_pushes(run, gw, owed, first, s.ps_drain_s)
    cpu = run.cpu() - cpu0
    run.samples["push_steady_notify"] = [rx.got[k] - owed[k] for k in rx.got]
    return {"messages": len(send_lat), "send_errors": errors, "send": summary(send_lat), "duration_s": duration,
            "messages_per_s": len(send_lat) / duration, "offered_per_s": len(rooms) / s.ps_interval_s,
            "server_cpu_util": cpu / (now() - t0), **_push_figures(owed, rx)}


async def _push_delivery(run: Run, gw: Gateway) -> dict[str, Any]:
    """The throughput load (5 rooms of 20 members, all sending in a closed loop, 20 /sync receivers) with a
    pusher for every member (format event_id_only, its own pushkey, data.url = the working stand-in).
    Push latency = from just before the `PUT /send` until the stand-in receives the notify for that
    (event, pushkey); every member but the sender is owed one push per message. Before it, the same rooms at
    a fixed rate (`_push_steady`)."""
    s = run.scale
    users, rooms, syncers = await load_rooms(run, "pu_")
    t = now()
    await bounded_gather(16, [u.set_pusher(PUSH_APP_ID, f"pu-{i}", gw.url) for i, u in enumerate(users)])
    register_s = now() - t
    first = len(gw.pushes)  # pushes before the load (set-up): none expected
    steady = await _push_steady(run, gw, users, rooms)
    sent_at: dict[str, float] = {}
    event_ids: dict[str, str] = {}
    sinces = await bounded_gather(10, [first_since(c) for c in syncers])
    receivers = [Receiver(c, since, sent_at) for c, since in zip(syncers, sinces, strict=True)]
    after_steady = len(gw.pushes)
    run.window_open()  # (profiling) the load and the wait for its pushes
    cpu0 = run.cpu()
    gw0, t_load = gw.cpu_seconds(), now()
    out = await closed_loop(run, users, rooms, receivers, sent_at, "push", "pu", event_ids)
    out["gateway_cpu_util"] = (gw.cpu_seconds() - gw0) / (now() - t_load)
    owed = _owed(run, event_ids, sent_at)
    rx = await _await_pushes(run, gw, owed, after_steady, s.push_drain_s)
    cpu = run.cpu() - cpu0
    run.window_close()
    figures = _push_figures(owed, rx)
    run.samples["push_notify"] = [rx.got[k] - owed[k] for k in rx.got]
    last_send = max(sent_at.values(), default=float("nan"))
    first_send = min(sent_at.values(), default=float("nan"))
    last_push = max(rx.got.values(), default=float("nan"))
    await bounded_gather(16, [u.set_pusher(PUSH_APP_ID, f"pu-{i}", None) for i, u in enumerate(users)])
    out.update(figures)
    out.update({
        "pushers": len(users), "register_pushers_s": register_s, "steady": steady,
        "pushes_before_load": first,
        "gateway_refused": dict(gw.refused),
        "pushes_per_s": len(rx.got) / (last_push - first_send) if rx.got else 0.0,
        "last_push_after_last_send_s": last_push - last_send,
        "server_cpu_ms_per_message_with_pushes": cpu / max(1, out["messages"]) * 1000,
    })
    return out


async def _push_down(run: Run, gw: Gateway) -> dict[str, Any]:
    """`pd_users` users in rooms of `pd_room_size`, each with `pd_pushers_per_user` pushers at a gateway that
    answers 503; one message into every room each `pd_interval_s` for `pd_duration_s`: server RSS and CPU, and
    the gateway requests per pusher per minute (a retry storm shows there), then `pd_tail_s` more without messages."""
    s = run.scale
    users = await run.users("pd_", s.pd_users)
    size = s.pd_room_size
    rooms = await bounded_gather(4, [users[r * size].create_room() for r in range(len(users) // size)])
    await bounded_gather(8, [users[r * size + k].join(room) for r, room in enumerate(rooms) for k in range(1, size)])
    keys = [(i, f"pd-{i}-{k}") for i in range(len(users)) for k in range(s.pd_pushers_per_user)]
    t = now()
    await bounded_gather(16, [users[i].set_pusher(PUSH_APP_ID, key, gw.url) for i, key in keys])
    register_s = now() - t
    await asyncio.sleep(3)
    rss_before = run.server.rss_mb()
    rss_max = rss_before
    send_lat: list[float] = []
    errors = 0

    async def sample_rss() -> None:
        nonlocal rss_max
        while True:
            rss_max = max(rss_max, run.server.rss_mb())
            await asyncio.sleep(0.5)

    t0 = now()
    stop_at = t0 + s.pd_duration_s

    async def room_sender(r: int) -> None:
        nonlocal errors
        await asyncio.sleep(r * s.pd_interval_s / len(rooms))
        for n in range(100_000):
            t = now()
            if t >= stop_at:
                return
            try:
                await users[r * size + n % size].send(rooms[r], f"pd-{r}-{n}")
                send_lat.append(now() - t)
            except Exception:
                errors += 1
            await asyncio.sleep(max(0.0, s.pd_interval_s - (now() - t)))

    sampler = asyncio.create_task(sample_rss())
    run.window_open()  # (profiling) the messages and the tail
    try:
        cpu0 = run.cpu()
        await asyncio.gather(*(room_sender(r) for r in range(len(rooms))))
        t1 = now()
        cpu = run.cpu() - cpu0
        rss_end = run.server.rss_mb()
        await asyncio.sleep(s.pd_tail_s)
        t2 = now()
        cpu_tail = run.cpu() - cpu0 - cpu
    finally:
        run.window_close()
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    during, tail = gw.between(t0, t1), gw.between(t1, t2)
    per_pusher = Counter(p.pushkey for p in during)
    pushers = len(keys)
    t = now()
    await bounded_gather(16, [users[i].set_pusher(PUSH_APP_ID, key, None) for i, key in keys])
    delete_s = now() - t
    return {
        "users": len(users), "pushers": pushers, "rooms": len(rooms), "room_size": size,
        "register_pushers_s": register_s, "delete_pushers_s": delete_s,
        "duration_s": t1 - t0, "messages": len(send_lat), "send_errors": errors, "send": summary(send_lat),
        "messages_per_s": len(send_lat) / (t1 - t0),
        "rss_before_mb": rss_before, "rss_max_mb": rss_max, "rss_end_mb": rss_end,
        "rss_growth_mb": rss_max - rss_before,
        "cpu_util": cpu / (t1 - t0), "tail_s": t2 - t1, "tail_cpu_util": cpu_tail / (t2 - t1),
        "gateway_requests": len(during), "pushers_tried": len(per_pusher),
        "max_requests_one_pusher": max(per_pusher.values(), default=0),
        "requests_per_pusher_per_min": len(during) / pushers / ((t1 - t0) / 60),
        "tail_requests": len(tail), "tail_requests_per_pusher_per_min": len(tail) / pushers / ((t2 - t1) / 60),
        "requests_before": len([p for p in gw.pushes if p.t < t0]),
        "gateway_refused": dict(gw.refused),
    }


async def w_push(run: Run) -> dict[str, Any]:
    """Push notifications to Push Gateway API stand-ins (bench/gateway.py, each a process of its own): delivery
    under load, and 10,000 pushers whose gateway is down."""
    working, down = (Gateway(p, status=st) for p, st in zip(run.server.gateway_ports, (200, 503), strict=True))
    out: dict[str, Any] = {}
    await working.start()
    await down.start()
    try:
        for part, fn, gw in (("delivery", _push_delivery, working), ("gateway_down", _push_down, down)):
            run.log(f"  {run.server.name}: push {part} ...")
            resent, errors = COUNTERS.reconnects, COUNTERS.errors
            run.part = part
            try:
                out[part] = await fn(run, gw)
            finally:
                run.part = ""
            out[part]["requests_resent"] = COUNTERS.reconnects - resent  # see client.Client.request
            out[part]["error_responses"] = COUNTERS.errors - errors
    finally:
        await working.stop()
        await down.stop()
    return out


# -- delayed events (MSC4140): 10,000 pending cost memory, not a timer each ------------------------------------------
DELAYED_PREFIX = "/_matrix/client/unstable/org.matrix.msc4140"
DELAY_PARAM = "org.matrix.msc4140.delay"
CALL_MEMBER = "org.matrix.msc3401.call.member"


async def _schedule_delayed(c: Client, room: str, i: int, delay_ms: int) -> str:
    """As matrix-js-sdk sends them: PUT /send or PUT /state with the delay as a query parameter. Half are
    call-membership state events (Element Call's "hangup"), half messages."""
    if i % 2:
        path = f"/_matrix/client/v3/rooms/{quote(room)}/state/{CALL_MEMBER}/_{quote(c.user_id)}_D{i}"
        body: dict[str, Any] = {}
    else:
        path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/d{time.time_ns()}.{i}"
        body = {"msgtype": "m.text", "body": f"delayed {i}"}
    return str((await c.request("PUT", path, body, params={DELAY_PARAM: str(delay_ms)}))["delay_id"])


async def _delayed_action(c: Client, delay_id: str, action: str) -> None:
    """The body form (signed in), which both servers serve and js-sdk falls back to."""
    await c.request("POST", f"{DELAYED_PREFIX}/delayed_events/{quote(delay_id)}", {"action": action})


async def w_delayed(run: Run) -> dict[str, Any]:
    """`de_users` times `de_per_user` pending delayed events (MSC4140) with a long delay: server RSS before and after
    scheduling them, CPU while they wait (a server with a timer or task per event shows it here), the time to
    schedule them, `de_restarts` heartbeats, and cancelling them all (nothing is left to fire later)."""
    s = run.scale
    users = await run.users("de_", s.de_users)
    size = s.de_room_size
    rooms = await bounded_gather(4, [users[r * size].create_room() for r in range(max(1, len(users) // size))])
    await bounded_gather(8, [users[r * size + k].join(room) for r, room in enumerate(rooms) for k in range(1, size)
                             if r * size + k < len(users)])
    await asyncio.sleep(3)
    rss_before = run.server.rss_mb()
    cpu_before = await _cpu_util(run.server, s.de_idle_s)
    run.window_open()
    try:
        jobs = [(u, rooms[min(n // size, len(rooms) - 1)], i)
                for n, u in enumerate(users) for i in range(s.de_per_user)]
        lat: list[float] = []

        async def one(u: Client, room: str, i: int) -> tuple[Client, str]:
            t = now()
            delay_id = await _schedule_delayed(u, room, i, s.de_delay_ms)
            lat.append(now() - t)
            return u, delay_id

        t0, cpu0 = now(), run.cpu()
        pending = await bounded_gather(16, [one(u, room, i) for u, room, i in jobs])
        schedule_s, schedule_cpu = now() - t0, run.cpu() - cpu0
        await asyncio.sleep(5)
        rss_pending = run.server.rss_mb()
        cpu_pending = await _cpu_util(run.server, s.de_idle_s)
        rss_after_idle = run.server.rss_mb()
        restart_lat: list[float] = []

        async def restart(u: Client, delay_id: str) -> None:
            t = now()
            await _delayed_action(u, delay_id, "restart")
            restart_lat.append(now() - t)

        await bounded_gather(16, [restart(u, d) for u, d in pending[: s.de_restarts]])
        t1 = now()
        await bounded_gather(16, [_delayed_action(u, d, "cancel") for u, d in pending])
        cancel_s = now() - t1
    finally:
        run.window_close()
    return {
        "users": len(users), "pending": len(pending), "delay_ms": s.de_delay_ms,
        "schedule_s": schedule_s, "schedule_per_s": len(pending) / schedule_s, "schedule": summary(lat),
        "server_cpu_ms_per_schedule": schedule_cpu / max(1, len(pending)) * 1000,
        "rss_before_mb": rss_before, "rss_pending_mb": rss_pending, "rss_after_idle_mb": rss_after_idle,
        "rss_growth_mb": rss_after_idle - rss_before,
        "rss_per_1000_kb": (rss_after_idle - rss_before) * 1024 / max(1, len(pending)) * 1000,
        "cpu_idle_before_util": cpu_before, "cpu_idle_pending_util": cpu_pending,
        "restart": summary(restart_lat), "cancel_s": cancel_s, "cancel_per_s": len(pending) / cancel_s,
    }


# -- a ministry announcement room: thousands of members, hundreds long-polling -----------------------------
LR_FILTER = json.dumps({"room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": True}}})
LR_FULL_FILTER = json.dumps({"room": {"timeline": {"limit": 10}}})


async def _lr_grow(run: Run, room: str, members: list[Client], already: int) -> dict[str, Any]:
    """`members` join `room` (which has `already` members), lr_join_concurrency at a time; each join's
    latency is kept with the room's size when it started (set-up, but the curve is telling)."""
    size, by_size = already, []

    async def join(c: Client) -> None:
        nonlocal size
        t = now()
        await c.join(room)
        by_size.append((size, now() - t))
        size += 1

    t0 = now()
    await bounded_gather(run.scale.lr_join_concurrency, [join(c) for c in members])
    buckets: dict[int, list[float]] = {}
    width = max(1, (size - already) // 10)
    for n, lat in by_size:
        buckets.setdefault(already + (n - already) // width * width, []).append(lat)
    return {"joins": len(members), "join_s": now() - t0,
            "join_p50_ms_by_size": {str(k): pct(v, 50) * 1000 for k, v in sorted(buckets.items())}}


async def _lr_fanout(run: Run, room: str, sender: Client, syncers: list[Client], key: str) -> dict[str, Any]:
    """One message at a time into the room, each once all receivers have the one before (as w_fanout)."""
    sent_at: dict[str, float] = {}
    receivers = await _lr_receivers(syncers, sent_at)
    return await one_at_a_time(run, room, sender, receivers, sent_at, run.scale.lr_messages, key, part=key)


async def _lr_receivers(syncers: list[Client], sent_at: dict[str, float]) -> list[Receiver]:
    """The members' long-polls (lazy-loading members), caught up and not yet started."""
    sinces = await bounded_gather(10, [first_since(c, LR_FILTER) for c in syncers])
    return [Receiver(c, since, sent_at, LR_FILTER) for c, since in zip(syncers, sinces, strict=True)]


async def _lr_reads(run: Run, room: str, reader: Client, username: str, password: str) -> dict[str, Any]:
    """GET /members and /joined_members, and initial syncs of new devices (lazy-loading members, and
    once without), each timed; the median of lr_repeats."""
    out: dict[str, Any] = {}
    path = f"/_matrix/client/v3/rooms/{quote(room)}"
    for name, sub in (("members", "/members"), ("joined_members", "/joined_members")):
        times: list[float] = []
        for _ in range(run.scale.lr_repeats):
            t = now()
            body = await reader.request("GET", path + sub)
            times.append(now() - t)
        out[f"{name}_ms"] = pct(times, 50) * 1000
        out[f"{name}_count"] = len(body.get("chunk", body.get("joined", {})))
    devices = [await reader.login(username, password) for _ in range(run.scale.lr_repeats + 1)]
    lazy: list[float] = []
    for d in devices[:-1]:
        t = now()
        body = await d.sync(flt=LR_FILTER)
        lazy.append(now() - t)
        state = body.get("rooms", {}).get("join", {}).get(room, {}).get("state", {}).get("events", [])
        out["lazy_members_sent"] = sum(1 for e in state if e.get("type") == "m.room.member")
    out["lazy_initial_sync_ms"] = pct(lazy, 50) * 1000
    t = now()
    body = await devices[-1].sync(flt=LR_FULL_FILTER)
    out["full_initial_sync_ms"] = (now() - t) * 1000
    state = body.get("rooms", {}).get("join", {}).get(room, {}).get("state", {}).get("events", [])
    out["full_members_sent"] = sum(1 for e in state if e.get("type") == "m.room.member")
    return out


async def _lr_seq_joins(room: str, joiners: list[Client]) -> dict[str, float]:
    """Joins one at a time, each timed."""
    lat: list[float] = []
    for c in joiners:
        t = now()
        await c.join(room)
        lat.append(now() - t)
    return summary(lat)


async def _lr_probe(run: Run, pair: tuple[Client, Client, str], stop: asyncio.Event, key: str) -> dict[str, Any]:
    """The small room's delivery latency until `stop`: one message at a time, the next once it arrived."""
    a, b, room = pair
    rx, sent_at, arrived = await one_receiver(b)
    send_lat: list[float] = []
    try:
        i = 0
        while not stop.is_set():
            text = f"{key}-{i}-{time.time_ns()}"
            arrived[text] = asyncio.Event()
            sent_at[text] = now()
            await a.send(room, text)
            send_lat.append(now() - sent_at[text])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived[text].wait(), 60)
            await asyncio.sleep(0.1)
            i += 1
    finally:
        await rx.stop()
    run.samples[f"{key}_delivery"] = list(rx.latencies.values())
    return {"messages": len(sent_at), "send": summary(send_lat), "delivery": summary(list(rx.latencies.values()))}


async def _lr_storm(run: Run, room: str, joiners: list[Client], pair: tuple[Client, Client, str],
                    syncers: list[Client]) -> dict[str, Any]:
    """The small room's latency for lr_quiet_s, then again while `joiners` join the large room at an even
    pace (lr_storm_joins over lr_storm_s, at most lr_storm_max_in_flight unanswered). The large room's
    `syncers` long-poll throughout, as its members would: every join wakes them."""
    s = run.scale
    receivers = await _lr_receivers(syncers, {})
    for rx in receivers:
        rx.start()
    stop = asyncio.Event()
    probe = asyncio.create_task(_lr_probe(run, pair, stop, "large_room_quiet"))
    await asyncio.sleep(s.lr_quiet_s)
    stop.set()
    quiet = await probe
    stop = asyncio.Event()
    probe = asyncio.create_task(_lr_probe(run, pair, stop, "large_room_storm"))
    await asyncio.sleep(1)
    gate = asyncio.Semaphore(s.lr_storm_max_in_flight)
    lat: list[float] = []
    interval = s.lr_storm_s / max(1, len(joiners))

    sent: set[int] = set()

    async def join(i: int, c: Client) -> None:
        async with gate:
            sent.add(i)
            t = now()
            await c.join(room)
            lat.append(now() - t)

    run.part = "storm"
    run.window_open()
    t0, cpu0 = now(), run.cpu()
    tasks = []
    try:
        for i, c in enumerate(joiners):
            await asyncio.sleep(max(0.0, t0 + i * interval - now()))
            tasks.append(asyncio.create_task(join(i, c)))
        # A server that falls behind gets lr_storm_drain_s more; the joins still waiting to be sent then
        # are dropped (counted), those already sent are awaited.
        await asyncio.wait(tasks, timeout=max(0.0, t0 + s.lr_storm_s + s.lr_storm_drain_s - now()))
        unsent = [task for i, task in enumerate(tasks) if i not in sent]
        for task in unsent:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        dropped = len(unsent)
        storm_s, cpu = now() - t0, run.cpu() - cpu0
    finally:
        run.window_close()
        stop.set()
        for rx in receivers:
            await rx.stop()
    during = await probe
    run.samples["large_room_storm_join"] = lat
    return {"offered": len(joiners), "joins": len(lat), "dropped": dropped, "storm_s": storm_s,
            "joins_per_s": len(lat) / storm_s, "join": summary(lat),
            "server_cpu_ms_per_join": cpu / max(1, len(lat)) * 1000, "small_room_quiet": quiet,
            "small_room_during_storm": during, "member_syncs_answered": sum(rx.syncs for rx in receivers)}


async def w_large_room(run: Run) -> dict[str, Any]:
    """A ministry announcement room (bench/README.md "large_room")."""
    s = run.scale
    t0 = now()
    members = await run.users("lr_", s.lr_members)
    storm = await run.users("lrs_", s.lr_storm_joins)
    seq = await run.users("lrq_", 2 * s.lr_seq_joins + 2)
    out: dict[str, Any] = {"members": s.lr_members, "register_s": now() - t0}
    owner = members[0]
    room = await owner.create_room(name="Ministry announcements")
    out["setup"] = await _lr_grow(run, room, members[1:], 1)
    run.log(f"  {run.server.name}: large room of {s.lr_members} set up in {now() - t0:.0f} s")
    syncers = members[1 : 1 + s.lr_syncing]
    out["fanout"] = await _lr_fanout(run, room, owner, syncers, "large_room")
    out["reads"] = await _lr_reads(run, room, members[1], "lr_1", "pw-lr_1")
    small = await seq[0].create_room(name="small")
    out["join_small_room"] = await _lr_seq_joins(small, seq[2 : 2 + s.lr_seq_joins])
    out["join_large_room"] = await _lr_seq_joins(room, seq[2 + s.lr_seq_joins :])
    await seq[1].join(small)
    out["storm"] = await _lr_storm(run, room, storm, (seq[0], seq[1], small), syncers)
    size = s.lr_members + out["storm"]["joins"] + s.lr_seq_joins
    more = s.lr_members_pg_paigham - size
    if run.server.name == "paigham" and run.server.db_kind == "postgres" and more > 0:
        out["bigger"] = await _lr_bigger(run, room, owner, syncers, size, more)
    out["wall_setup_s"] = out["register_s"] + out["setup"]["join_s"]
    return out


async def _lr_bigger(run: Run, room: str, owner: Client, syncers: list[Client], size: int, more: int) -> dict[str, Any]:
    """Paigham only, on PostgreSQL: the room grown by `more` members, then fan-out, reads and joins again."""
    t0 = now()
    extra = await run.users("lrx_", more + run.scale.lr_seq_joins)
    out: dict[str, Any] = {"register_s": now() - t0}
    out["setup"] = await _lr_grow(run, room, extra[:more], size)
    out["members"] = size + more
    run.log(f"  {run.server.name}: large room grown to {size + more} in {now() - t0:.0f} s")
    out["fanout"] = await _lr_fanout(run, room, owner, syncers, "large_room_bigger")
    out["reads"] = await _lr_reads(run, room, syncers[0], "lr_1", "pw-lr_1")
    out["join_large_room"] = await _lr_seq_joins(room, extra[more:])
    return out
# -- the directory of every account ------------------------------------------------------------------
SEARCH = "/_matrix/client/v3/user_directory/search"
DIRECTORY_SKIPPED = (
    "Paigham only: Synapse has no bulk path for 200,000 accounts short of registering each (hours with its "
    "password hashing) or writing its internal user_directory tables by SQL, and its search does not match "
    "across scripts, so the two would not answer the same question (docs/benchmarks.md)."
)


def _measured_command(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run a `paigham` command to its end: wall time, CPU time and peak RSS (VmHWM, polled)."""
    t = now()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0.0
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            peak = max(peak, proc_status_mb(proc.pid, "VmHWM"))
        time.sleep(0.1)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {out[-2000:]}")
    return {"wall_s": now() - t, "peak_rss_mb": peak, "output_tail": out.strip().splitlines()[-1:] if out else []}


async def _searchers(run: Run, clients: list[Client], pause_s: float, duration_s: float,
                     seed: int, warmup_s: float = 0.0) -> dict[str, Any]:
    """Each client types full names (or a first name, a surname) keystroke by keystroke, one search per
    keystroke from the second character, `pause_s` after each answer, for `warmup_s` + `duration_s`; only
    the searches sent after the warm-up are recorded. Typists who all press their first key in the same
    tick are a burst no office produces (and each would wait for the ones before it): after the warm-up
    they are at independent points of their names, as people typing at once are."""
    lat: list[float] = []
    by_letters: dict[str, list[float]] = {}  # the latency by letters typed of the word being typed (6: 6 or more)
    empty_full = full = limited = 0
    start = time.monotonic()
    record_at = start + warmup_s
    stop_at = record_at + duration_s
    cpu0: list[float] = []

    async def searcher(i: int, c: Client) -> None:
        nonlocal empty_full, full, limited
        for text in names.queries(10_000, seed * 1000 + i):
            for k in range(2, len(text) + 1):
                sent = time.monotonic()
                if sent >= stop_at:
                    return
                t = now()
                body = await c.request("POST", SEARCH, {"search_term": text[:k], "limit": 10})
                if sent >= record_at:
                    lat.append(now() - t)
                    typed = text[:k].split(" ")
                    key = f"{len(typed)} word{'s' if len(typed) > 1 else ''}, {min(6, len(typed[-1]))} letters"
                    by_letters.setdefault(key, []).append(lat[-1])
                    limited += bool(body.get("limited"))
                    if k == len(text):
                        full += 1
                        empty_full += not body.get("results")
                if pause_s:
                    await asyncio.sleep(pause_s)

    async def measure_from_record_start() -> None:
        await asyncio.sleep(max(0.0, record_at - time.monotonic()))
        cpu0.append(run.cpu())

    marker = asyncio.create_task(measure_from_record_start())
    await asyncio.gather(*(searcher(i, c) for i, c in enumerate(clients)))
    await marker
    elapsed = time.monotonic() - record_at
    return {"searches": len(lat), "searches_per_s": len(lat) / elapsed, "latency": summary(lat),
            "server_cpu_ms_per_search": (run.cpu() - cpu0[0]) / max(1, len(lat)) * 1000,
            "full_names_typed": full, "full_names_without_result": empty_full, "limited_answers": limited,
            "by_letters": {k: summary(v) for k, v in sorted(by_letters.items())}, "samples": lat}


async def _burst(clients: list[Client], rounds: int) -> dict[str, Any]:
    """Every searcher sends a name's first two letters in the same tick (`rounds` times, a second apart):
    how long the last of them waits — the server's capacity for a burst, reported beside the typing."""
    last: list[float] = []
    every: list[float] = []
    queries = [q for q in names.queries(10_000, 77) if len(q) >= 2]
    for r in range(rounds):
        async def one(i: int, c: Client) -> float:
            t = now()
            await c.request("POST", SEARCH, {"search_term": queries[(r * len(clients) + i) % len(queries)][:2],
                                             "limit": 10})
            return now() - t
        took = await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
        every += took
        last.append(max(took))
        await asyncio.sleep(1)
    return {"searchers": len(clients), "rounds": rounds, "last_answer": summary(last), "latency": summary(every)}


async def w_directory(run: Run) -> dict[str, Any]:
    """200,000 accounts (half officials through `paigham org import`, half plain accounts through
    `paigham user import`; names in Latin, Devanagari and Urdu script); then `dir_searchers` people
    typing names into the directory search at once, and the same searchers without a pause."""
    s = run.scale
    srv = run.server
    if not isinstance(srv, PaighamServer):
        return {"skipped": DIRECTORY_SKIPPED}
    files = srv.workdir / "directory"
    files.mkdir(exist_ok=True)
    units = max(1, s.dir_officials // 1000)
    (files / "units.csv").write_text(names.units_csv(units), encoding="utf-8")
    (files / "officials.csv").write_text(names.officials_csv(s.dir_officials, units, 7), encoding="utf-8")
    (files / "accounts.csv").write_text(names.accounts_csv(s.dir_accounts, 8), encoding="utf-8")
    common = ["--data-dir", str(srv.workdir / "data"), *(["--database-url", srv.database_url] if srv.database_url
                                                          else [])]
    env = srv.env()
    run.log(f"  {srv.name}: directory: importing {s.dir_officials:,} officials ...")
    org = await asyncio.to_thread(_measured_command, [srv.paigham_bin, "org", "import", str(files / "units.csv"),
                                                      str(files / "officials.csv"), *common], env, srv.workdir)
    run.log(f"  {srv.name}: directory: {org['wall_s']:.0f} s; importing {s.dir_accounts:,} plain accounts ...")
    plain = await asyncio.to_thread(_measured_command, [srv.paigham_bin, "user", "import", str(files / "accounts.csv"),
                                                        *common], env, srv.workdir)
    clients = await run.users("dir_", s.dir_searchers)
    await asyncio.sleep(2)
    # Typing starts with a warm-up, not recorded: the database pool's connections opened and their statements
    # prepared, and the typists at independent points of their names when recording starts.
    run.window_open()
    try:
        typing = await _searchers(run, clients, s.dir_keystroke_s, s.dir_duration_s, 1, s.dir_warmup_s)
        run.part = "saturation"
        saturated = await _searchers(run, clients, 0.0, s.dir_saturation_s, 2)
        run.part = "burst"
        burst = await _burst(clients, s.dir_burst_rounds)
    finally:
        run.part = ""
        run.window_close()
    run.samples["directory_search"] = typing.pop("samples")
    saturated.pop("samples")
    return {"officials": s.dir_officials, "plain_accounts": s.dir_accounts, "units": units,
            "searchers": s.dir_searchers, "keystroke_s": s.dir_keystroke_s,
            "org_import": org, "user_import": plain, "typing": typing, "saturation": saturated, "burst": burst}


WORKLOADS: dict[str, Callable[[Run], Awaitable[dict[str, Any]]]] = {
    "latency": w_latency,
    "throughput": w_throughput,
    "initial_sync": w_initial_sync,
    "many_rooms": w_many_rooms,
    "idle_syncs": w_idle_syncs,
    "sliding_sync": w_sliding_sync,  # before fanout: the pool's users are in no room yet
    "push": w_push,
    "delayed": w_delayed,
    "fanout": w_fanout,
    "large_room": w_large_room,
    "memory": memory.w_memory,  # last: what one more connection and one more queued message cost
    "directory": w_directory,  # last: 200,000 accounts would slow the set-up of the others
}
# Run only when named in --only: its set-up alone takes an hour or more (bench/README.md).
OPT_IN = frozenset({"large_room"})


async def run_all(server: Server, scale: Scale, only: list[str], log: Callable[[str], None],
                  around: Callable[[str, str], Any] | None = None) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Start-to-stop measurement of one server: memory at rest, the workloads, memory after."""
    http = new_session(limit=0)
    run = Run(server, http, scale, log=log)
    out: dict[str, Any] = {"server": server.name, "pid": server.pids[0], "loadavg_start": loadavg()}
    try:
        await asyncio.sleep(5)
        out["rss_idle_start_mb"] = server.rss_mb()
        out["cpu_idle_start_util"] = await _cpu_util(server, 5)
        t = now()
        pool_size = max(scale.fanout_members, min(500, scale.idle_connections // 10))
        if only and not {"fanout", "idle_syncs", "sliding_sync"} & set(only):
            pool_size = 0  # only the workloads that need the pool of users make it
        run.results["_pool"] = await run.users("pool_", pool_size)
        out["register_pool_s"] = now() - t
        out["rss_setup_peak_mb"] = server.peak_rss_mb()  # start and the pool's registration (password hashing)
        for name in WORKLOADS:
            if (only and name not in only) or (not only and name in OPT_IN):
                continue
            log(f"  {server.name}: {name} (load average {loadavg():.1f}) ...")
            run.window_hook = _hook(around, server.name, name) if around else None
            t = now()
            async with memory.watch(server, lambda: run.measuring) as mem:
                out[name] = await WORKLOADS[name](run)
            out[name]["memory"] = mem.figures()
            run.window_close(force=True)
            out[name]["wall_s"] = now() - t
            out[name]["loadavg"] = loadavg()
            log(f"  {server.name}: {name} done in {out[name]['wall_s']:.1f} s")
        await asyncio.sleep(10)
        out["rss_idle_end_mb"] = server.rss_mb()
        out["rss_peak_mb"] = memory.run_peak(out, server)
        out["cpu_idle_end_util"] = await _cpu_util(server, 5)
        # Production processes mostly run restarted on existing data: idle memory after a restart.
        server.stop()
        server.start()
        await server.wait_ready()
        await asyncio.sleep(5)
        out["rss_idle_restart_mb"] = server.rss_mb()
    finally:
        await http.close()
    out["loadavg_end"] = loadavg()
    out["pid_alive"] = os.path.exists(f"/proc/{server.pids[0]}")
    return out, run.samples


def _hook(around: Callable[[str, str], Any], server: str, workload: str) -> Callable[[str], Any]:
    """The profiling hook of one workload: a part's window is `<workload>-<part>`."""
    return lambda part: around(server, f"{workload}-{part}" if part else workload)


async def _cpu_util(server: Server, seconds: float) -> float:
    c0, t0 = server.cpu_seconds(), now()
    await asyncio.sleep(seconds)
    return (server.cpu_seconds() - c0) / (now() - t0)
