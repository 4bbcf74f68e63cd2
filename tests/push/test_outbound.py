"""The outbound policy and client (services/outbound.py): allowlist prefixes at a boundary, blocked
address ranges unless whitelisted, one resolution whose checked address is the one connected to,
no redirects followed, a deadline; answers read as HTTP/1.1 says (length, chunks, close, interim
answers, a body over the limit), a garbled answer as none."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from paigham.services import outbound
from paigham.services.outbound import (
    GatewayRefused,
    GatewayUnreachable,
    OutboundClient,
    OutboundPolicy,
    url_allowed,
)
from tests.push.support import NOTIFY_PATH, NtfyGateway


def test_allowlist_prefixes_match_at_a_boundary() -> None:
    allow = ["https://ntfy.gov.example", "https://push.gov.example/_matrix/push/v1/notify"]
    assert url_allowed("https://ntfy.gov.example/_matrix/push/v1/notify", allow)
    assert url_allowed("https://push.gov.example/_matrix/push/v1/notify", allow)
    assert not url_allowed("https://ntfy.gov.example.evil.com/_matrix/push/v1/notify", allow)
    assert not url_allowed("https://ntfy.gov.example:8443/_matrix/push/v1/notify", allow)
    assert not url_allowed("http://ntfy.gov.example/_matrix/push/v1/notify", allow)  # another scheme
    assert not url_allowed("https://push.gov.example/_matrix/push/v1/notifyX", allow)
    assert not url_allowed("https://matrix.org/_matrix/push/v1/notify", allow)
    assert not url_allowed("https://ntfy.gov.example/", [])


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # link-local: cloud metadata
        ("0.0.0.0", False),
        ("100.64.0.1", False),  # shared address space (CGNAT)
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::", False),
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
    ],
)
def test_blocked_address_ranges(address: str, allowed: bool) -> None:
    assert OutboundPolicy([], []).address_allowed(ipaddress.ip_address(address)) is allowed


def test_whitelisted_ranges_are_allowed() -> None:
    policy = OutboundPolicy([], ["10.20.0.0/16", "::1/128"])
    assert policy.address_allowed(ipaddress.ip_address("10.20.3.4"))
    assert not policy.address_allowed(ipaddress.ip_address("10.21.3.4"))
    assert policy.address_allowed(ipaddress.ip_address("::1"))
    assert not policy.address_allowed(ipaddress.ip_address("127.0.0.1"))


@pytest.fixture
async def ntfy() -> AsyncIterator[NtfyGateway]:
    gw = NtfyGateway()
    await gw.start()
    yield gw
    await gw.stop()


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: list[list[str]]) -> list[str]:
    """gateway.test resolves to each list of `answers` in turn (a rebinding resolver); returns the
    names looked up."""
    looked_up: list[str] = []
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host != "gateway.test":
            return await real(host, port, *args, **kw)
        looked_up.append(host)
        addresses = answers[min(len(looked_up), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return looked_up


async def test_connects_to_the_checked_address_once(monkeypatch: pytest.MonkeyPatch, ntfy: NtfyGateway) -> None:
    # First answer whitelisted loopback; a second lookup would get a blocked address.
    looked_up = _fake_dns(monkeypatch, [["127.0.0.1"], ["10.9.9.9"]])
    url = f"http://gateway.test:{ntfy.port}{NOTIFY_PATH}"
    client = OutboundClient(OutboundPolicy([f"http://gateway.test:{ntfy.port}"], ["127.0.0.0/8"]), 2.0)
    body = b'{"notification": {"devices": [{"app_id": "a", "pushkey": "k"}]}}'
    answer = await client.post_json(url, body)
    assert answer.status == 200 and looked_up == ["gateway.test"]
    assert ntfy.requests[0]["devices"][0]["pushkey"] == "k"
    # The connection is kept alive: the next request reuses it, without a second lookup.
    assert (await client.post_json(url, body)).status == 200
    assert looked_up == ["gateway.test"] and len(ntfy.requests) == 2
    await client.close()


async def test_connections_are_kept_alive_and_one_closed_by_the_gateway_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connections: list[int] = []
    close_after_answer = False

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"rejected":[]}')
                await writer.drain()
                if close_after_answer:
                    break  # as a gateway closing an idle connection: no Connection: close said
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}{NOTIFY_PATH}"
    client = OutboundClient(OutboundPolicy([f"http://127.0.0.1:{port}/"], ["127.0.0.0/8"]), 2.0)
    try:
        for _ in range(3):
            assert (await client.post_json(url, b"{}")).status == 200
        assert len(connections) == 1
        close_after_answer = True
        assert (await client.post_json(url, b"{}")).status == 200  # on the kept connection, which then closes
        await asyncio.sleep(0.05)
        assert (await client.post_json(url, b"{}")).status == 200  # the closed one is replaced
        assert len(connections) == 2
        # Taken from the pool before its close was seen: the request fails before any answer and is
        # made once more on a new connection.
        await asyncio.sleep(0.05)
        monkeypatch.setattr(outbound._Connection, "usable", lambda self, now: True)
        assert (await client.post_json(url, b"{}")).status == 200
        assert len(connections) == 3
    finally:
        await client.close()
        server.close()


async def test_blocked_resolution_is_unreachable(monkeypatch: pytest.MonkeyPatch, ntfy: NtfyGateway) -> None:
    _fake_dns(monkeypatch, [["10.0.0.7", "127.0.0.1"]])
    client = OutboundClient(OutboundPolicy([f"http://gateway.test:{ntfy.port}"], []), 2.0)
    with pytest.raises(GatewayUnreachable, match="IP address blocked"):
        await client.post_json(f"http://gateway.test:{ntfy.port}{NOTIFY_PATH}", b"{}")
    with pytest.raises(GatewayRefused):  # not allowlisted: refused before any lookup
        await client.post_json(f"http://other.test:{ntfy.port}{NOTIFY_PATH}", b"{}")
    assert ntfy.requests == []


async def test_redirects_are_not_followed_and_a_silent_gateway_times_out() -> None:
    hits: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        hits.append(request.split(b" ", 2)[1].decode())
        if hits[-1].startswith("/silent"):
            await asyncio.sleep(5)
        else:
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = OutboundClient(OutboundPolicy([f"http://127.0.0.1:{port}/"], ["127.0.0.0/8"]), 0.5)
    try:
        answer = await client.post_json(f"http://127.0.0.1:{port}/redirect", b"{}")
        assert answer.status == 302 and hits == ["/redirect"]
        with pytest.raises(GatewayUnreachable, match="no answer within"):
            await client.post_json(f"http://127.0.0.1:{port}/silent", b"{}")
    finally:
        server.close()


async def _answering(answer: bytes, *, close: bool) -> tuple[asyncio.Server, list[bytes]]:
    """A gateway that reads one request (head and body) and writes `answer` as it is; closes after it if
    `close`."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                seen.append(head + await reader.readexactly(length))
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


@pytest.mark.parametrize(
    ("answer", "close", "status", "body", "reused"),
    [
        # a body delimited by the connection's close (no length given)
        (b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"rejected":[]}', True, 200, b'{"rejected":[]}', False),
        # chunked, then kept alive
        (
            b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"re\r\n9\r\njected":[\r\n2\r\n]}\r\n0\r\n\r\n',
            False,
            200,
            b'{"rejected":[]}',
            True,
        ),
        # an interim answer first: the final one counts
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", False, 200, b"{}", True),
        # an HTTP/1.0 answer: not kept
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", False, 200, b"{}", False),
        # a body over the limit: the status counts, the body is not read on, the connection not kept
        (b"HTTP/1.1 413 Too Large\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70_000, False, 413, b"", False),
    ],
)
async def test_answers_are_read_as_http_says(
    answer: bytes, close: bool, status: int, body: bytes, reused: bool
) -> None:
    server, seen = await _answering(answer, close=close)
    port = server.sockets[0].getsockname()[1]
    client = OutboundClient(OutboundPolicy([f"http://127.0.0.1:{port}/"], ["127.0.0.0/8"]), 2.0)
    try:
        got = await client.post_json(f"http://127.0.0.1:{port}{NOTIFY_PATH}?x=1", b'{"n": 1}')
        assert (got.status, got.body) == (status, body)
        assert (
            seen[0]
            == (
                f"POST {NOTIFY_PATH}?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: Paigham push\r\n"
                'Content-Type: application/json\r\nContent-Length: 8\r\n\r\n{"n": 1}'
            ).encode()
        )
        assert sum(len(v) for v in client._idle.values()) == (1 if reused else 0)
    finally:
        await client.close()
        server.close()


async def test_a_garbled_answer_is_no_answer_and_an_unsendable_url_is_refused() -> None:
    server, _ = await _answering(b"SMTP ready\r\n\r\n", close=False)
    port = server.sockets[0].getsockname()[1]
    client = OutboundClient(OutboundPolicy([f"http://127.0.0.1:{port}/"], ["127.0.0.0/8"]), 2.0)
    try:
        with pytest.raises(GatewayUnreachable, match="not an HTTP answer"):
            await client.post_json(f"http://127.0.0.1:{port}{NOTIFY_PATH}", b"{}")
        for bad in (
            f"http://127.0.0.1:{port}/a b",
            f"http://127.0.0.1:{port}/\u0928",
            f"http://127.0.0.1:{port}/a\r\nX: y",
        ):
            with pytest.raises(GatewayRefused):
                await client.post_json(bad, b"{}")
    finally:
        await client.close()
        server.close()


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_https_connects_to_the_checked_address_and_verifies_the_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path, "gateway.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"rejected":[]}')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    _fake_dns(monkeypatch, [["127.0.0.1"]])
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        client = OutboundClient(OutboundPolicy([f"https://gateway.test:{port}"], ["127.0.0.0/8"]), 2.0, tls=trusting)
        answer = await client.post_json(f"https://gateway.test:{port}{NOTIFY_PATH}", b"{}")
        assert answer.status == 200 and answer.body == b'{"rejected":[]}'
        assert f"Host: gateway.test:{port}".encode() in seen[0]
        # The certificate is checked against the name, not the address connected to.
        _fake_dns(monkeypatch, [["127.0.0.1"]])
        other = OutboundClient(OutboundPolicy([f"https://127.0.0.1:{port}"], ["127.0.0.0/8"]), 2.0, tls=trusting)
        with pytest.raises(GatewayUnreachable, match=r"SSL|certificate"):
            await other.post_json(f"https://127.0.0.1:{port}{NOTIFY_PATH}", b"{}")
    finally:
        server.close()
