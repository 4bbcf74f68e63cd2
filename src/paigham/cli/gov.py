"""`paigham audit …` and `paigham org …`: the government layer's admin commands."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from paigham.cli.common import (
    ConfigOpt,
    DataDirOpt,
    DbOpt,
    cli_actor,
    config_from,
    duration_ms,
    run,
)
from paigham.cli.progress import BAR_THRESHOLD, Bars

if TYPE_CHECKING:
    from paigham.app import Server
    from paigham.org.plan import Plan

audit_app: typer.Typer = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

EXPORT_FIELDS = ["seq", "time", "ts", "kind", "actor", "target", "ip", "device", "details", "prev_hash", "hash"]


def parse_since(text: str, now_ms: int | None = None) -> int:
    """A point in time: ISO 8601 (UTC unless an offset is given), epoch milliseconds, or an age like 7d."""
    text = text.strip()
    if text.isdigit() and len(text) >= 11:
        return int(text)
    if text and text[-1] in "smhdw" and text[:-1].isdigit():
        from paigham.clock import now_ms as _now

        return (now_ms if now_ms is not None else _now()) - duration_ms(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            "use an ISO 8601 time (2025-01-31 or 2025-01-31T09:00:00Z), epoch milliseconds, or an age such as 7d or 12h"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(help="Only records at or after this time (ISO 8601, ms, or 7d)")] = None,
    format: Annotated[str, typer.Option("--format", help="jsonl (one JSON object a line) or csv")] = "jsonl",
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable), e.g. auth.login")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file (default stdout)")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Export audit records for a SIEM, oldest first."""
    if format not in ("jsonl", "csv"):
        raise typer.BadParameter("--format must be jsonl or csv")
    cfg = config_from(config, data_dir, database_url)
    since_ms = parse_since(since) if since else None

    async def export(s: Server) -> int:
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

    n = run(cfg, export)
    if output:
        typer.echo(f"Exported {n} records to {output}", err=True)


@audit_app.command("verify")
def audit_verify(config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """Check the hash chain; report the first broken link if a record was altered or removed."""
    cfg = config_from(config, data_dir, database_url)
    report = run(cfg, lambda s: s.audit.verify())
    if report.broken is not None:
        typer.echo(
            f"BROKEN at record {report.broken.seq}: {report.broken.reason} "
            f"({report.checked} records verified before it)"
        )
        raise typer.Exit(1)
    span = f" (records {report.first_seq}..{report.head_seq})" if report.checked else ""
    typer.echo(f"OK: {report.checked} records verified{span}; the chain is intact; {report.start}")


@audit_app.command("purge")
def audit_purge(config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """Apply the retention period now (the server also does this every hour)."""
    cfg = config_from(config, data_dir, database_url)
    removed = run(cfg, lambda s: s.audit.purge_expired())
    typer.echo(f"Removed {removed} records older than {cfg.audit_retention_days} days")


org_app: typer.Typer = typer.Typer(help="The organisation: units and officials.", no_args_is_help=True)


@org_app.command("import")
def org_import(
    files: Annotated[list[str], typer.Argument(help="CSV (units or officials) and/or JSON files, one batch")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the changes and stop")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create or update units and officials (keyed on employee_id): all rows or none."""
    import tempfile

    from paigham.org.importer import Files
    from paigham.org.service import row_errors_text

    cfg = config_from(config, data_dir, database_url)
    for path in files:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            typer.echo(f"Cannot read {path}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
    source = Files(files)
    total = source.count("official")
    bars = Bars(total >= BAR_THRESHOLD and not dry_run)
    # A dry run's changes go to a spool as they are found (a plan keeps only the first ones).
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:

        async def import_rows(s: Server) -> Plan:
            with bars.progress:
                return await s.org.import_rows(
                    source,
                    dry_run=dry_run,
                    actor=cli_actor().user_id,
                    progress=bars,
                    total=total,
                    changes=(lambda line: spool.write(line + "\n")) if dry_run else None,
                )

        plan = run(cfg, import_rows)
        if not plan.ok:
            for line in row_errors_text(plan.errors):
                typer.echo(line, err=True)
            typer.echo(f"{len(plan.errors)} invalid rows; nothing was changed.", err=True)
            raise typer.Exit(1)
        if dry_run:
            for line in plan.unit_lines():
                typer.echo(line)
            spool.seek(0)
            for line in spool:
                typer.echo(line, nl=False)
            typer.echo(f"{plan.summary()}\n(dry run: nothing was changed)")
            return
    typer.echo(f"Imported. {plan.summary()}")


@org_app.command("export")
def org_export(
    format: Annotated[
        str, typer.Option("--format", help="json (one file) or csv (units.csv + officials.csv)")
    ] = "json",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File (json; default stdout) or directory (csv)")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Write the organisation in the import format (importing it again changes nothing)."""
    if format not in ("json", "csv"):
        raise typer.BadParameter("--format must be json or csv")
    if format == "csv" and not output:
        raise typer.BadParameter("--format csv needs --output DIRECTORY")
    cfg = config_from(config, data_dir, database_url)
    doc = run(cfg, lambda s: s.org.export())
    if format == "json":
        text = msgspec.json.format(msgspec.json.encode(doc), indent=1).decode() + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        else:
            sys.stdout.write(text)
        return
    from pathlib import Path

    out = Path(output or ".")
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "units.csv", doc["units"], ["unit_id", "parent_id", "kind"], ["names"])
    _write_csv(
        out / "officials.csv",
        doc["officials"],
        ["employee_id", "user_id", "unit_id", "email", "phone", "status", "expires", "language"],
        ["names", "designation"],
    )
    typer.echo(f"Wrote {out / 'units.csv'} and {out / 'officials.csv'}", err=True)


def _write_csv(path: Any, records: list[dict[str, Any]], plain: list[str], per_lang: list[str]) -> None:
    langs = {key: sorted({lang for r in records for lang in r[key]}) for key in per_lang}
    prefix = {"names": "name", "designation": "designation"}
    header = plain + [f"{prefix[k]}_{lang}" for k in per_lang for lang in langs[k]]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in records:
            w.writerow([r[c] or "" for c in plain] + [r[k].get(lang, "") for k in per_lang for lang in langs[k]])


@org_app.command("sync")
def org_sync(config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """Bring every unit's space, announcements room and memberships in line with the organisation."""
    cfg = config_from(config, data_dir, database_url)
    bars = Bars(True)

    async def reconcile(s: Server) -> dict[str, int]:
        with bars.progress:
            return await s.spaces.reconcile(None, bars)

    res = run(cfg, reconcile)
    typer.echo(f"Spaces created for {res['units_created']} units; {res['joined']} joins, {res['left']} leaves.")
