"""The `paigham` command: serve, and the admin commands that work while the server runs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from paigham.cli.common import (
    ConfigOpt,
    DataDirOpt,
    DbOpt,
    ServerNameOpt,
    cli_actor,
    config_from,
    duration_ms,
    run,
    startup_problem,
)
from paigham.cli.gov import audit_app, org_app
from paigham.cli.media import media_app
from paigham.cli.progress import BAR_THRESHOLD, Bars

if TYPE_CHECKING:
    from paigham.app import Server

app = typer.Typer(help="Paigham: a sovereign, end-to-end encrypted Matrix homeserver.", no_args_is_help=True)
user_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
token_app = typer.Typer(help="Manage registration tokens.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="registration-token")
app.add_typer(media_app, name="media")
app.add_typer(audit_app, name="audit")
app.add_typer(org_app, name="org")


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
    from paigham.cluster import become_server, cluster_config_error, serve_workers
    from paigham.logging import configure_logging

    cfg = config_from(
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
    problem = cluster_config_error(cfg) or startup_problem(cfg)
    if problem:
        typer.echo(f"Configuration error: {problem}", err=True)
        raise typer.Exit(2)
    if cfg.workers > 1:
        serve_workers(cfg)
        return
    become_server(cfg)


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
    cfg = config_from(config, data_dir, database_url)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    localpart = name[1:].split(":", 1)[0] if name.startswith("@") else name

    async def create(s: Server) -> str:
        from paigham.errors import Codes, MatrixError

        user_id = s.auth.check_localpart(localpart.lower())
        if await s.accounts.get_user(user_id) is not None:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken")
        body = {"password": password, "admin": admin, "displayname": display_name}
        await s.admin.put_user(user_id, body, cli_actor())  # audited as the admin API's
        return user_id

    typer.echo(run(cfg, create))


@user_app.command("import")
def user_import(
    file: Annotated[str, typer.Argument(help="CSV with the columns user_id and (optional) displayname")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the file and count, change nothing")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create many accounts without passwords (existing ones are left as they are): all or none."""
    from paigham.services.provisioning import read_accounts_csv

    cfg = config_from(config, data_dir, database_url)
    try:
        with open(file, "rb") as fh:
            text = fh.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"Cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    rows, errors = read_accounts_csv(text, file)

    async def provision(s: Server) -> tuple[int, int, list[str]]:
        plan = await s.provisioning.plan(rows)
        problems = errors + plan.errors
        if problems or dry_run or not plan.new:
            return len(plan.new), plan.existing, problems
        bars = Bars(len(plan.new) >= BAR_THRESHOLD)
        with bars.progress:
            await s.provisioning.apply(plan, cli_actor().user_id, lambda done: bars("accounts", done, len(plan.new)))
        return len(plan.new), plan.existing, []

    new, existing, problems = run(cfg, provision)
    if problems:
        for line in problems[:1000]:
            typer.echo(line, err=True)
        typer.echo(f"{len(problems)} invalid rows; nothing was changed.", err=True)
        raise typer.Exit(1)
    verb = "would be created (dry run)" if dry_run else "created"
    typer.echo(f"{new} accounts {verb}, {existing} existed already")


@user_app.command("deactivate")
def user_deactivate(
    name: str,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Deactivate an account: log out all devices, leave all rooms, refuse logins."""
    cfg = config_from(config, data_dir, database_url)

    async def deactivate(s: Server) -> str:
        user_id = await _existing_user(s, name)
        await s.admin.deactivate(user_id, cli_actor())
        return user_id

    typer.echo(f"Deactivated {run(cfg, deactivate)}")


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
    cfg = config_from(config, data_dir, database_url)
    if password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)

    async def reset(s: Server) -> str:
        user_id = await _existing_user(s, name)
        # As the admin API: audited, the sign-in lockout cleared, the user told by a server notice.
        await s.admin.reset_password(user_id, password, cli_actor(), logout_devices=not keep_devices)
        return user_id

    typer.echo(f"Password reset for {run(cfg, reset)}")


async def _existing_user(s: Server, name: str) -> str:
    """The user ID for a localpart or ID; 404 if there is no such account."""
    from paigham.errors import MatrixError

    user_id = s.auth.user_id_for(name)
    if await s.accounts.get_user(user_id) is None:
        raise MatrixError(404, "M_NOT_FOUND", f"No such user {user_id}")
    return user_id


@token_app.command("create")
def token_create(
    uses: Annotated[int | None, typer.Option(help="How many registrations it allows (default unlimited)")] = None,
    expires_in: Annotated[str | None, typer.Option(help="Lifetime, e.g. 3600s, 12h, 7d")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create a registration token and print it."""
    cfg = config_from(config, data_dir, database_url)
    expires = duration_ms(expires_in) if expires_in else None
    if uses is not None and uses < 1:
        raise typer.BadParameter("--uses must be at least 1")

    async def create(s: Server) -> str:
        from paigham.clock import now_ms

        until = now_ms() + expires if expires else None
        created = await s.registration_tokens.create(None, uses, until, 16, cli_actor())
        return str(created["token"])

    typer.echo(run(cfg, create))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
