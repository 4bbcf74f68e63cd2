"""The design's numbers: a queue simulation of the serial section each design has, fed with the
measured hold times (or the defaults below, this machine's preliminary figures).

Every write that takes a stream position (a message, and also each typing notice, read receipt,
presence change, account-data or to-device write) queues for the serial section. With one global
counter that section is one queue served for `hold` per transaction; arrivals are Poisson. The
simulation (Lindley's recursion, 200,000 transactions per point) gives the counter's utilisation and
the 99th percentile of the wait for it at each offered load, and the ceiling is the highest load
whose p99 wait stays under `WAIT_P99_MS` (beyond it, sends queue without bound).

Designs (docs/scaling.md):
- `today`: one counter row, held from the statement that takes it to the end of a durable commit;
- `elr`: early lock release — the same row, held to the end of a commit that does not wait for the
  WAL flush; acknowledgements wait for a shared flush barrier instead (no change to tokens);
- `multi-writer`: positions from a SEQUENCE with per-writer persisted watermarks (multi-writer
  stream tokens): no serial section at all; the database's own commit rate (the measured `sequence`
  shape, commits flushed in groups) is the limit — the ceiling of anything on one database;
- `rooms-P`: rooms partitioned over P databases (each with its writers and its own position
  stream; a sync token carries one position per partition): P times that.

Every design on one database is capped by its commit rate; `elr` is also capped by it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

WAIT_P99_MS = 50.0
ARRIVALS = 200_000
# Counter-taking writes per message sent, in interactive use: the message, the sender's typing
# start and stop, and ~2 read receipts from members who have the room open.
WRITES_PER_MESSAGE = 5.0
MESSAGES_PER_USER_DAY = 10.0  # the government mail service: 15 to 20 M messages a day for 2 M users
PEAK_HOUR_SHARE = 0.12  # share of a day's messages in its busiest hour (office hours)
PEAK_MINUTE_FACTOR = 1.5  # busiest minute over the busiest hour's mean

# Preliminary figures of this 2-core machine under other load (bench.scaling all, 14:34 UTC, load
# average 10 to 15: stmt + hold of an uncontended one-message send; the best `sequence` rate); a
# run of `all` passes its own measurements in instead.
DEFAULT_HOLD_MS = {"today": 5.41, "elr": 1.15}
DEFAULT_SEQUENCE_TXN_S = 521.0


def p99_wait_ms(rate_per_s: float, hold_ms: float, seed: int = 7) -> tuple[float, float]:
    """(utilisation, p99 wait in ms) of one FIFO server with Poisson arrivals at `rate_per_s` and
    service times around `hold_ms` (exponentially distributed around the mean: commits vary)."""
    rnd = random.Random(seed)
    mean_gap = 1000.0 / rate_per_s
    wait, waits, busy = 0.0, [], 0.0
    for _ in range(ARRIVALS):
        service = rnd.expovariate(1.0 / hold_ms)
        busy += service
        waits.append(wait)
        wait = max(0.0, wait + service - rnd.expovariate(1.0 / mean_gap))
    waits.sort()
    return min(1.0, busy / (ARRIVALS * mean_gap)), waits[int(0.99 * len(waits))]


def ceiling_txn_s(hold_ms: float, servers: int = 1) -> float:
    """The highest transaction rate (to 2 %) whose p99 wait stays under WAIT_P99_MS, with `servers`
    independent queues sharing the load evenly (rooms hashed to writers)."""
    lo, hi = 1.0, servers * 1000.0 / hold_ms  # the queue is unstable past 1/hold per server
    while hi - lo > 0.02 * lo:
        mid = (lo + hi) / 2
        if p99_wait_ms(mid / servers, hold_ms)[1] <= WAIT_P99_MS:
            lo = mid
        else:
            hi = mid
    return lo


def as_messages(txn_s: float) -> dict[str, float]:
    """A ceiling in transactions a second as messages a second (each message alone in its
    transaction, as in rooms that are not busy: per-room batching does not help), and, with the
    other writes of interactive use (WRITES_PER_MESSAGE), as messages a day at the peak assumed
    and users at MESSAGES_PER_USER_DAY."""
    msg_s = txn_s / WRITES_PER_MESSAGE
    day = msg_s / PEAK_MINUTE_FACTOR * 3600 / PEAK_HOUR_SHARE
    return {
        "txn_per_s": round(txn_s),
        "msg_per_s_alone": round(txn_s),
        "msg_per_s_interactive": round(msg_s),
        "msg_per_day_M": round(day / 1e6, 2),
        "users_M": round(day / MESSAGES_PER_USER_DAY / 1e6, 2),
    }


def holds_from(counter: list[dict[str, Any]] | None) -> tuple[dict[str, float], float]:
    """Hold times (ms, statement + hold of an uncontended transaction: the server's hold at most) of
    the send shapes with one message, and the best `sequence` rate, from a counter run."""
    holds, seq = dict(DEFAULT_HOLD_MS), DEFAULT_SEQUENCE_TXN_S
    for p in counter or []:
        if p["connections"] == 1 and p["batch"] == 1 and p["shape"] in ("send-durable", "send"):
            holds["today" if p["shape"] == "send-durable" else "elr"] = p["stmt_ms_p50"] + p["hold_ms_p50"]
    rates = [p["txn_per_s"] for p in counter or [] if p["shape"] == "sequence"]
    if rates:
        seq = max(rates)
    return holds, seq


def run(counter: list[dict[str, Any]] | None, log: Callable[[str], None]) -> dict[str, Any]:
    holds, seq = holds_from(counter)
    designs: dict[str, dict[str, Any]] = {}
    today = ceiling_txn_s(holds["today"])
    designs["today"] = {"hold_ms": round(holds["today"], 3), **as_messages(today)}
    elr = min(ceiling_txn_s(holds["elr"]), seq)
    designs["elr"] = {"hold_ms": round(holds["elr"], 3), **as_messages(elr)}
    designs["multi-writer"] = {"hold_ms": 0.0, **as_messages(seq)}
    for p in (2, 4, 8):
        designs[f"rooms-{p}"] = {"hold_ms": 0.0, **as_messages(p * seq)}
    for name, d in designs.items():
        log(
            f"  {name:12} {d['txn_per_s']:7} txn/s: {d['msg_per_s_alone']:6} msg/s alone, "
            f"{d['msg_per_s_interactive']:6} interactive = {d['msg_per_day_M']:6} M msg/day = {d['users_M']:5} M users"
        )
    curve = []
    for load in (100, 250, 500, 750, 1000, 1500, 2000):
        u, w = p99_wait_ms(load, holds["today"])
        u2, w2 = p99_wait_ms(load, holds["elr"])
        curve.append(
            {
                "txn_per_s": load,
                "today_util": round(u, 2),
                "today_wait_p99_ms": round(w, 2),
                "elr_util": round(u2, 2),
                "elr_wait_p99_ms": round(w2, 2),
            }
        )
    assumptions = {
        "writes_per_message": WRITES_PER_MESSAGE,
        "messages_per_user_day": MESSAGES_PER_USER_DAY,
        "peak_hour_share": PEAK_HOUR_SHARE,
        "peak_minute_factor": PEAK_MINUTE_FACTOR,
        "wait_p99_ms": WAIT_P99_MS,
    }
    return {"designs": designs, "wait_curve": curve, "assumptions": assumptions}
