"""`python -m bench`: run the same workloads against Paigham and Synapse and write docs/benchmarks.md.

    make bench                                   # everything, SQLite for both servers
    build/bench/venv/bin/python -m bench --help  # options (database kind, subsets, profiling)

See bench/README.md for what each workload does and how the figures are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench import report
from bench.client import COUNTERS, new_session
from bench.profile import Profiler
from bench.servers import (
    REPO,
    PaighamServer,
    Server,
    SynapseServer,
    ensure_synapse_venv,
    free_port,
    fresh_workdir,
    new_secret,
)
from bench.workloads import Run, Scale, loadavg, one_sender, run_all

RESULTS = REPO / "bench" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pg_cli(url: str, *args: str) -> None:
    u = urlparse(url)
    env = {**os.environ, "PGPASSWORD": u.password or ""}
    subprocess.run([*args, "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres"],
                   check=True, env=env, capture_output=True)


def create_pg_database(admin_url: str, name: str, c_locale: bool = False) -> str:
    extra = ["--lc-collate=C", "--lc-ctype=C", "--template=template0", "--encoding=UTF8"] if c_locale else []
    _pg_cli(admin_url, "createdb", *extra, name)
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(admin_url: str, name: str) -> None:
    try:
        _pg_cli(admin_url, "dropdb", "--if-exists", "--force", name)
    except subprocess.CalledProcessError as exc:
        log(f"could not drop {name}: {exc.stderr!r}")


def make_server(kind: str, args: argparse.Namespace, root: Path, dbs: list[str]) -> Server:
    workdir = fresh_workdir(root, kind)
    port = free_port()
    secret = new_secret()
    gateways = (free_port(), free_port())  # the push workload's gateway stand-ins: working, down
    if kind == "paigham":
        srv = PaighamServer("paigham", workdir, port, secret, args.db, paigham_bin=args.paigham,
                            gateway_ports=gateways, cheap_hashes=args.only == ["large_room"])
        if args.db == "postgres":
            name = f"bench_paigham_{secrets.token_hex(4)}"
            srv.database_url = create_pg_database(args.pg, name)
            dbs.append(name)
        return srv
    python = ensure_synapse_venv(Path(args.synapse_venv), args.db)
    srv = SynapseServer("synapse", workdir, port, secret, args.db, python=python, gateway_ports=gateways)
    if args.db == "postgres":
        name = f"bench_synapse_{secrets.token_hex(4)}"
        create_pg_database(args.pg, name, c_locale=True)
        dbs.append(name)
        u = urlparse(args.pg)
        srv.pg = {"user": u.username or "postgres", "database": name, "host": u.hostname or "127.0.0.1",
                  "port": str(u.port or 5432), **({"password": u.password} if u.password else {})}
    srv.configure()
    return srv


def synapse_version(args: argparse.Namespace) -> str:
    python = Path(args.synapse_venv) / "bin" / "python"
    out = subprocess.run([python, "-c", "import synapse; print(synapse.__version__)"], capture_output=True, text=True)
    # (Synapse appends the git branch and commit of its working directory, which is ours: dropped.)
    return out.stdout.strip().split(" (")[0] or "?"


async def bench_server(kind: str, args: argparse.Namespace, root: Path, scale: Scale,
                       profiler: Profiler | None) -> tuple[dict[str, Any], dict[str, list[float]]]:
    dbs: list[str] = []
    srv = make_server(kind, args, root, dbs)
    log(f"starting {kind} on {srv.base_url} ({args.db})")
    srv.start()
    COUNTERS.rate_limited = COUNTERS.errors = COUNTERS.reconnects = 0
    try:
        await srv.wait_ready()
        around = profiler.around(srv) if profiler and kind == "paigham" else None
        res, samples = await run_all(srv, scale, args.only, log, around)
        res["rate_limited"], res["errors"] = COUNTERS.rate_limited, COUNTERS.errors
        res["reconnects"] = COUNTERS.reconnects
        return res, samples
    finally:
        srv.stop()
        for name in dbs:
            drop_pg_database(args.pg, name)


async def bench_cluster(args: argparse.Namespace, root: Path, n: int) -> dict[str, Any]:
    """Paigham only: two worker processes on one PostgreSQL database and NATS; one user on each."""
    workdir = fresh_workdir(root, "cluster")
    name = f"bench_cluster_{secrets.token_hex(4)}"
    url = create_pg_database(args.pg, name)
    secret = new_secret()
    workers = [PaighamServer(f"paigham-w{i}", workdir, free_port(), secret, "postgres", paigham_bin=args.paigham,
                             database_url=url, nats_url=args.nats) for i in range(2)]
    http = new_session()
    try:
        workers[0].start()
        await workers[0].wait_ready()  # the first one migrates; the second finds nothing to do
        workers[1].start()
        await workers[1].wait_ready()
        run = Run(workers[0], http, Scale())
        a, b_far, b_near = (run.client() for _ in range(3))
        await a.register(secret, "ca", "pw-ca")
        b_far.base = workers[1].base_url
        await b_far.register(secret, "cb", "pw-cb")
        await b_near.register(secret, "cc", "pw-cc")
        room = await a.create_room()
        await b_far.join(room)
        await b_near.join(room)
        log(f"  cluster: {n} messages, sender on worker 0, receiver on worker 1 ...")
        cross = await one_sender(run, n, "cluster_cross", (a, b_far, room))
        log(f"  cluster: {n} messages, both on worker 0 ...")
        same = await one_sender(run, n, "cluster_same", (a, b_near, room))
        cross.pop("pair")
        same.pop("pair")
        return {"workers": 2, "cross_worker": cross, "same_worker": same, "loadavg": loadavg()}
    finally:
        await http.close()
        for w in workers:
            w.stop()
        drop_pg_database(args.pg, name)


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 12_000:
        log(f"warning: open-file limit {hard} is too low for 5,000 connections on both ends")


def paigham_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return out.stdout.strip() or "?"


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    scale = Scale.quick() if args.quick else Scale()
    scale = dataclasses.replace(scale, **args.scale_overrides)
    root = Path(args.workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(RESULTS, args.profile_workloads, args.db, gil=args.profile_gil) if args.profile else None
    results: dict[str, Any] = {"meta": {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "db": args.db, "cpus": os.cpu_count(),
        "mem_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, "quick": args.quick,
        "paigham_commit": paigham_commit(), "scale": scale.__dict__,
    }}
    samples: dict[str, dict[str, list[float]]] = {}
    for kind in args.servers:
        if kind == "synapse":
            results["meta"]["synapse_version"] = synapse_version(args) if Path(args.synapse_venv).exists() else "?"
        res, smp = await bench_server(kind, args, root, scale, profiler)
        if kind == "synapse":
            results["meta"]["synapse_version"] = synapse_version(args)
        results[kind], samples[kind] = res, smp
    if args.cluster:
        results["cluster"] = await bench_cluster(args, root, 20 if args.quick else 200)
    tag = args.db + ("-quick" if args.quick else "") + ("-profile" if args.profile else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"results-{tag}.json"
    out.write_text(json.dumps({"results": results, "samples": samples}, indent=1, default=str))
    log(f"results: {out.relative_to(REPO)}")
    if profiler:
        log("profile summaries: " + ", ".join(str(p.relative_to(REPO)) for p in profiler.outputs))
        return
    png = RESULTS / f"latency-{tag}.png"
    report.plot(samples, png, f"Latency distributions, {args.db}, {results['meta']['date']}")
    body = (f"### Run on {args.db.upper() if args.db == 'sqlite' else 'PostgreSQL'}"
            f"{' (quick smoke size: not representative)' if args.quick else ''}\n\n"
            f"{report.conditions(results)}\n\n{report.table(results)}\n\n{report.memory_table(results)}\n\n"
            f"![Latency distributions]({os.path.relpath(png, report.DOC.parent)})\n")
    if args.write_doc:
        report.update_doc(tag, body)
        log(f"updated {report.DOC.relative_to(REPO)} (section {tag})")
    print(body)


def _override(text: str) -> tuple[str, int | float]:
    name, _, value = text.partition("=")
    kinds = {f.name: f.type for f in dataclasses.fields(Scale)}
    if name not in kinds:
        raise argparse.ArgumentTypeError(f"no scale field {name!r}")
    return name, (float(value) if kinds[name] in (float, "float") else int(value))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="paigham,synapse", type=lambda s: [x for x in s.split(",") if x],
                   help="comma-separated, in run order (default paigham,synapse)")
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite", help="database kind for both servers")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="PostgreSQL maintenance URL (databases are created and dropped per run)")
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS for the cluster workload")
    p.add_argument("--only", default="", type=lambda s: [x for x in s.split(",") if x],
                   help="subset of workloads: "
                        "latency,throughput,initial_sync,idle_syncs,sliding_sync,push,delayed,fanout,memory,directory; "
                        "large_room runs only when named here")
    p.add_argument("--cluster", action="store_true", help="also run the 2-worker Paigham cluster workload")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the harness")
    p.add_argument("--set", dest="scale_overrides", action="append", default=[], type=_override,
                   metavar="FIELD=VALUE", help="override one size of the scale (bench/workloads.py Scale), "
                                               "e.g. --set lr_members=1000; repeatable")
    p.add_argument("--profile", action="store_true",
                   help="attach py-spy to Paigham during --profile-workloads (a separate run: profiling slows it)")
    p.add_argument("--profile-gil", action="store_true",
                   help="with --profile: only samples holding the GIL (the process's CPU, not waits in system calls)")
    p.add_argument("--profile-workloads", default="throughput,fanout,initial_sync",
                   type=lambda s: [x for x in s.split(",") if x])
    p.add_argument("--paigham", default=str(REPO / ".venv" / "bin" / "paigham"), help="the paigham executable")
    p.add_argument("--synapse-venv", default=str(REPO / "build" / "bench" / "synapse-venv"),
                   help="throwaway venv for Synapse (created and filled from PyPI when missing)")
    p.add_argument("--workdir", default=str(REPO / "build" / "bench" / "run"), help="data dirs and server logs")
    p.add_argument("--no-doc", dest="write_doc", action="store_false", help="do not touch docs/benchmarks.md")
    args = p.parse_args(argv)
    args.scale_overrides = dict(args.scale_overrides)
    return args


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(parse(sys.argv[1:])))
    else:
        uvloop.run(main(parse(sys.argv[1:])))
