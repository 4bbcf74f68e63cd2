"""Shared helpers for the acceptance tests (no mocks: real processes, real sockets, real databases)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

READY_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 60.0
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# server description
# --------------------------------------------------------------------------------------------


@dataclass
class ServerInfo:
    engine: str  # "sqlite" | "postgres" | "external"
    base_url: str
    server_name: str
    registration_token: str
    admin_user: str | None
    admin_password: str | None
    data_dir: Path | None
    database_url: str | None
    process: subprocess.Popen[bytes] | None = None
    stdout_path: Path | None = None
    stderr_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- CLI ---------------------------------------------------------------------------------
    def create_registration_token(self, uses: int | None = None) -> str:
        """Create a registration token with ``paigham registration-token create``."""
        if self.engine == "external":
            if not self.registration_token:
                raise RuntimeError("external server: set PAIGHAM_ACCEPTANCE_REGISTRATION_TOKEN")
            return self.registration_token
        assert self.data_dir is not None
        args = ["registration-token", "create", "--data-dir", str(self.data_dir)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        if uses is not None:
            args += ["--uses", str(uses)]
        out = run_cli(args)
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        if not lines:
            raise RuntimeError(f"`paigham {' '.join(args)}` printed nothing on stdout")
        # The token is the last line; tolerate a "Token: XYZ" style prefix (tokens have no spaces).
        return lines[-1].split()[-1]

    # -- diagnostics -------------------------------------------------------------------------
    def logs_for_failure(self, max_chars: int = 8000) -> str:
        parts = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            if path and path.exists():
                text = path.read_text(errors="replace")
                if len(text) > max_chars:
                    text = "...[truncated]...\n" + text[-max_chars:]
                parts.append(f"----- server {label} ({path}) -----\n{text}")
        return "\n".join(parts) or "(no server logs captured)"

    # -- storage inspection ------------------------------------------------------------------
    def search_storage(self, needle: str) -> list[str]:
        """Every place in the server's persistent storage where ``needle`` occurs.

        Searches the raw bytes of every file under data_dir (SQLite main file + WAL, media,
        logs...), every column of every table of every SQLite database found there, and, for
        PostgreSQL, every text/varchar/json/jsonb/bytea column of every user table.
        """
        hits: list[str] = []
        if self.data_dir is not None and self.data_dir.exists():
            hits += search_files(self.data_dir, needle)
            hits += search_sqlite_dbs(self.data_dir, needle)
        if self.database_url and self.database_url.startswith(("postgres://", "postgresql://")):
            hits += run_coro_sync(lambda: search_postgres(self.database_url or "", needle))
        return hits

    def storage_searchable(self) -> bool:
        return bool(self.data_dir is not None or self.database_url)


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


def run_cli(args: list[str], timeout: float = CLI_TIMEOUT_S) -> str:
    cmd = [sys.executable, "-m", "paigham", *args]
    proc = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` exited {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc.stdout


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(
    base_url: str, proc: subprocess.Popen[bytes] | None, timeout: float = READY_TIMEOUT_S
) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False, f"server process exited with code {proc.returncode}"
        try:
            with urllib.request.urlopen(f"{base_url}/_matrix/client/versions", timeout=2) as resp:
                if resp.status == 200:
                    body = json.loads(resp.read())
                    if isinstance(body.get("versions"), list):
                        return True, "ready"
                    last = f"200 but body has no 'versions' list: {body!r}"
                else:
                    last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    return False, f"timed out; last attempt: {last}"


def endpoint_unrouted(base_url: str, method: str, path: str) -> bool:
    """True if the server answers 404 M_UNRECOGNIZED (or 405) to an unauthenticated request:
    it does not route this endpoint at all. A routed endpoint answers 401 M_MISSING_TOKEN."""
    req = urllib.request.Request(f"{base_url}{path}", method=method, data=b"{}" if method != "GET" else None)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5):
            return False
    except urllib.error.HTTPError as exc:
        if exc.code == 405:
            return True
        if exc.code != 404:
            return False
        try:
            errcode: object = json.loads(exc.read()).get("errcode")
            return errcode == "M_UNRECOGNIZED"
        except ValueError:
            return True
    except OSError:
        return False


def read_admin_credentials(
    data_dir: Path, proc: subprocess.Popen[bytes] | None, timeout: float = 10.0
) -> tuple[str | None, str | None]:
    path = data_dir / "admin-credentials"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            vals: dict[str, str] = {}
            for line in path.read_text().splitlines():
                if ":" in line:
                    k, _, v = line.partition(":")
                    vals[k.strip().lower()] = v.strip()
            if vals.get("user_id") and vals.get("password"):
                return vals["user_id"], vals["password"]
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    return None, None


def run_coro_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running loop."""
    result: list[T] = []
    error: list[BaseException] = []

    def runner() -> None:
        try:
            result.append(asyncio.run(_await(factory)))
        except BaseException as exc:
            error.append(exc)

    t = threading.Thread(target=runner, daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


async def _await(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def pg_url_for(maint_url: str, dbname: str) -> str:
    parts = urlsplit(maint_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


def pg_reachable(maint_url: str) -> tuple[bool, str]:
    async def probe() -> None:
        import asyncpg

        conn = await asyncpg.connect(maint_url, timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    try:
        run_coro_sync(probe)
        return True, "ok"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def pg_create_database(maint_url: str, dbname: str) -> None:
    assert dbname.replace("_", "").isalnum()

    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(maint_url, timeout=10)
        try:
            await conn.execute(f"CREATE DATABASE \"{dbname}\" ENCODING 'UTF8' TEMPLATE template0")
        finally:
            await conn.close()

    run_coro_sync(create)


def pg_drop_database(maint_url: str, dbname: str) -> None:
    assert dbname.replace("_", "").isalnum()

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(maint_url, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        finally:
            await conn.close()

    run_coro_sync(drop)


async def search_postgres(database_url: str, needle: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(database_url, timeout=10)
    hits: list[str] = []
    try:
        cols = await conn.fetch(
            """
            SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.udt_name
            FROM information_schema.columns c
            JOIN information_schema.tables t
              ON t.table_schema = c.table_schema AND t.table_name = c.table_name
            WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema')
              AND t.table_type = 'BASE TABLE'
            """
        )
        for row in cols:
            schema, table, col, dtype, udt = row
            ident = f'"{schema}"."{table}"'
            qcol = f'"{col}"'
            if dtype == "bytea":
                cond = f"position(convert_to($1, 'UTF8') in {qcol}) > 0"
            elif dtype in ("text", "character varying", "character", "json", "jsonb", "xml") or (
                dtype == "ARRAY" and udt in ("_text", "_varchar")
            ):
                cond = f"position($1 in {qcol}::text) > 0"
            else:
                continue
            n = await conn.fetchval(f"SELECT count(*) FROM {ident} WHERE {cond}", needle)
            if n:
                hits.append(f"postgres {database_url.rsplit('/', 1)[-1]}: {schema}.{table}.{col} ({n} rows)")
    finally:
        await conn.close()
    return hits


# --------------------------------------------------------------------------------------------
# files and SQLite
# --------------------------------------------------------------------------------------------


def search_files(root: Path, needle: str, max_bytes: int = 512 * 1024 * 1024) -> list[str]:
    raw = needle.encode()
    hits = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            if path.stat().st_size > max_bytes:
                continue
            if raw in path.read_bytes():
                hits.append(f"file {path}")
        except OSError:
            continue
    return hits


def sqlite_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            with path.open("rb") as fh:
                if fh.read(16) == b"SQLite format 3\x00":
                    found.append(path)
        except OSError:
            continue
    return found


def search_sqlite_dbs(root: Path, needle: str) -> list[str]:
    hits = []
    for path in sqlite_files(root):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
            for table in tables:
                try:
                    cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")').fetchall()]
                except sqlite3.DatabaseError:
                    continue
                for col in cols:
                    try:
                        n = conn.execute(
                            f'SELECT count(*) FROM "{table}" WHERE instr(CAST("{col}" AS BLOB), CAST(? AS BLOB)) > 0',
                            (needle,),
                        ).fetchone()[0]
                    except sqlite3.DatabaseError:
                        continue
                    if n:
                        hits.append(f"sqlite {path.name}: {table}.{col} ({n} rows)")
        finally:
            conn.close()
    return hits
