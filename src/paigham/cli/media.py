"""`paigham media …`: purge old media, quarantine or delete one file, list a user's media, show detections.

Runs against the same database and media store as the server, also while it is running.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from paigham.cli.common import ConfigOpt, DataDirOpt, DbOpt, cli_actor, config_from, duration_ms, run

if TYPE_CHECKING:
    from paigham.app import Server

media_app = typer.Typer(help="Manage uploaded media (files and pictures).", no_args_is_help=True)


def _mxc(uri: str) -> tuple[str, str]:
    server, _, media_id = uri.removeprefix("mxc://").partition("/")
    if not server or not media_id:
        raise typer.BadParameter("give the media as mxc://server/mediaId")
    return server, media_id


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M")


@media_app.command("purge")
def purge(
    older_than: Annotated[str, typer.Option(help="Delete media uploaded longer ago than this, e.g. 30d, 12h")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Delete media (and unused upload IDs) older than a duration; files and keys are destroyed."""
    cfg = config_from(config, data_dir, database_url)
    from paigham.clock import now_ms

    before = now_ms() - duration_ms(older_than)
    actor = cli_actor()
    deleted = run(cfg, lambda s: s.media.purge_as(actor, before))
    typer.echo(f"Deleted {len(deleted)} media older than {older_than}")


@media_app.command("quarantine")
def quarantine(
    uri: str,
    undo: Annotated[bool, typer.Option("--undo", help="Lift the quarantine")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Stop serving a file (it stays stored for investigation)."""
    cfg = config_from(config, data_dir, database_url)
    server, media_id = _mxc(uri)
    actor = cli_actor()

    run(cfg, lambda s: s.media.quarantine(server, media_id, actor, undo=undo))
    typer.echo(f"{'Released' if undo else 'Quarantined'} {uri}")


@media_app.command("delete")
def delete(uri: str, config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """Delete one file, its thumbnails and its key."""
    cfg = config_from(config, data_dir, database_url)
    server, media_id = _mxc(uri)

    actor = cli_actor()
    run(cfg, lambda s: s.media.remove(server, media_id, actor))
    typer.echo(f"Deleted {uri}")


@media_app.command("list")
def list_media(
    user: str,
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 100,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List a user's uploads, newest first."""
    cfg = config_from(config, data_dir, database_url)

    async def uploads(s: Server) -> tuple[list[Any], int, str]:
        from paigham.errors import Codes, MatrixError

        user_id = s.auth.user_id_for(user)
        if await s.accounts.get_user(user_id) is None:  # "0 media" would hide a typo
            raise MatrixError(404, Codes.NOT_FOUND, f"No such user {user_id}")
        page = await s.media.user_media(user_id, 0, limit)
        return list(page.media), page.total, s.config.server_name

    rows, total, server_name = run(cfg, uploads)
    for r in rows:
        flag = f" QUARANTINED by {r.quarantined_by}" if r.quarantined_by else ""
        typer.echo(
            f"mxc://{server_name}/{r.media_id}\t{_when(r.created_ts)}\t{r.length or 0}\t"
            f"{r.content_type or '-'}\t{r.upload_name or '-'}\t{r.state}{flag}"
        )
    typer.echo(f"{total} media")


@media_app.command("detections")
def detections(
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 100,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Uploads the virus scanner refused."""
    cfg = config_from(config, data_dir, database_url)
    rows = run(cfg, lambda s: s.media.store.detections(limit))
    for d in rows:
        typer.echo(
            f"{_when(d['ts'])}\t{d['user_id']}\t{d['signature']}\t{d['upload_name'] or '-'}\t"
            f"{d['length']}\tsha256:{d['sha256']}"
        )
    typer.echo(f"{len(rows)} detections")
