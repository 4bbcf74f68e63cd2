"""The virus-scanner hook: clamd's INSTREAM protocol over a unix socket or TCP.

`zINSTREAM\\0`, then chunks as a 4-byte big-endian length followed by the bytes, then a zero length;
clamd answers `stream: OK`, `stream: <signature> FOUND`, or `... ERROR` (NUL-terminated).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

MAX_REPLY = 4096


@dataclass(frozen=True, slots=True)
class ScanResult:
    clean: bool
    signature: str = ""


class ScannerUnavailable(Exception):
    """clamd could not be reached or answered with an error; the upload is refused (fail closed)."""


class ClamdScanner:
    def __init__(self, *, socket_path: str = "", host: str = "", port: int = 3310, timeout_s: float = 60.0) -> None:
        self.socket_path = socket_path
        self.host = host
        self.port = port
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"ClamdScanner({self.socket_path or f'{self.host}:{self.port}'})"

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        if self.socket_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = self.socket_path
        else:
            info = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            family, _, _, _, address = info[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanResult:
        try:
            return await asyncio.wait_for(self._scan(chunks), self.timeout_s)
        except TimeoutError:
            raise ScannerUnavailable("the virus scanner did not answer in time") from None
        except OSError as exc:
            raise ScannerUnavailable(f"the virus scanner is unreachable: {exc.strerror or exc}") from None

    async def _scan(self, chunks: AsyncIterator[bytes]) -> ScanResult:
        """Send the stream while reading the answer. clamd answers early and hangs up when a stream is
        over its size limit; the socket (not a stream transport, which drops what it has not read yet
        when a write fails) is kept open after a failed send, so that answer is still read."""
        sock = await self._connect()
        answer = asyncio.ensure_future(_read_reply(sock))
        try:
            with contextlib.suppress(ConnectionError):
                await _send(sock, chunks, answer)
            reply = await answer
        finally:
            answer.cancel()
            sock.close()
        return parse_reply(reply.rstrip(b"\0").decode("utf-8", "replace"))


async def _send(sock: socket.socket, chunks: AsyncIterator[bytes], answer: asyncio.Future[bytes]) -> None:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, b"zINSTREAM\0")
    async for chunk in chunks:
        if answer.done():  # answered already (over the size limit): the rest is not read
            return
        if chunk:
            await loop.sock_sendall(sock, len(chunk).to_bytes(4, "big") + chunk)
    await loop.sock_sendall(sock, b"\0\0\0\0")


async def _read_reply(sock: socket.socket) -> bytes:
    """The NUL-terminated reply (at most MAX_REPLY bytes)."""
    loop = asyncio.get_running_loop()
    reply = b""
    while b"\0" not in reply:
        data = await loop.sock_recv(sock, MAX_REPLY)
        if not data:
            raise ScannerUnavailable(f"the virus scanner closed the connection: {reply[:200]!r}")
        reply += data
        if len(reply) > MAX_REPLY:
            raise ScannerUnavailable("the virus scanner sent an over-long reply")
    return reply.split(b"\0", 1)[0]


def parse_reply(text: str) -> ScanResult:
    """`stream: OK` / `stream: Eicar-Signature FOUND` / anything ending in ERROR."""
    _, _, verdict = text.strip().partition(": ")
    verdict = verdict or text.strip()
    if verdict == "OK":
        return ScanResult(True)
    if verdict.endswith(" FOUND"):
        return ScanResult(False, verdict[: -len(" FOUND")].strip()[:200] or "unknown")
    raise ScannerUnavailable(f"the virus scanner reported an error: {text.strip()[:200]}")
