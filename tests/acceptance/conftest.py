"""Acceptance-test harness: a REAL Paigham server process driven by REAL Matrix client libraries.

The ``server`` fixture starts ``python -m paigham serve`` as a subprocess, once per storage
engine (SQLite, PostgreSQL), on a free loopback port with a fresh data directory, waits for
``GET /_matrix/client/versions`` to answer 200, creates a registration token with the CLI and
yields a :class:`acc_support.ServerInfo`.  After the session it stops the server (SIGTERM, then
SIGKILL) and drops the per-server PostgreSQL database.

Environment knobs:

``PAIGHAM_ACCEPTANCE_ENGINES``
    comma-separated subset of ``sqlite,postgres`` (default: both).
``PAIGHAM_ACCEPTANCE_PG_URL``
    maintenance connection used to create/drop the per-server databases
    (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
``CI``
    when set, an unreachable PostgreSQL FAILS the postgres tests instead of skipping them.
``PAIGHAM_PUSH_GATEWAY_ALLOWLIST``, ``PAIGHAM_IP_RANGE_WHITELIST``
    passed on to the started servers (comma-separated), with the session's push gateway stand-in
    (push_support.py) added: its notify URL to the allowlist, 127.0.0.0/8 to the ranges.
``PAIGHAM_ACCEPTANCE_PUSH_PORT``
    the stand-in's port (default: a free one), e.g. to name it in an external server's settings.
``PAIGHAM_ACCEPTANCE_EXTERNAL_URL`` (+ ``..._REGISTRATION_TOKEN``, ``..._DATA_DIR``,
``..._DATABASE_URL``, ``..._SERVER_NAME``)
    run the clients against an already-running homeserver instead of starting Paigham (used to
    validate the client scripts themselves against a reference homeserver).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from acc_support import (
    CLI_TIMEOUT_S,
    READY_TIMEOUT_S,
    ServerInfo,
    endpoint_unrouted,
    find_free_port,
    pg_create_database,
    pg_drop_database,
    pg_reachable,
    pg_url_for,
    read_admin_credentials,
    run_cli,
    wait_until_ready,
)
from push_support import GatewayThread, server_push_env, session_gateway, stop_session_gateway

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            Path(str(item.fspath)).resolve().relative_to(HERE)
        except ValueError:
            continue
        item.add_marker(pytest.mark.acceptance)


def _engines() -> list[str]:
    if os.environ.get("PAIGHAM_ACCEPTANCE_EXTERNAL_URL"):
        return ["external"]
    raw = os.environ.get("PAIGHAM_ACCEPTANCE_ENGINES", "sqlite,postgres")
    engines = [e.strip() for e in raw.split(",") if e.strip()]
    bad = set(engines) - {"sqlite", "postgres"}
    if bad:
        raise pytest.UsageError(f"PAIGHAM_ACCEPTANCE_ENGINES: unknown engine(s) {sorted(bad)}")
    return engines


def _external_server() -> ServerInfo:
    env = os.environ
    data_dir = env.get("PAIGHAM_ACCEPTANCE_DATA_DIR")
    return ServerInfo(
        engine="external",
        base_url=env["PAIGHAM_ACCEPTANCE_EXTERNAL_URL"].rstrip("/"),
        server_name=env.get("PAIGHAM_ACCEPTANCE_SERVER_NAME", "localhost"),
        registration_token=env.get("PAIGHAM_ACCEPTANCE_REGISTRATION_TOKEN", ""),
        admin_user=env.get("PAIGHAM_ACCEPTANCE_ADMIN_USER"),
        admin_password=env.get("PAIGHAM_ACCEPTANCE_ADMIN_PASSWORD"),
        data_dir=Path(data_dir) if data_dir else None,
        database_url=env.get("PAIGHAM_ACCEPTANCE_DATABASE_URL"),
    )


class Launch:
    """One Paigham server process: started at construction, prepared (ready + admin credentials +
    registration token) in a background thread so that the next engine's server can boot while
    the current engine's tests run."""

    def __init__(self, engine: str, tmp_path_factory: pytest.TempPathFactory, maint_url: str) -> None:
        self.engine = engine
        self.maint_url = maint_url
        self.database_url: str | None = None
        if engine == "postgres":
            dbname = f"paigham_acc_{secrets.token_hex(6)}"
            pg_create_database(maint_url, dbname)
            self.database_url = pg_url_for(maint_url, dbname)
        self.data_dir = tmp_path_factory.mktemp(f"paigham-{engine}")
        port = find_free_port()
        stdout_path = self.data_dir.parent / f"{self.data_dir.name}.server.stdout"
        stderr_path = self.data_dir.parent / f"{self.data_dir.name}.server.stderr"
        self.cmd = [
            sys.executable, "-m", "paigham", "serve",
            "--data-dir", str(self.data_dir),
            "--server-name", "localhost",
            "--host", "127.0.0.1",
            "--port", str(port),
        ]  # fmt: skip
        if self.database_url:
            self.cmd += ["--database-url", self.database_url]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **server_push_env(dict(os.environ)))
        self._out = open(stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self._err = open(stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.cmd, cwd=REPO_ROOT, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL, env=env
        )
        self.info = ServerInfo(
            engine=engine,
            base_url=f"http://127.0.0.1:{port}",
            server_name="localhost",
            registration_token="",
            admin_user=None,
            admin_password=None,
            data_dir=self.data_dir,
            database_url=self.database_url,
            process=self.proc,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
        )
        self.error: str | None = None
        self._thread = threading.Thread(target=self._prepare, name=f"paigham-{engine}-prepare", daemon=True)
        self._thread.start()

    def _prepare(self) -> None:
        info = self.info
        try:
            ready, why = wait_until_ready(info.base_url, self.proc, READY_TIMEOUT_S)
            if not ready:
                self.error = (
                    f"Paigham ({self.engine}) did not become ready on {info.base_url} within "
                    f"{READY_TIMEOUT_S}s: {why}\ncommand: {' '.join(self.cmd)}"
                )
                return
            info.admin_user, info.admin_password = read_admin_credentials(self.data_dir, self.proc)
            info.registration_token = info.create_registration_token()
        except Exception as exc:
            self.error = f"preparing the {self.engine} server failed: {type(exc).__name__}: {exc}"

    def result(self) -> ServerInfo:
        self._thread.join(READY_TIMEOUT_S + 2 * CLI_TIMEOUT_S)
        if self._thread.is_alive():
            self.error = f"preparing the {self.engine} server hung"
        if self.error:
            pytest.fail(f"{self.error}\n{self.info.logs_for_failure()}", pytrace=False)
        return self.info

    def stop(self) -> None:
        _stop(self.proc)
        self._thread.join(5)
        self._out.close()
        self._err.close()
        if self.database_url:
            try:
                pg_drop_database(self.maint_url, self.database_url.rsplit("/", 1)[1])
            except Exception as exc:  # pragma: no cover - best effort cleanup
                print(f"warning: could not drop {self.database_url}: {exc}", file=sys.stderr)
        if os.environ.get("PAIGHAM_ACCEPTANCE_KEEP_DATA") is None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


_prestarted: dict[str, Launch] = {}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    while _prestarted:
        _prestarted.popitem()[1].stop()
    stop_session_gateway()


def _session_needs(session: pytest.Session, engine: str) -> bool:
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("server") == engine:
            return True
    return False


def _check_pg(maint_url: str) -> None:
    ok, why = pg_reachable(maint_url)
    if not ok:
        msg = f"PostgreSQL at {maint_url} is unreachable: {why}"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set: PostgreSQL acceptance tests must not be skipped)", pytrace=False)
        pytest.skip(msg + " (set CI=1 to make this a failure)")


@pytest.fixture(scope="session", params=_engines())
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    engine: str = request.param
    if engine == "external":
        yield _external_server()
        return

    maint_url = os.environ.get("PAIGHAM_ACCEPTANCE_PG_URL", DEFAULT_PG_URL)
    launch = _prestarted.pop(engine, None)
    if launch is None:
        if engine == "postgres":
            _check_pg(maint_url)
        launch = Launch(engine, tmp_path_factory, maint_url)
    try:
        # boot the next engine's server in the background while this engine's tests run
        engines = _engines()
        for nxt in engines[engines.index(engine) + 1 :]:
            if nxt in _prestarted or not _session_needs(request.session, nxt):
                continue
            if nxt == "postgres" and not pg_reachable(maint_url)[0]:
                continue  # its own fixture reports this (fail in CI, skip elsewhere)
            _prestarted[nxt] = Launch(nxt, tmp_path_factory, maint_url)
            break
        yield launch.result()
    finally:
        launch.stop()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# Endpoints the E2EE scenarios cannot do without. If the server does not route one of them the
# E2EE tests fail at once with the list (a clearer message than a client library's timeout).
E2EE_ENDPOINTS = [
    ("POST", "/_matrix/client/v3/keys/upload"),
    ("POST", "/_matrix/client/v3/keys/query"),
    ("POST", "/_matrix/client/v3/keys/claim"),
    ("PUT", "/_matrix/client/v3/sendToDevice/m.room.encrypted/acceptance-probe"),
    ("POST", "/_matrix/client/v3/keys/device_signing/upload"),
    ("POST", "/_matrix/client/v3/keys/signatures/upload"),
    ("GET", "/_matrix/client/v3/room_keys/version"),
]


@pytest.fixture
def e2ee_endpoints(server: ServerInfo) -> None:
    missing = [f"{m} {p}" for m, p in E2EE_ENDPOINTS if endpoint_unrouted(server.base_url, m, p)]
    if missing:
        pytest.fail("server does not route these E2EE endpoints: " + ", ".join(missing))


@pytest.fixture
def push_gateway(server: ServerInfo) -> GatewayThread:
    """The ntfy-like push gateway stand-in every started server may send to (its allowlist names it)."""
    return session_gateway().ensure_started()


@pytest.fixture
def unique() -> str:
    """A short random suffix for user names, so tests never collide on one server."""
    return f"{int(time.time()) % 100000}{secrets.token_hex(3)}"


__all__ = ["ServerInfo", "run_cli"]
