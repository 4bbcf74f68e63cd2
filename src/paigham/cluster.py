"""`paigham serve`'s server processes: one (at the end of this file), or with `--workers N` N worker
processes on one listening socket, one PostgreSQL, one NATS.

The parent process does the one-time work (signing key, shared secret, migrations, first admin),
then hands over to uvicorn's process supervisor: it binds the socket once, spawns N workers that
all accept on it, and replaces a worker that dies. Each worker builds its own `Server` from the
configuration the parent passes in the environment (docs/decisions.md, "Workers").
"""

from __future__ import annotations

import asyncio
import os
import sys
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


# -- one process -------------------------------------------------------------------------------------------------
# `paigham serve` parses its command line with typer (which brings click and pydantic) and may have migrated the
# database with Alembic: ~17 MB of resident memory that a server would carry for its whole life. Once the checks
# have passed, the process therefore replaces itself (exec: same PID, same sockets, same terminal) with
# `python -m paigham.cluster`, which reads the configuration from an in-memory file (memfd) and serves
# (docs/benchmarks.md, "Memory").
CONFIG_FD_ENV = "PAIGHAM_SERVE_CONFIG_FD"


def serve_one(cfg: Config) -> None:
    """Serve in this process until SIGINT/SIGTERM (blocks)."""
    import uvicorn

    from paigham import connection_guard
    from paigham.app import create_app

    connection_guard.configure(cfg)
    connection_guard.raise_file_limit()
    uvicorn.run(create_app(cfg, announce=True), host=cfg.host, port=cfg.port, **UVICORN_OPTIONS)


def become_server(cfg: Config) -> None:
    """Replace this process with a lean one serving `cfg`; where that cannot be done (no memfd, no known
    interpreter), serve in this process."""
    if not hasattr(os, "memfd_create") or not sys.executable:
        serve_one(cfg)
        return
    fd = os.memfd_create("paigham-config", 0)  # not CLOEXEC: the new image reads it
    os.set_inheritable(fd, True)
    os.write(fd, msgspec.json.encode(cfg))  # (a memfd takes any size in one write)
    os.lseek(fd, 0, os.SEEK_SET)
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        CONFIG_FD_ENV: str(fd),
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p),
    }
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "paigham.cluster"], env)


def config_from_fd(fd: int) -> Config:
    with os.fdopen(fd, "rb") as f:
        return msgspec.json.decode(f.read(), type=Config)


def main() -> None:
    from paigham.logging import configure_logging

    cfg = config_from_fd(int(os.environ.pop(CONFIG_FD_ENV)))
    configure_logging(cfg.log_level)
    serve_one(cfg)


if __name__ == "__main__":
    main()
