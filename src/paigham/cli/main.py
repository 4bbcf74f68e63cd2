"""The `paigham` command: serve, and the admin commands that work while the server runs."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
import typer

from paigham.config import Config, load_config

app = typer.Typer(help="Paigham: a sovereign, end-to-end encrypted Matrix homeserver.", no_args_is_help=True)
user_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
token_app = typer.Typer(help="Manage registration tokens.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="registration-token")

T = TypeVar("T")

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config file")]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Data directory (default ./data)")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="sqlite:///path or postgresql://…")]
ServerNameOpt = Annotated[str | None, typer.Option("--server-name", help="Server name (default localhost)")]


def _config(
    config: str | None, data_dir: str | None, database_url: str | None, server_name: str | None = None, **extra: Any
) -> Config:
    try:
        return load_config(
            config, {"data_dir": data_dir, "database_url": database_url, "server_name": server_name, **extra}
        )
    except (ValueError, OSError, msgspec.ValidationError) as exc:
        typer.echo(f"Configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


@contextlib.asynccontextmanager
async def _server(cfg: Config) -> AsyncIterator[Any]:
    from paigham.app import Server
    from paigham.storage.migrate import migrate

    cfg.create_admin = False
    cfg.nats_url = ""
    srv = Server(cfg)
    await migrate(srv.db)
    try:
        yield srv
    finally:
        await srv.db.close()


def _run(cfg: Config, fn: Callable[[Any], Awaitable[T]]) -> T:
    from paigham.errors import MatrixError

    async def main() -> T:
        async with _server(cfg) as srv:
            return await fn(srv)

    try:
        return asyncio.run(main())
    except MatrixError as exc:
        typer.echo(f"Error: {exc.error} ({exc.errcode})", err=True)
        raise typer.Exit(1) from None


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    server_name: ServerNameOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8008)")] = None,
    database_url: DbOpt = None,
    registration_shared_secret: Annotated[str | None, typer.Option(help="Shared secret for provisioning")] = None,
    nats_url: Annotated[str | None, typer.Option(help="NATS URL for fan-out between workers")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes on one socket (needs PostgreSQL + NATS)")
    ] = None,
) -> None:
    """Start the homeserver."""
    import uvicorn

    from paigham import connection_guard
    from paigham.app import create_app
    from paigham.cluster import UVICORN_OPTIONS, cluster_config_error, serve_workers
    from paigham.logging import configure_logging

    cfg = _config(
        config,
        data_dir,
        database_url,
        server_name,
        host=host,
        port=port,
        registration_shared_secret=registration_shared_secret,
        nats_url=nats_url,
        workers=workers,
    )
    configure_logging(cfg.log_level)
    problem = cluster_config_error(cfg)
    if problem:
        typer.echo(f"Configuration error: {problem}", err=True)
        raise typer.Exit(2)
    if cfg.workers > 1:
        serve_workers(cfg)
        return
    connection_guard.configure(cfg)
    connection_guard.raise_file_limit()
    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, **UVICORN_OPTIONS)


@user_app.command("create")
def user_create(
    name: str,
    password: Annotated[str | None, typer.Option(help="Password (prompted when omitted)")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user a server admin")] = False,
    display_name: Annotated[str | None, typer.Option(help="Display name")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create an account."""
    cfg = _config(config, data_dir, database_url)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    localpart = name[1:].split(":", 1)[0] if name.startswith("@") else name
    user_id = _run(
        cfg, lambda s: s.auth.create_user(localpart.lower(), password, admin=admin, displayname=display_name)
    )
    typer.echo(user_id)


@user_app.command("deactivate")
def user_deactivate(
    name: str,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Deactivate an account: log out all devices, leave all rooms, refuse logins."""
    cfg = _config(config, data_dir, database_url)

    async def go(s: Any) -> str:
        from paigham.errors import MatrixError

        user_id = s.auth.user_id_for(name)
        if await s.accounts.get_user(user_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", f"No such user {user_id}")
        await s.auth.deactivate(user_id)
        return str(user_id)

    typer.echo(f"Deactivated {_run(cfg, go)}")


@user_app.command("reset-password")
def user_reset_password(
    name: str,
    password: Annotated[str | None, typer.Option(help="New password (prompted when omitted)")] = None,
    keep_devices: Annotated[bool, typer.Option(help="Do not log out the user's devices")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Set a new password (and log out every device unless --keep-devices)."""
    cfg = _config(config, data_dir, database_url)
    if password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)

    async def go(s: Any) -> str:
        from paigham.errors import MatrixError

        user_id = s.auth.user_id_for(name)
        if await s.accounts.get_user(user_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", f"No such user {user_id}")
        await s.auth.set_password(user_id, password)
        if not keep_devices:
            await s.auth.logout_all(user_id)
        return str(user_id)

    typer.echo(f"Password reset for {_run(cfg, go)}")


def _duration_ms(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([smhdw]?)", text.strip())
    if not m:
        raise typer.BadParameter("use a number with an optional unit s, m, h, d or w (e.g. 7d)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return int(m.group(1)) * unit * 1000


@token_app.command("create")
def token_create(
    uses: Annotated[int | None, typer.Option(help="How many registrations it allows (default unlimited)")] = None,
    expires_in: Annotated[str | None, typer.Option(help="Lifetime, e.g. 3600s, 12h, 7d")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create a registration token and print it."""
    cfg = _config(config, data_dir, database_url)
    expires = _duration_ms(expires_in) if expires_in else None
    if uses is not None and uses < 1:
        raise typer.BadParameter("--uses must be at least 1")
    typer.echo(_run(cfg, lambda s: s.auth.create_registration_token(uses, expires)))


from paigham.cli.media import media_app  # noqa: E402 - uses the helpers defined above

app.add_typer(media_app, name="media")


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


from paigham.cli.gov import audit_app, org_app  # noqa: E402 - uses the helpers above

app.add_typer(audit_app, name="audit")
app.add_typer(org_app, name="org")
