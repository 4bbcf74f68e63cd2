"""Schemathesis over every operation this server routes, against a real `paigham serve` process.

The spec's own OpenAPI document drives the generator: valid and invalid bodies, query strings and
path parameters (over-long, unicode, wrong types, huge integers, empty bodies, …). Every response must
be no 5xx (`not_a_server_error`) and must conform to the document (`matrix_conformance`: the same
checker as the conformance scenario, tests/api/openapi.py, with its documented decisions — every 4xx
is a standard Matrix error with `errcode` and `error`).

Operations the route table does not serve (they answer 404 M_UNRECOGNIZED) are not fuzzed; the list
comes from `Server.routes()`, never from a hand-written list. Half of the generated cases get real
IDs (the fuzzing user, its room, an event, its device, a filter, an alias) so the handlers past the
ID checks are exercised too. Runs on SQLite and, when it is reachable, PostgreSQL.

Bounded for `make test` (about half a minute per engine on a 2-core machine): the spec's examples
plus MAX_EXAMPLES generated cases per operation, derandomized so a run is repeatable. A deeper run
adds schemathesis' coverage phase (boundary values, wrong types, missing fields for every parameter,
~4,000 requests) and more examples:

    PAIGHAM_FUZZ_PHASES=examples,coverage,fuzzing PAIGHAM_FUZZ_EXAMPLES=50 \
        .venv/bin/python -m pytest tests/api/test_fuzz_schemathesis.py --timeout=0 -s

Inputs the generator rarely produces but that broke the server once (NUL characters, out-of-range
tokens) are pinned in tests/api/test_hostile_inputs.py.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis

from tests import pg
from tests.api.openapi import spec

MAX_EXAMPLES = int(os.environ.get("PAIGHAM_FUZZ_EXAMPLES", "3"))
PHASES = os.environ.get("PAIGHAM_FUZZ_PHASES", "examples,fuzzing").split(",")
WORKERS = 1  # schemathesis' worker threads race in hypothesis internals on Python 3.11
SERVER_NAME = "fuzz.local"
SECRET = "fuzz-shared-secret"
PASSWORD = "fuzz-password-1"
REPO = Path(__file__).resolve().parents[2]
V3 = "/_matrix/client/v3"
# Calls that end sessions run as a spare user with a fresh login, so the fuzzing user's token lives on
# (logout/all would end every session of whoever calls it).
SESSION_ENDING = {"POST /_matrix/client/v3/logout", "POST /_matrix/client/v3/logout/all"}


@dataclass
class Live:
    base_url: str
    token: str
    user_id: str
    ids: dict[str, str]  # path parameter name -> a real value
    log: Path
    http: httpx.Client

    peer_token: str = ""

    def ensure_joined(self) -> None:
        room = self.ids["roomId"]
        me, peer = {"Authorization": f"Bearer {self.token}"}, {"Authorization": f"Bearer {self.peer_token}"}
        joined = self.http.get(f"{V3}/joined_rooms", headers=me).json().get("joined_rooms", [])
        if room not in joined:
            self.http.post(f"{V3}/rooms/{quote(room)}/invite", headers=peer, json={"user_id": self.user_id})
            self.http.post(f"{V3}/rooms/{quote(room)}/join", headers=me, json={})

    def login(self) -> str:
        """A new session of the spare user."""
        r = self.http.post(f"{V3}/login", json={"type": "m.login.password", "user": "spare", "password": PASSWORD})
        r.raise_for_status()
        return str(r.json()["access_token"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data_dir: Path, database_url: str | None) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = _free_port()
    log = data_dir / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "paigham",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--server-name",
        SERVER_NAME,
        "--registration-shared-secret",
        SECRET,
    ]
    if database_url:
        cmd += ["--database-url", database_url]
    # A fuzzed /sync timeout may ask for a long poll; cap it so no case waits for a minute.
    env = dict(
        os.environ,
        PAIGHAM_CREATE_ADMIN="false",
        PAIGHAM_ENCRYPTION_BY_DEFAULT="false",
        PAIGHAM_SYNC_TIMEOUT_MAX_MS="100",
        PYTHONUNBUFFERED="1",
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"paigham serve exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base, log
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"paigham serve did not become ready:\n{log.read_text(errors='replace')}")


def _register(http: httpx.Client, name: str) -> dict[str, Any]:
    """Shared-secret registration (the provisioning path), so the test needs no CLI round trip."""
    nonce = http.get("/_synapse/admin/v1/register").json()["nonce"]
    mac = hmac.new(
        SECRET.encode(), b"\x00".join([nonce.encode(), name.encode(), PASSWORD.encode(), b"notadmin"]), hashlib.sha1
    ).hexdigest()
    r = http.post(
        "/_synapse/admin/v1/register", json={"nonce": nonce, "username": name, "password": PASSWORD, "mac": mac}
    )
    r.raise_for_status()
    return dict(r.json())


def _seed(http: httpx.Client) -> tuple[dict[str, Any], dict[str, str]]:
    """A fuzzing user with a room it moderates (owned by a peer, so it cannot lock itself out)."""
    fuzzer, peer = _register(http, "fuzzer"), _register(http, "peer")
    _register(http, "spare")
    me = {"Authorization": f"Bearer {fuzzer['access_token']}"}
    other = {"Authorization": f"Bearer {peer['access_token']}"}
    room = http.post(
        f"{V3}/createRoom",
        headers=other,
        json={
            "preset": "public_chat",
            "room_alias_name": "fuzz",
            "name": "Fuzz",
            "power_level_content_override": {"users": {peer["user_id"]: 100, fuzzer["user_id"]: 50}},
        },
    ).json()["room_id"]
    http.post(f"{V3}/join/{quote(room)}", headers=me, json={}).raise_for_status()
    sent = http.put(
        f"{V3}/rooms/{quote(room)}/send/m.room.message/seed1", headers=me, json={"msgtype": "m.text", "body": "seed"}
    )
    sent.raise_for_status()
    flt = http.post(
        f"{V3}/user/{quote(fuzzer['user_id'])}/filter", headers=me, json={"room": {"timeline": {"limit": 5}}}
    ).json()["filter_id"]
    ids = {
        "userId": fuzzer["user_id"],
        "roomId": room,
        "roomIdOrAlias": room,
        "eventId": sent.json()["event_id"],
        "deviceId": fuzzer["device_id"],
        "filterId": flt,
        "roomAlias": f"#fuzz:{SERVER_NAME}",
        "kind": "override",
        "ruleId": ".m.rule.master",
        "receiptType": "m.read",
        "relType": "m.thread",
        "keyName": "displayname",
        "eventType": "m.room.message",
        "type": "org.example.fuzz",
        "tag": "u.fuzz",
    }
    return {**fuzzer, "peer_token": peer["access_token"]}, ids


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    database_url = None
    if request.param == "postgres":
        database_url = asyncio.run(pg.fresh_database())
    with tempfile.TemporaryDirectory(prefix="paigham-fuzz-") as tmp:
        proc, base, log = _start(Path(tmp), database_url)
        try:
            with httpx.Client(base_url=base, timeout=30) as http:
                fuzzer, ids = _seed(http)
                yield Live(base, fuzzer["access_token"], fuzzer["user_id"], ids, log, http, fuzzer["peer_token"])
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            if database_url:
                asyncio.run(pg.drop_database(database_url))


def routed_operations() -> set[str]:
    """Labels ("METHOD /path") of the spec operations that the server's route table serves."""
    from paigham.app import Server
    from paigham.config import Config

    with tempfile.TemporaryDirectory() as tmp:
        routes = [
            (m, r.path_regex)
            for r in Server(Config(data_dir=tmp, create_admin=False)).routes()
            for m in (getattr(r, "methods", None) or [])
            if m != "HEAD" and hasattr(r, "path_regex")
        ]
    out = set()
    for op in spec().operations:
        sample = re.sub(r"\{[^}]+\}", "x", op.template.strip())
        if any(m == op.method.upper() and rx.match(sample) for m, rx in routes):
            out.add(op.label)
    return out


class _Run:
    """What the global schemathesis hooks act on; set only while this module's test runs."""

    live: Live | None = None


@schemathesis.check
def matrix_conformance(ctx: Any, response: Any, case: Any) -> bool | None:
    """The response conforms to the spec document, with tests/api/openapi.py's documented decisions."""
    if _Run.live is None:
        return None
    body: Any = None
    if response.content:
        try:
            body = response.json()
        except ValueError:
            body = response.content[:200]
    raw = httpx.URL(response.request.url).raw_path.decode("ascii").split("?", 1)[0]
    ctype = response.headers.get("content-type", [""])
    problems = spec().check(
        case.method, raw, response.status_code, body, ctype[0] if isinstance(ctype, list) else str(ctype)
    )
    assert not problems, "\n".join(problems)
    return None


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Authenticate every case, give every other one the real IDs (chosen by a hash of its own
    parameters, so a run is repeatable), and give session-ending calls a throwaway login."""
    live = _Run.live
    if live is None:
        return
    params = case.path_parameters or {}
    if params and zlib.crc32(repr(sorted(params.items())).encode()) % 2 == 0:
        for name in params:
            if name in live.ids:
                params[name] = live.ids[name]
    label = f"{case.method.upper()} {case.operation.path}"
    token = live.login() if label in SESSION_ENDING else live.token
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """Keep the fuzzing user in its room: a fuzzed leave or kick must not starve later operations."""
    live = _Run.live
    if live is None or case.method.upper() == "GET" or "{roomId" not in case.operation.path:
        return
    live.ensure_joined()


def fuzz_document() -> dict[str, Any]:
    """The spec document with its trailing-space keys folded in: "/rooms/{roomId}/invite " (invite a
    user) and "/events " (peek) are second operations on the same URL as the 3PID invite and the
    deprecated /events. Requested literally they would send a path with a space, so the fuzzer gets
    them on the real URL instead of the 3PID/deprecated ones (which the server does not implement)."""
    document = copy.deepcopy(spec().document)
    paths = document["paths"]
    for key in [k for k in paths if k != k.strip()]:
        paths[key.strip()] = {**paths.get(key.strip(), {}), **paths.pop(key)}
    return document


def fuzz_schema(live: Live) -> Any:
    schema = schemathesis.openapi.from_dict(fuzz_document())
    wanted = routed_operations()

    def served(ctx: Any) -> bool:
        return f"{ctx.operation.method.upper()} {ctx.operation.path}" in wanted

    included = schema.include(served)
    config = included.config
    config.update(base_url=live.base_url, workers=WORKERS, request_timeout=30)
    config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, no_shrink=True)
    config.phases.update(phases=PHASES)
    # Wrong-method probes only meet Starlette's generic 405, already covered by the conformance test.
    config.phases.coverage.unexpected_methods = set()
    config.checks.update(included_check_names=["not_a_server_error", "matrix_conformance"])
    return included


@dataclass
class Finding:
    operation: str
    check: str
    request: str
    status: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.operation} [{self.check}] {self.request} -> {self.status}\n    {self.message[:600]}"


def run_engine(live: Live) -> tuple[list[Finding], Counter[str]]:
    from schemathesis.engine import Status, events, from_schema

    findings: list[Finding] = []
    stats: Counter[str] = Counter()
    slow: defaultdict[str, float] = defaultdict(float)
    _Run.live = live
    try:
        for event in from_schema(fuzz_schema(live)).execute():
            if isinstance(event, events.FatalError):
                raise AssertionError(f"schemathesis stopped: {event.exception!r}")
            if isinstance(event, events.NonFatalError):
                findings.append(Finding(event.label, "error", "", None, str(event.info.message)))
            if not isinstance(event, events.ScenarioFinished):
                continue
            stats[str(event.status)] += 1
            slow[f"{event.phase} {event.label}"] += event.elapsed_time
            recorder = event.recorder
            for case_id, interaction in recorder.interactions.items():
                stats["requests"] += 1
                if interaction.response is not None:
                    stats[f"{interaction.response.status_code // 100}xx"] += 1
                for node in recorder.checks.get(case_id, []):
                    if node.status == Status.FAILURE and node.failure_info is not None:
                        req = interaction.request
                        body = (req.body or b"")[:300].decode(errors="replace")
                        status = interaction.response.status_code if interaction.response else None
                        findings.append(
                            Finding(
                                recorder.label,
                                node.name,
                                f"{req.method} {req.uri} {body}",
                                status,
                                node.failure_info.failure.message,
                            )
                        )
    finally:
        _Run.live = None
    if os.environ.get("PAIGHAM_FUZZ_TIMINGS"):
        slowest = sorted(slow.items(), key=lambda kv: kv[1], reverse=True)[:25]
        print("\n".join(f"{t:6.2f}s {label}" for label, t in slowest))
    return findings, stats


def test_fuzz_every_routed_operation(live: Live) -> None:
    findings, stats = run_engine(live)
    print(f"schemathesis: {dict(stats)}")
    # A fuzzer that only meets 401s and 404s proves little: a tenth of the answers must be successes.
    assert stats["2xx"] * 10 >= stats["requests"] > 0, dict(stats)
    unique = {(f.operation, f.check, f.status, f.message[:200]): f for f in findings}
    report = "\n".join(str(f) for f in unique.values())
    logs = live.log.read_text(errors="replace")[-4000:] if findings else ""
    assert not unique, f"{len(unique)} distinct failures:\n{report}\n--- server log (tail) ---\n{logs}"
