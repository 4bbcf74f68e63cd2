"""Organisation import speed: a generated organisation of N officials (default 10,000) imported into
a fresh database, phase by phase, then imported again (which must change nothing).

    .venv/bin/python bench/org_import.py                       # SQLite and PostgreSQL, 10,000 officials
    .venv/bin/python bench/org_import.py --engines sqlite -n 50000 --json build/bench/org_import.json

PostgreSQL: a throwaway database on PAIGHAM_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres).
Phases: parse (CSV), plan (validate + diff against the database), apply (one transaction: units,
accounts, officials, audit records), spaces (a space and an announcements room per unit, every
official joined to both, in bulk), and the second import.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from paigham.app import Server  # noqa: E402 - after the path
from paigham.config import Config  # noqa: E402
from paigham.org.importer import ReadResult, read_bytes  # noqa: E402
from paigham.org.sample import officials_csv, sample_org, units_csv  # noqa: E402

PG_ADMIN = os.environ.get("PAIGHAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run(engine: str, n: int) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="paigham-bench-org-")
    name = f"paigham_bench_{uuid.uuid4().hex[:10]}"
    if engine == "postgres":
        await _pg(f'CREATE DATABASE "{name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    else:
        url = f"sqlite:///{tmp}/paigham.db"
    srv = Server(Config(data_dir=tmp, database_url=url, create_admin=False, server_name="bench.local"))
    await srv.start()
    try:
        doc = sample_org(n)
        files = [("units.csv", units_csv(doc).encode()), ("officials.csv", officials_csv(doc).encode())]
        out: dict[str, Any] = {"engine": engine, "officials": n, "units": len(doc["units"])}
        t = time.perf_counter()
        read = ReadResult([], [])
        for fname, raw in files:
            part = read_bytes(raw, fname)
            read.rows.extend(part.rows)
            read.errors.extend(part.errors)
        out["parse_s"] = time.perf_counter() - t
        t = time.perf_counter()
        plan = await srv.org.plan(read)
        out["plan_s"] = time.perf_counter() - t
        assert plan.ok, plan.errors[:5]
        srv.org.after_apply.remove(srv.spaces.reconcile)  # timed on its own below
        t = time.perf_counter()
        await srv.org.apply(plan, "bench")
        out["apply_s"] = time.perf_counter() - t
        t = time.perf_counter()
        res = await srv.spaces.reconcile()
        out["spaces_s"] = time.perf_counter() - t
        out["joins"] = res["joined"]
        t = time.perf_counter()
        again = await srv.org.import_rows(read, dry_run=False, actor="bench")
        out["second_import_s"] = time.perf_counter() - t
        assert again.changes == 0
        out["total_s"] = out["parse_s"] + out["plan_s"] + out["apply_s"] + out["spaces_s"]
        out["officials_per_s"] = n / out["total_s"]
        return out
    finally:
        await srv.stop()
        if engine == "postgres":
            await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="officials (default 10000)")
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    results = [asyncio.run(run(e.strip(), args.n)) for e in args.engines.split(",") if e.strip()]
    print("| engine | officials | units | parse | plan | apply | spaces + joins | total | officials/s | again |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['engine']} | {r['officials']} | {r['units']} | {r['parse_s']:.1f} s | {r['plan_s']:.1f} s | "
              f"{r['apply_s']:.1f} s | {r['spaces_s']:.1f} s ({r['joins']} joins) | {r['total_s']:.1f} s | "
              f"{r['officials_per_s']:.0f} | {r['second_import_s']:.1f} s |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
