"""`paigham serve --workers N`: N worker processes on one listening socket, one PostgreSQL, one NATS.

The parent process does the one-time work (signing key, shared secret, migrations, first admin),
then hands over to uvicorn's process supervisor: it binds the socket once, spawns N workers that
all accept on it, and replaces a worker that dies. Each worker builds its own `Server` from the
configuration the parent passes in the environment (docs/decisions.md, "Workers").
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec

from paigham.config import Config

CONFIG_ENV = "PAIGHAM_SERVE_CONFIG_JSON"


def cluster_config_error(cfg: Config) -> str | None:
    """Why this configuration cannot run several workers (None: it can)."""
    if cfg.workers <= 1:
        return None
    problems = []
    if not cfg.effective_database_url.startswith(("postgresql://", "postgres://")):
        problems.append("a PostgreSQL --database-url (SQLite has one writer and no cross-process locks)")
    if not cfg.nats_url:
        problems.append("--nats-url (workers wake each other's /sync through NATS)")
    if not problems:
        return None
    return f"--workers {cfg.workers} needs " + " and ".join(problems)


async def _prepare(cfg: Config) -> Config:
    """One-time start-up work, done once by the parent so that workers never race on it."""
    from paigham.app import Server
    from paigham.storage.migrate import migrate

    srv = Server(msgspec.structs.replace(cfg, nats_url=""))  # writes the signing key and shared secret
    try:
        await migrate(srv.db)
        await srv.ensure_admin()
    finally:
        await srv.db.close()
    # Workers read the secrets from the data dir, written above, and never create an admin themselves.
    return msgspec.structs.replace(cfg, create_admin=False)


def _metrics_dir(cfg: Config) -> Path:
    path = (cfg.data_path / "prometheus-multiproc").resolve()
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink(missing_ok=True)
    return path


# uvicorn options of every server process. The event loop is asyncio's own, not uvloop: under load,
# uvloop accepted new connections one per loop turn, so 69 of 100 clients connecting to a busy
# server waited 1.5 to 10 s for their first request (bench/, measured; asyncio's loop: none did,
# at the same throughput). See docs/decisions.md. No WebSockets: not loaded (3 MB).
UVICORN_OPTIONS: dict[str, Any] = {
    "log_level": "warning",
    "access_log": False,
    "loop": "asyncio",
    "http": "paigham.connection_guard:GuardedProtocol",  # deadlines and connection caps
    "ws": "none",
    "lifespan": "on",
}


def serve_workers(cfg: Config) -> None:
    """Run N workers until SIGINT/SIGTERM (blocks)."""
    import uvicorn

    from paigham.connection_guard import raise_file_limit

    raise_file_limit()  # the workers inherit it
    worker_cfg = asyncio.run(_prepare(cfg))
    os.environ[CONFIG_ENV] = msgspec.json.encode(worker_cfg).decode()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir(cfg))
    uvicorn.run(
        "paigham.cluster:app_from_env",
        factory=True,
        workers=cfg.workers,
        host=cfg.host,
        port=cfg.port,
        **UVICORN_OPTIONS,
    )


def app_from_env() -> object:
    """The ASGI app of one worker, from the configuration its supervisor put in the environment."""
    from paigham.app import create_app
    from paigham.logging import configure_logging

    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start workers with `paigham serve --workers N`")
    cfg = msgspec.json.decode(raw.encode(), type=Config)
    configure_logging(cfg.log_level)
    return create_app(cfg)
