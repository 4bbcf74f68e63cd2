"""Helpers of the cluster tests: real `paigham serve` worker processes on one PostgreSQL database and
one NATS server, and a small Client-Server API client (httpx) that can move between workers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

PG_ADMIN = os.environ.get("PAIGHAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("PAIGHAM_TEST_NATS", "nats://127.0.0.1:4222")
READY_TIMEOUT_S = 60.0


def require_services() -> None:
    """PostgreSQL and NATS must answer; outside CI the tests skip, in CI (CI set) they fail."""
    problems = []
    for name, url, default_port in (("PostgreSQL", PG_ADMIN, 5432), ("NATS", NATS_URL, 4222)):
        hostport = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        host, _, port = hostport.partition(":")
        try:
            socket.create_connection((host, int(port or default_port)), timeout=3).close()
        except OSError as exc:
            problems.append(f"{name} at {url}: {exc}")
    if problems:
        msg = "cluster tests need " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set: the cluster tests must not be skipped)")
        pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_url(db: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + db


async def create_database() -> str:
    import asyncpg

    name = f"paigham_cluster_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class Worker:
    index: int
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """N `paigham serve` processes sharing a data dir (signing key), a database and NATS."""

    data_dir: Path
    database: str
    secret: str
    workers: list[Worker] = field(default_factory=list)
    nats_url: str = NATS_URL

    @property
    def database_url(self) -> str:
        return pg_url(self.database)

    def command(self, port: int, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "paigham",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--server-name",
            "localhost",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            self.database_url,
            "--nats-url",
            self.nats_url,
            "--registration-shared-secret",
            self.secret,
            *extra,
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PAIGHAM_", "PROMETHEUS_"))}
        env["PAIGHAM_CREATE_ADMIN"] = "false"
        env["PAIGHAM_PRESENCE_ENABLED"] = "false"
        return env

    def start(self, w: Worker) -> None:
        w.log = self.data_dir.parent / f"worker{w.index}-{w.port}.log"
        with open(w.log, "ab") as out:
            w.proc = subprocess.Popen(
                self.command(w.port), stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
            )

    def kill(self, w: Worker) -> None:
        assert w.proc is not None
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait(10)

    def stop_all(self) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.terminate()
        for w in self.workers:
            if w.proc is not None:
                try:
                    w.proc.wait(10)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait(5)

    def logs(self) -> str:
        out = []
        for w in self.workers:
            if w.log and w.log.exists():
                out.append(f"--- worker {w.index} ---\n" + w.log.read_text(errors="replace")[-3000:])
        return "\n".join(out)


async def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server at {url} exited with {proc.returncode}")
            try:
                r = await http.get(url + "/ready")
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


async def start_cluster(tmp: Path, n: int, nats_url: str = NATS_URL) -> Cluster:
    cluster = Cluster(tmp / "data", await create_database(), secrets.token_urlsafe(16), nats_url=nats_url)
    cluster.data_dir.mkdir(parents=True)
    cluster.workers = [Worker(i, free_port()) for i in range(n)]
    for w in cluster.workers:  # all at once: migrations and the signing key must cope with the race
        cluster.start(w)
    try:
        await asyncio.gather(*(wait_ready(w.url, w.proc) for w in cluster.workers))
    except Exception:
        cluster.stop_all()
        print(cluster.logs())
        await drop_database(cluster.database)
        raise
    return cluster


RETRYABLE = (httpx.TransportError,)


class Client:
    """One Matrix user (one device) talking to a list of workers; `home` is where requests go first,
    and a request that fails in transport, or with a 5xx, is retried unchanged on the next worker."""

    def __init__(self, http: httpx.AsyncClient, urls: list[str], home: int = 0) -> None:
        self.http = http
        self.urls = urls
        self.home = home
        self.user_id = ""
        self.token = ""
        self.failovers = 0

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float = 30,
        attempts: int = 6,
    ) -> dict[str, Any]:
        last: Exception | None = None
        for _ in range(attempts):
            url = self.urls[self.home] + path
            try:
                r = await self.http.request(
                    method,
                    url,
                    json=json_body,
                    params=params,
                    timeout=timeout,
                    headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
                )
                if r.status_code < 500:
                    if r.status_code >= 400:
                        raise AssertionError(f"{method} {path} -> {r.status_code} {r.text}")
                    body: dict[str, Any] = r.json()
                    return body
                last = AssertionError(f"{method} {path} -> {r.status_code} {r.text}")
            except RETRYABLE as exc:
                last = exc
            self.home = (self.home + 1) % len(self.urls)
            self.failovers += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"{method} {path} failed on every worker: {last!r}")

    async def register(self, secret: str, username: str) -> None:
        nonce = (await self.request("GET", "/_synapse/admin/v1/register"))["nonce"]
        password = "pw-" + username
        mac = hmac.new(
            secret.encode(), b"\x00".join(x.encode() for x in (nonce, username, password, "notadmin")), hashlib.sha1
        ).hexdigest()
        body = await self.request(
            "POST",
            "/_synapse/admin/v1/register",
            json_body={"nonce": nonce, "username": username, "password": password, "admin": False, "mac": mac},
        )
        self.user_id, self.token = body["user_id"], body["access_token"]

    async def create_room(self, **extra: Any) -> str:
        body = await self.request("POST", "/_matrix/client/v3/createRoom", json_body={"preset": "public_chat", **extra})
        return str(body["room_id"])

    async def join(self, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/join/{quote(room_id)}", json_body={})

    async def send(self, room_id: str, body: str, txn_id: str | None = None) -> str:
        txn = txn_id or secrets.token_hex(8)
        out = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn}",
            json_body={"msgtype": "m.text", "body": body},
        )
        return str(out["event_id"])

    async def sync(self, since: str | None = None, timeout_ms: int = 0, limit: int = 500) -> dict[str, Any]:
        params: dict[str, Any] = {"timeout": timeout_ms, "filter": json.dumps({"room": {"timeline": {"limit": limit}}})}
        if since:
            params["since"] = since
        return await self.request("GET", "/_matrix/client/v3/sync", params=params, timeout=timeout_ms / 1000 + 30)

    async def history(self, room_id: str, worker: int) -> list[dict[str, Any]]:
        """Every event of the room, oldest first, read through one worker (no failover)."""
        events: list[dict[str, Any]] = []
        frm: str | None = None
        for _ in range(100):
            params: dict[str, Any] = {"dir": "b", "limit": 500}
            if frm:
                params["from"] = frm
            r = await self.http.get(
                self.urls[worker] + f"/_matrix/client/v3/rooms/{quote(room_id)}/messages",
                params=params,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            body = r.json()
            events.extend(body["chunk"])
            if not body["chunk"] or "end" not in body:
                break
            frm = body["end"]
        return list(reversed(events))


def timeline_of(sync_body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = sync_body.get("rooms", {}).get("join", {}).get(room_id)
    return list(room["timeline"]["events"]) if room else []


async def sync_waiters(http: httpx.AsyncClient, url: str) -> float:
    r = await http.get(url + "/metrics")
    for line in r.text.splitlines():
        if line.startswith("paigham_sync_waiters "):
            return float(line.split()[1])
    return 0.0


async def room_chain(database: str, room_id: str) -> list[tuple[int, str, int, list[str]]]:
    """(stream, event_id, depth, prev_events) of every event of the room, in stream order."""
    import asyncpg

    conn = await asyncpg.connect(pg_url(database), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT stream, event_id, depth, json FROM events WHERE room_id = $1 ORDER BY stream", room_id
        )
    finally:
        await conn.close()
    return [(r["stream"], r["event_id"], r["depth"], json.loads(r["json"])["prev_events"]) for r in rows]


def assert_linear(chain: list[tuple[int, str, int, list[str]]]) -> None:
    """One line of history: depth 1, 2, 3, … in stream order, each event pointing at the one before."""
    assert chain, "no events"
    ids = [c[1] for c in chain]
    assert len(set(ids)) == len(ids), "duplicate event IDs"
    for i, (_, event_id, depth, prev) in enumerate(chain):
        assert depth == i + 1, f"{event_id}: depth {depth} at position {i + 1} (gap or fork)"
        assert prev == ([chain[i - 1][1]] if i else []), f"{event_id}: prev_events {prev} (forked history)"


async def metric(http: httpx.AsyncClient, url: str, name: str) -> float:
    """A counter or gauge of a worker's /metrics (0 when it has not appeared yet)."""
    r = await http.get(url + "/metrics")
    for line in r.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
