"""What every `paigham` command shares: the configuration options, and running a piece of work
against a Server built for the command (the same database and data dir as the running server)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
import typer

from paigham.config import Config, load_config

if TYPE_CHECKING:
    from paigham.app import Server

T = TypeVar("T")

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config file")]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Data directory (default ./data)")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="sqlite:///path or postgresql://…")]
ServerNameOpt = Annotated[str | None, typer.Option("--server-name", help="Server name (default localhost)")]


def config_from(
    config: str | None, data_dir: str | None, database_url: str | None, server_name: str | None = None, **extra: Any
) -> Config:
    """The configuration from the file, the environment and the command's options (exit 2 if invalid)."""
    try:
        return load_config(
            config, {"data_dir": data_dir, "database_url": database_url, "server_name": server_name, **extra}
        )
    except (ValueError, OSError, msgspec.ValidationError) as exc:
        typer.echo(f"Configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


@contextlib.asynccontextmanager
async def _server(cfg: Config) -> AsyncIterator[Server]:
    from paigham.app import Server
    from paigham.storage.migrate import migrate

    # A command creates no first admin and talks to no other worker.
    srv = Server(msgspec.structs.replace(cfg, create_admin=False, nats_url=""))
    await migrate(srv.db)
    try:
        yield srv
    finally:
        await srv.db.close()


def run(cfg: Config, work: Callable[[Server], Awaitable[T]]) -> T:
    """Run `work` on a Server for this configuration; a MatrixError exits 1 with its message."""
    from paigham.errors import MatrixError

    async def main() -> T:
        async with _server(cfg) as srv:
            return await work(srv)

    try:
        return asyncio.run(main())
    except MatrixError as exc:
        typer.echo(f"Error: {exc.error} ({exc.errcode})", err=True)
        raise typer.Exit(1) from None


def duration_ms(text: str) -> int:
    """A duration such as 30, 90s, 15m, 12h, 7d or 2w, in milliseconds."""
    m = re.fullmatch(r"(\d+)\s*([smhdw]?)", text.strip())
    if not m:
        raise typer.BadParameter("use a number with an optional unit s, m, h, d or w (e.g. 7d)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return int(m.group(1)) * unit * 1000
