"""(a) The stream counter's own ceiling: the write transaction of a message send, as Paigham runs it,
from N concurrent connections on one PostgreSQL database, and the counter step alone.

Shapes (`--shapes`):
- `counter`: BEGIN; UPDATE stream_counter … RETURNING pos; COMMIT — the serial section and nothing
  else, on raw asyncpg (the floor of what every write of any stream pays);
- `counter-async`: the same with `SET LOCAL synchronous_commit = off`: the row is released without
  waiting for the WAL flush (what early lock release, docs/scaling.md, would hold it for);
- `sequence`: the position from a SEQUENCE (`nextval`) instead: no shared row, so commits overlap and
  PostgreSQL flushes them in groups (the ceiling of a multi-writer design on one database);
- `send`: what `EventWriter._send_messages` does for a batch of B messages into one room, through
  Paigham's own storage code as it is (`Database.write`, `lock_room`, `room_for_write`,
  `txn_results`, `EventWriteStore.insert_messages` — the statement that takes the positions,
  inserts the events, their transaction IDs and push rows), each connection writing its own room,
  so only the counter is shared. Since early lock release (storage/watermark.py) its commit does not
  wait for the WAL flush with the row held; `Database.write` waits for the flush barrier after it;
- `send-durable`: the same transaction as it was before early lock release — the statement without
  `synchronous_commit = off`, so the commit waits for the flush with the counter's row held, and no
  barrier after it.

Times per transaction, in the client: `stmt` = the statement that takes the counter's row lock,
from sending it to its answer (under contention it includes the wait for the lock); `hold` = from
that answer until the COMMIT has returned (for `send`, when `Database.write` starts waiting for the
flush barrier); `latency` = the whole transaction, barrier included (when the client would be
answered). The server holds the row from the moment the statement gets it to the end of the commit:
at least `hold`, at most `stmt + hold` of an uncontended run (1 connection). While one transaction
holds the row every other writer waits, so the counter admits at most 1/hold transactions a second,
and B/hold messages at B messages a transaction; `counter_busy` (the sum of holds over the wall
time) near 1 says the counter is what binds. On a loaded machine the client-side times include the
client's own waits for a core.

Each of `--procs` processes runs its share of the connections (so that one Python event loop is
not the bottleneck); they start together and run for `--duration` seconds.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import secrets
import statistics
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import asyncpg

ROOMS_MEMBERS = 20  # joined members per room (room_for_write reads them, as a real send does)


@dataclass(frozen=True)
class Job:
    url: str
    shape: str
    batch: int
    loops: int  # connections (concurrent transaction loops) in this process
    first_room: int
    duration: float


def _room(i: int) -> str:
    return f"!bench{i}:localhost"


async def seed(url: str, rooms: int) -> None:
    """Rooms with members and a first event, so reads find what a real send finds."""
    conn = await asyncpg.connect(url)
    try:
        for r in range(rooms):
            room = _room(r)
            await conn.execute(
                "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public) "
                "VALUES ($1, '11', $2, 0, true)",
                room,
                "@u0:localhost",
            )
            pos = await conn.fetchval("UPDATE stream_counter SET pos = pos + 1 WHERE id = 1 RETURNING pos")
            await conn.execute(
                "INSERT INTO events (stream, event_id, room_id, type, state_key, sender, origin_server_ts, depth, "
                "json) VALUES ($1, $2, $3, 'm.room.create', '', '@u0:localhost', 0, 1, '{}')",
                pos,
                f"$create{r}",
                room,
            )
            await conn.executemany(
                "INSERT INTO memberships (user_id, room_id, membership, event_id, stream, joined_stream, forgotten) "
                "VALUES ($1, $2, 'join', $3, $4, $4, false)",
                [(f"@u{m}:localhost", room, f"$create{r}", pos) for m in range(ROOMS_MEMBERS)],
            )
        await conn.execute("CREATE SEQUENCE bench_positions")
    finally:
        await conn.close()


def _pdu(room: str, sender: str, depth: int, prev: str) -> dict[str, Any]:
    """A message PDU of realistic size (~700 bytes as stored: hashes, signatures, references)."""
    return {
        "type": "m.room.message",
        "room_id": room,
        "sender": sender,
        "content": {"msgtype": "m.text", "body": "नमस्ते, the minutes of today's meeting are attached " * 2},
        "origin_server_ts": int(time.time() * 1000),
        "depth": depth,
        "prev_events": [prev],
        "auth_events": ["$" + secrets.token_urlsafe(32), "$" + secrets.token_urlsafe(32)],
        "hashes": {"sha256": secrets.token_urlsafe(32)},
        "signatures": {"localhost": {"ed25519:a_key": secrets.token_urlsafe(64)}},
    }


_TAKE = {
    "counter": "UPDATE stream_counter SET pos = pos + $1 WHERE id = 1 RETURNING pos",
    "counter-async": "UPDATE stream_counter SET pos = pos + $1 WHERE id = 1 RETURNING pos",
    "sequence": "SELECT max(nextval('bench_positions')) FROM generate_series(1, $1)",
}


async def _counter_loop(conn: asyncpg.Connection, job: Job, out: dict[str, Any]) -> None:
    take = _TAKE[job.shape]
    while time.time() < _END:
        t0 = time.perf_counter()
        async with conn.transaction():
            if job.shape == "counter-async":
                await conn.execute("SET LOCAL synchronous_commit = off")
            t_s = time.perf_counter()
            await conn.fetchval(take, job.batch)
            t_r = time.perf_counter()
        _record(out, t0, t_s, t_r, time.perf_counter())


_COMMITTED: ContextVar[float] = ContextVar("committed", default=0.0)


def _time_the_barrier(db: Any) -> None:
    """Note when each transaction's commit returned: `Database.write` waits for the flush barrier
    right after it (a spy around the barrier's `wait`, per task)."""
    real = db._barrier.wait

    async def wait() -> None:
        _COMMITTED.set(time.perf_counter())
        await real()

    db._barrier.wait = wait


def _durable_statement() -> None:
    """`send-durable`: the send statement as it was before early lock release."""
    from paigham.storage import event_writes
    from paigham.storage.watermark import NO_FLUSH_WAIT

    old = event_writes._INSERT_MESSAGES.replace(f"WITH c AS MATERIALIZED ({NO_FLUSH_WAIT}), pos AS (", "WITH pos AS (")
    old = old.replace(" FROM c WHERE id = 1", " WHERE id = 1")
    assert "synchronous_commit" not in old and "FROM c" not in old
    event_writes._INSERT_MESSAGES = old


async def _send_loop(db: Any, store: Any, room: str, job: Job, out: dict[str, Any]) -> None:
    from paigham.domain.stored_event import StoredEvent
    from paigham.storage.event_writes import NewMessage
    from paigham.storage.push_actions import PushRoomRow

    depth, prev, n, run = 1, "$create", 0, secrets.token_hex(4)  # (txn IDs unique across points)
    while time.time() < _END:
        t0 = time.perf_counter()
        async with db.write() as conn:
            await db.lock_room(conn, room)
            found = await store.room_for_write(conn, room, [("m.room.create", ""), ("m.room.power_levels", "")], None)
            assert found is not None
            msgs = []
            for _ in range(job.batch):
                n += 1
                depth += 1
                sender = f"@u{n % ROOMS_MEMBERS}:localhost"
                event_id = "$" + secrets.token_urlsafe(32)
                pdu = _pdu(room, sender, depth, prev)
                prev = event_id
                ev = StoredEvent(
                    0,
                    event_id,
                    room,
                    "m.room.message",
                    None,
                    sender,
                    pdu["origin_server_ts"],
                    pdu,
                    None,
                    None,
                    f"t{n}",
                    "DEV",
                )
                push = PushRoomRow(room, 0, sender, "", False)
                msgs.append(NewMessage(ev, None, None, (sender, "DEV", "send", f"{run}.{n}"), push, []))
            await store.txn_results(conn, [m.txn for m in msgs if m.txn is not None])
            t_s = time.perf_counter()
            _COMMITTED.set(0.0)
            await store.insert_messages(conn, msgs)  # takes the counter's row lock first
            t_r = time.perf_counter()
            if job.shape == "send-durable":
                conn.info.pop("paigham_took_positions", None)  # (no barrier: the commit is durable)
        t_ack = time.perf_counter()
        _record(out, t0, t_s, t_r, _COMMITTED.get() or t_ack, t_ack)


def _record(out: dict[str, Any], t0: float, t_s: float, t_r: float, t1: float, t_ack: float = 0.0) -> None:
    out["stmts"].append(t_r - t_s)
    out["holds"].append(t1 - t_r)
    out["latencies"].append(max(t1, t_ack) - t0)
    out["txns"] += 1


async def _run(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {"txns": 0, "stmts": [], "holds": [], "latencies": []}
    if job.shape in _TAKE:
        conns = [await asyncpg.connect(job.url) for _ in range(job.loops)]
        _start(job)
        await asyncio.gather(*(_counter_loop(c, job, out) for c in conns))
        for c in conns:
            await c.close()
        return out
    from paigham.storage.database import Database
    from paigham.storage.event_writes import EventWriteStore

    if job.shape == "send-durable":
        _durable_statement()
    db = Database(job.url, pool_size=job.loops)
    _time_the_barrier(db)
    store = EventWriteStore(db)
    async with db.write() as conn:  # open the pool's connections before the start
        await db.lock_room(conn, "warm")
    _start(job)
    rooms = [_room(job.first_room + i) for i in range(job.loops)]
    await asyncio.gather(*(_send_loop(db, store, r, job, out) for r in rooms))
    await db.close()
    return out


_END = 0.0
_READY: Any = None  # the processes' start barrier (a Manager proxy, set by the pool initializer)


def _init(ready: Any) -> None:
    global _READY
    _READY = ready


def _start(job: Job) -> None:
    """Every process connected: start together (blocking the loop a moment is fine here)."""
    global _END
    _READY.wait()
    _END = time.time() + job.duration


def _worker(job: Job) -> dict[str, Any]:
    return asyncio.run(_run(job))


def run_point(url: str, shape: str, conns: int, batch: int, procs: int, duration: float) -> dict[str, Any]:
    """One measurement: `conns` connections over `procs` processes, for `duration` seconds."""
    procs = max(1, min(procs, conns))
    share = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    jobs, first = [], 0
    for n in share:
        jobs.append(Job(url, shape, batch, n, first, duration))
        first += n
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        ready = manager.Barrier(procs)
        with ctx.Pool(procs, initializer=_init, initargs=(ready,)) as pool:
            parts = pool.map(_worker, jobs, chunksize=1)
    txns = sum(p["txns"] for p in parts)
    holds = sorted(h for p in parts for h in p["holds"])
    lats = sorted(x for p in parts for x in p["latencies"])
    stmts = sorted(x for p in parts for x in p["stmts"])
    hold_ms = statistics.median(holds) * 1000 if holds else 0.0
    return {
        "shape": shape,
        "connections": conns,
        "batch": batch,
        "processes": procs,
        "duration_s": duration,
        "txn_per_s": round(txns / duration, 1),
        "msg_per_s": round(txns * batch / duration, 1),
        "hold_ms_p50": round(hold_ms, 3),
        "hold_ms_p99": round(_pct(holds, 0.99) * 1000, 3),
        "stmt_ms_p50": round(_pct(stmts, 0.5) * 1000, 3),
        "ceiling_txn_per_s": round(1000 / hold_ms, 1) if hold_ms else 0.0,  # 1/hold
        "latency_ms_p50": round(_pct(lats, 0.5) * 1000, 3),
        "latency_ms_p99": round(_pct(lats, 0.99) * 1000, 3),
        # Share of wall time the counter row was held (1.0: the counter is the bottleneck).
        "counter_busy": round(sum(holds) / duration, 3),
    }


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0
