"""`paigham audit …` and `paigham org …`: the government layer's admin commands."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import typer

from paigham.cli.main import ConfigOpt, DataDirOpt, DbOpt, _config, _duration_ms, _run

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

EXPORT_FIELDS = ["seq", "time", "ts", "kind", "actor", "target", "ip", "device", "details", "prev_hash", "hash"]


def parse_since(text: str, now_ms: int | None = None) -> int:
    """A point in time: ISO 8601 (UTC unless an offset is given), epoch milliseconds, or an age like 7d."""
    text = text.strip()
    if text.isdigit() and len(text) >= 11:
        return int(text)
    if text and text[-1] in "smhdw" and text[:-1].isdigit():
        from paigham.clock import now_ms as _now

        return (now_ms if now_ms is not None else _now()) - _duration_ms(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter("use an ISO 8601 time (2025-01-31 or 2025-01-31T09:00:00Z), epoch "
                                 "milliseconds, or an age such as 7d or 12h") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(help="Only records at or after this time (ISO 8601, ms, or 7d)")] = None,
    format: Annotated[str, typer.Option("--format", help="jsonl (one JSON object a line) or csv")] = "jsonl",
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable), e.g. auth.login")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file (default stdout)")] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None,
) -> None:
    """Export audit records for a SIEM, oldest first."""
    if format not in ("jsonl", "csv"):
        raise typer.BadParameter("--format must be jsonl or csv")
    cfg = _config(config, data_dir, database_url)
    since_ms = parse_since(since) if since else None

    async def go(s: Any) -> int:
        out = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
        n = 0
        try:
            writer = csv.DictWriter(out, EXPORT_FIELDS) if format == "csv" else None
            if writer:
                writer.writeheader()
            async for rec in s.audit.export(since_ms, kind or None):
                if writer:
                    writer.writerow({**rec, "details": msgspec.json.encode(rec["details"]).decode()})
                else:
                    out.write(msgspec.json.encode(rec).decode() + "\n")
                n += 1
        finally:
            if output:
                out.close()
        return n

    n = _run(cfg, go)
    if output:
        typer.echo(f"Exported {n} records to {output}", err=True)


@audit_app.command("verify")
def audit_verify(config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """Check the hash chain; report the first broken link if a record was altered or removed."""
    cfg = _config(config, data_dir, database_url)
    report = _run(cfg, lambda s: s.audit.verify())
    if report.broken is not None:
        typer.echo(f"BROKEN at record {report.broken.seq}: {report.broken.reason} "
                   f"({report.checked} records verified before it)")
        raise typer.Exit(1)
    span = f" (records {report.first_seq}..{report.head_seq})" if report.checked else ""
    typer.echo(f"OK: {report.checked} records verified{span}; the chain is intact")


@audit_app.command("purge")
def audit_purge(config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """Apply the retention period now (the server also does this every hour)."""
    cfg = _config(config, data_dir, database_url)
    removed = _run(cfg, lambda s: s.audit.purge_expired())
    typer.echo(f"Removed {removed} records older than {cfg.audit_retention_days} days")
