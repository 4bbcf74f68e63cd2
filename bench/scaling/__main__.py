"""`python -m bench.scaling`: how far one PostgreSQL stream counter carries Paigham (docs/scaling.md).

    .venv/bin/python -m bench.scaling counter   # (a) the counter's own ceiling: micro-benchmark
    .venv/bin/python -m bench.scaling e2e       # (b) messages/s through the HTTP API, 1, 2, 4 workers
    .venv/bin/python -m bench.scaling model     # the design's numbers (a simulation, no database)
    .venv/bin/python -m bench.scaling all       # the three, results in bench/results/scaling.json

Runs with the project's own venv (it imports Paigham's storage code). Needs PostgreSQL (`--pg`, an
admin URL: a database is created and dropped per run) and, for `e2e`, NATS (`--nats`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.scaling import counter, e2e, model

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def create_database(admin: str) -> str:
    """A fresh database with Paigham's schema (the migration the server runs)."""
    from paigham.storage.database import Database
    from paigham.storage.migrate import migrate

    name = f"bench_scaling_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin.rsplit("/", 1)[0] + "/" + name
    db = Database(url)
    await migrate(db)
    await db.close()
    return url


async def drop_database(admin: str, url: str) -> None:
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def pg_settings(admin: str) -> dict[str, str]:
    conn = await asyncpg.connect(admin)
    try:
        rows = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'synchronous_commit', "
            "'fsync', 'wal_sync_method', 'commit_delay', 'shared_buffers', 'max_connections')"
        )
    finally:
        await conn.close()
    return {r["name"]: r["setting"] for r in rows}


def run_counter(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for shape in args.shapes:
        batches = args.batches if shape.startswith("send") else [1]
        for batch in batches:
            url = asyncio.run(create_database(args.pg))
            try:
                asyncio.run(counter.seed(url, max(args.conns)))
                for n in args.conns:
                    point = counter.run_point(url, shape, n, batch, args.procs, args.duration)
                    log(
                        f"  {shape:7} batch {batch:3}  conns {n:2}: {point['txn_per_s']:8.0f} txn/s "
                        f"{point['msg_per_s']:8.0f} msg/s  hold p50 {point['hold_ms_p50']:.3f} ms "
                        f"stmt p50 {point['stmt_ms_p50']:.3f} ms  busy {point['counter_busy']:.2f}"
                    )
                    out.append(point)
            finally:
                asyncio.run(drop_database(args.pg, url))
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["counter", "e2e", "model", "all"])
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="PostgreSQL admin URL")
    p.add_argument("--nats", default="nats://127.0.0.1:4222")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the tool in about a minute")
    p.add_argument("--out", default=str(RESULTS / "scaling.json"))
    # (a) counter
    p.add_argument("--shapes", default="counter,counter-async,sequence,send-durable,send", type=lambda s: s.split(","))
    p.add_argument("--conns", default="1,2,4,8,16", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--batches", default="1,10,100", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--procs", type=int, default=4, help="client processes sharing the connections")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement point")
    # (b) e2e
    p.add_argument("--workers", default="1,2,4", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--senders", type=int, default=40)
    p.add_argument("--rooms", type=int, default=20)
    p.add_argument("--e2e-duration", type=float, default=20.0)
    args = p.parse_args(argv)
    if args.quick:
        args.conns, args.batches, args.duration = [1, 4], [1, 10], 2.0
        args.workers, args.senders, args.rooms, args.e2e_duration = [1, 2], 8, 4, 4.0
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "quick": args.quick}
    results["postgresql"] = asyncio.run(pg_settings(args.pg))
    results["loadavg_start"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.what in ("counter", "all"):
        log("(a) the stream counter's own ceiling")
        results["counter"] = run_counter(args)
    if args.what in ("e2e", "all"):
        log("(b) end to end through the HTTP API")
        results["e2e"] = asyncio.run(e2e.run_all(args, create_database, drop_database, log))
    if args.what in ("model", "all"):
        log("the design's numbers (model)")
        results["model"] = model.run(results.get("counter"), log)
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    log(f"results in {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
