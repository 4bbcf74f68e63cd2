"""A real `paigham serve` cuts off connections that never finish a request, and caps connections per
address and in total (paigham/connection_guard.py). Each of these held sockets for ever on 81fc255."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.acc_support import find_free_port, wait_until_ready

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("guard")
    port = find_free_port()
    env = dict(
        os.environ,
        PAIGHAM_HTTP_HEADER_TIMEOUT_S="1",
        PAIGHAM_HTTP_BODY_IDLE_TIMEOUT_S="1",
        PAIGHAM_HTTP_MAX_CONNECTIONS="40",
        PAIGHAM_HTTP_MAX_CONNECTIONS_PER_IP="5",
        PAIGHAM_HTTP_CONNECTION_EXEMPT="127.0.0.1",  # the test's other address, 127.0.0.2, is limited
        PAIGHAM_CREATE_ADMIN="false",
    )
    cmd = [sys.executable, "-m", "paigham", "serve", "--data-dir", str(data), "--port", str(port)]
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        ready, why = wait_until_ready(base, proc, 60)
        assert ready, why
        printed = (data / "server.log").read_text()
        assert f"Listening on   {base}" in printed, printed  # the start-up banner (README's quick start)
        assert "alembic" not in printed.lower()  # and no migration narration
        # The serving process is the lean one `serve` turned into (cluster.become_server: same PID, the
        # configuration carried over, as the limits tested below show), without the command line's pydantic.
        assert "paigham.cluster" in Path(f"/proc/{proc.pid}/cmdline").read_text()
        assert "pydantic_core" not in Path(f"/proc/{proc.pid}/maps").read_text()
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _connect(base: str, source: str = "127.0.0.1") -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect((host, int(port)))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_half_sent_headers_are_cut_off_and_the_server_keeps_answering(server: str) -> None:
    socks = [_connect(server) for _ in range(10)]
    for sock in socks:
        sock.sendall(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n")  # no blank line: never finished
    silent = _connect(server)  # sends nothing at all
    start = time.monotonic()
    answers = [_read_all(sock) for sock in [*socks, silent]]
    assert time.monotonic() - start < 4
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
    assert httpx.get(f"{server}/_matrix/client/versions").status_code == 200


def test_a_stalled_body_is_cut_off(server: str) -> None:
    sock = _connect(server)
    sock.sendall(
        b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"type":'
    )
    start = time.monotonic()
    _read_all(sock)  # closed by the server (the handler sees a disconnect; nothing is answered)
    assert time.monotonic() - start < 4


def test_a_slow_but_moving_body_is_not_cut_off(server: str) -> None:
    body = json.dumps({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody"},
                       "password": "wrong-password"}).encode()  # fmt: skip
    sock = _connect(server)
    sock.sendall(b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))  # fmt: skip
    for i in range(0, len(body), len(body) // 3 + 1):  # 3 pieces, 0.6 s apart: 1.8 s in all, never 1 s idle
        sock.sendall(body[i : i + len(body) // 3 + 1])
        time.sleep(0.6)
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


def test_one_address_cannot_take_every_connection(server: str) -> None:
    held = [_connect(server, "127.0.0.2") for _ in range(5)]
    try:
        refused = _connect(server, "127.0.0.2")
        answer = _read_all(refused)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429"), answer[:200]
        assert json.loads(body)["errcode"] == "M_LIMIT_EXCEEDED"
        # Another address (here the exempt proxy address) still gets in.
        assert httpx.get(f"{server}/_matrix/client/versions").status_code == 200
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    again = _connect(server, "127.0.0.2")
    again.sendall(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _read_all(again).startswith(b"HTTP/1.1 200")


def test_the_total_is_capped_with_a_clear_refusal(server: str) -> None:
    held = []
    try:
        for _ in range(40):
            held.append(_connect(server))  # exempt address: only the total applies
        refused = _connect(server)
        answer = _read_all(refused)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"retry-after: 5" in head.lower()
        assert json.loads(body)["errcode"] == "M_UNKNOWN"
    finally:
        for sock in held:
            sock.close()
