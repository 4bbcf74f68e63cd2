"""(b) Messages per second through the HTTP API with 1, 2 and 4 workers on one PostgreSQL database.

Each worker is a `paigham serve` process of its own (as the cluster tests and `bench --cluster` run
them: one PostgreSQL database, one NATS). `--senders` users in `--rooms` rooms, user i on worker
i mod N, each sending in a closed loop (send, wait for the answer, send again) into its room for
`--e2e-duration` seconds. No one syncs: this measures the write path only.

Reported per worker count: messages acknowledged per second, send latency, the server CPU per
message (all workers) and PostgreSQL's (the backends serving this database), the load generator's
CPU, from the database how many transactions wrote the messages (rows grouped by `xmin`: the
writer's per-room batching at work), and what the backends were waiting for (pg_stat_activity
sampled every 20 ms: on the counter row — a `transactionid` or `tuple` lock —, on a room's advisory
lock, on the WAL flush, on the client inside a transaction, or on nothing: running or idle). On a machine with
fewer cores than workers + PostgreSQL + the load generator, CPU binds before the counter does:
compare `server_cpu_share` with the cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.client import Client, new_session
from bench.servers import REPO, PaighamServer, free_port, fresh_workdir, new_secret, proc_cpu_seconds


@dataclass
class Worker(PaighamServer):
    """A `paigham serve` of this checkout (its src/ first on the path)."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = str(REPO / "src")
        return env


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


async def _setup(workers: list[Worker], http: Any, secret: str, senders: int, rooms: int) -> list[tuple[Client, str]]:
    """Users on their workers, rooms, memberships: (client, room) per sender."""
    clients = [Client(http, workers[i % len(workers)].base_url) for i in range(senders)]
    await asyncio.gather(*(c.register(secret, f"s{i}", f"pw-s{i}") for i, c in enumerate(clients)))
    owners = clients[:rooms]
    room_ids = await asyncio.gather(*(c.create_room() for c in owners))
    pairs = [(c, room_ids[i % rooms]) for i, c in enumerate(clients)]
    await asyncio.gather(*(c.join(r) for c, r in pairs[rooms:]))
    return pairs


async def _closed_loop(pairs: list[tuple[Client, str]], duration: float) -> tuple[int, list[float], float]:
    latencies: list[float] = []
    end = time.monotonic() + duration

    async def one(c: Client, room: str) -> None:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            await c.send(room, "hello")
            latencies.append(time.perf_counter() - t0)

    t0 = time.monotonic()
    await asyncio.gather(*(one(c, r) for c, r in pairs))
    return len(latencies), latencies, time.monotonic() - t0


async def _batching(url: str, since: int) -> dict[str, float]:
    """How many transactions wrote the messages past `since` (rows of one transaction share xmin)."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT xmin::text) AS t FROM events WHERE type = 'm.room.message' "
            "AND stream > $1",
            since,
        )
        pos = await conn.fetchval("SELECT pos FROM stream_counter WHERE id = 1")
    finally:
        await conn.close()
    n, t = int(row["n"]), int(row["t"])
    return {"messages": n, "transactions": t, "per_transaction": round(n / t, 2) if t else 0.0, "pos": pos}


async def _sample_waits(url: str, stop: asyncio.Event) -> tuple[dict[str, float], list[int]]:
    """Mean number of this database's backends in each wait state, and their pids."""
    conn = await asyncpg.connect(url)
    counts: dict[str, float] = {}
    pids: set[int] = set()
    n = 0
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT pid, wait_event_type, wait_event, state FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            n += 1
            for r in rows:
                pids.add(r["pid"])
                key = _wait_kind(r["wait_event_type"], r["wait_event"], r["state"])
                counts[key] = counts.get(key, 0) + 1
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return {k: round(v / max(n, 1), 2) for k, v in sorted(counts.items())}, sorted(pids)


async def _backend_pids(url: str) -> list[int]:
    """The backends serving this database now (the workers' pooled connections, opened at set-up)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


def _wait_kind(kind: str | None, event: str | None, state: str | None) -> str:
    if kind == "Lock" and event in ("transactionid", "tuple"):
        return "counter_row"  # the only row every writer updates
    if kind == "Lock" and event == "advisory":
        return "room_lock"
    if kind == "IO" and event in ("WALSync", "WALWrite"):
        return "wal_flush"
    if kind == "LWLock" and event == "WALWrite":
        return "wal_flush"
    if state == "idle in transaction":
        return "in_transaction_waiting_for_client"  # (a counter holder's COMMIT not yet sent, too)
    if state != "active":
        return "idle"
    return "running" if not kind else f"{kind}:{event}"


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # (a backend that has gone)
            total += proc_cpu_seconds(p)
    return total


async def run_point(
    args: Any,
    n: int,
    create_db: Callable[[str], Awaitable[str]],
    drop_db: Callable[[str, str], Awaitable[None]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    url = await create_db(args.pg)
    workdir = fresh_workdir(REPO / "build" / "scaling", f"w{n}")
    secret = new_secret()
    workers = [
        Worker(f"paigham-w{i}", workdir, free_port(), secret, "postgres", database_url=url, nats_url=args.nats)
        for i in range(n)
    ]
    http = new_session()
    try:
        for w in workers:
            w.start()
        await asyncio.gather(*(w.wait_ready() for w in workers))
        pairs = await _setup(workers, http, secret, args.senders, args.rooms)
        before = int((await _batching(url, 0))["pos"])
        db_pids = await _backend_pids(url)
        cpu0, me0 = sum(w.cpu_seconds() for w in workers), resource.getrusage(resource.RUSAGE_SELF)
        db0 = _cpu(db_pids)
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_waits(url, stop))
        sent, lat, took = await _closed_loop(pairs, args.e2e_duration)
        stop.set()
        waits, _ = await sampler
        cpu1, me1 = sum(w.cpu_seconds() for w in workers), resource.getrusage(resource.RUSAGE_SELF)
        db1 = _cpu(db_pids)
        batching = await _batching(url, before)
        out = {
            "workers": n,
            "senders": args.senders,
            "rooms": args.rooms,
            "duration_s": round(took, 2),
            "msg_per_s": round(sent / took, 1),
            "send_ms_p50": round(_pct(lat, 0.5) * 1000, 2),
            "send_ms_p99": round(_pct(lat, 0.99) * 1000, 2),
            "server_cpu_ms_per_msg": round((cpu1 - cpu0) / max(sent, 1) * 1000, 3),
            "server_cpu_share": round((cpu1 - cpu0) / took, 2),  # cores' worth busy in the workers
            "db_cpu_share": round((db1 - db0) / took, 2),
            "backends_waiting": waits,
            "loadgen_cpu_share": round((me1.ru_utime + me1.ru_stime - me0.ru_utime - me0.ru_stime) / took, 2),
            "messages_per_transaction": batching["per_transaction"],
            "transactions_per_s": round(batching["transactions"] / took, 1),
            "cores": os.cpu_count(),
        }
        log(
            f"  {n} worker(s): {out['msg_per_s']:.0f} msg/s, send p50 {out['send_ms_p50']} ms "
            f"p99 {out['send_ms_p99']} ms, {out['messages_per_transaction']} msg/txn, "
            f"CPU: server {out['server_cpu_share']}, PostgreSQL {out['db_cpu_share']} cores; backends {waits}"
        )
        return out
    finally:
        await http.close()
        for w in workers:
            w.stop()
        await drop_db(args.pg, url)


async def run_all(
    args: Any,
    create_db: Callable[[str], Awaitable[str]],
    drop_db: Callable[[str, str], Awaitable[None]],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    return [await run_point(args, n, create_db, drop_db, log) for n in args.workers]
