"""What every `paigham` command shares: the configuration options, and running a piece of work
against a Server built for the command (the same database and data dir as the running server)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
import typer

from paigham.config import Config, load_config

if TYPE_CHECKING:
    from paigham.app import Server
    from paigham.services.admin import Actor

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

    # A command works for the server the data belongs to, creates no first admin and talks to no
    # other worker.
    name = await _data_server_name(cfg)  # (migrates the database first)
    srv = Server(msgspec.structs.replace(cfg, server_name=name, create_admin=False, nats_url=""))
    try:
        yield srv
    finally:
        await srv.db.close()


async def _data_server_name(cfg: Config) -> str:
    from paigham.services import server_identity
    from paigham.storage.database import Database
    from paigham.storage.migrate import migrate
    from paigham.storage.server_state import ServerStateStore

    db = Database(cfg.effective_database_url)
    try:
        await migrate(db)
        stored = await server_identity.stored_name(ServerStateStore(db))
    finally:
        await db.close()
    return server_identity.for_command(cfg.server_name, Config().server_name, stored)


def startup_problem(cfg: Config) -> str | None:
    """Why `serve` must not start on this data (another server's name, the system account taken), checked
    once before any worker starts; None: it may."""
    from paigham.app import Server
    from paigham.errors import MatrixError
    from paigham.services.server_identity import ServerNameMismatch
    from paigham.storage.migrate import migrate

    async def check() -> None:
        srv = Server(msgspec.structs.replace(cfg, create_admin=False, nats_url=""))
        try:
            await migrate(srv.db)
            await srv.check_identity()
        finally:
            await srv.db.close()

    try:
        asyncio.run(check())
    except (ServerNameMismatch, MatrixError) as exc:
        return exc.error if isinstance(exc, MatrixError) else str(exc)
    return None


def run(cfg: Config, work: Callable[[Server], Awaitable[T]]) -> T:
    """Run `work` on a Server for this configuration; a MatrixError exits 1 with its message."""
    from paigham.errors import MatrixError

    async def main() -> T:
        async with _server(cfg) as srv:
            return await work(srv)

    from paigham.services.server_identity import ServerNameMismatch

    try:
        return asyncio.run(main())
    except MatrixError as exc:
        typer.echo(f"Error: {exc.error} ({exc.errcode})", err=True)
        raise typer.Exit(1) from None
    except ServerNameMismatch as exc:
        typer.echo(f"Configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


def cli_actor() -> Actor:
    """Who the audit log records for an admin command: the operating-system user who ran it."""
    from paigham.services.admin import Actor

    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        who = f"uid-{os.getuid()}"
    return Actor(f"os:{who}", None, "cli")


def duration_ms(text: str) -> int:
    """A duration such as 30, 90s, 15m, 12h, 7d or 2w, in milliseconds."""
    m = re.fullmatch(r"(\d+)\s*([smhdw]?)", text.strip())
    if not m:
        raise typer.BadParameter("use a number with an optional unit s, m, h, d or w (e.g. 7d)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return int(m.group(1)) * unit * 1000
