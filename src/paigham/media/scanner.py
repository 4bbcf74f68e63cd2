"""The virus-scanner hook: clamd's INSTREAM protocol over a unix socket or TCP.

`zINSTREAM\\0`, then chunks as a 4-byte big-endian length followed by the bytes, then a zero length;
clamd answers `stream: OK`, `stream: <signature> FOUND`, or `... ERROR` (NUL-terminated).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

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

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.socket_path:
            return await asyncio.open_unix_connection(self.socket_path)
        return await asyncio.open_connection(self.host, self.port)

    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanResult:
        try:
            return await asyncio.wait_for(self._scan(chunks), self.timeout_s)
        except TimeoutError:
            raise ScannerUnavailable("the virus scanner did not answer in time") from None
        except OSError as exc:
            raise ScannerUnavailable(f"the virus scanner is unreachable: {exc.strerror or exc}") from None

    async def _scan(self, chunks: AsyncIterator[bytes]) -> ScanResult:
        reader, writer = await self._connect()
        # Read while sending: clamd answers early and hangs up when a stream is over its size limit.
        answer = asyncio.ensure_future(reader.readuntil(b"\0"))
        try:
            with contextlib.suppress(ConnectionError):
                await _send(writer, chunks)
            reply = await answer
        except asyncio.IncompleteReadError as exc:
            raise ScannerUnavailable(f"the virus scanner closed the connection: {exc.partial[:200]!r}") from None
        except asyncio.LimitOverrunError:
            raise ScannerUnavailable("the virus scanner sent an over-long reply") from None
        finally:
            answer.cancel()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return parse_reply(reply.rstrip(b"\0").decode("utf-8", "replace"))


async def _send(writer: asyncio.StreamWriter, chunks: AsyncIterator[bytes]) -> None:
    writer.write(b"zINSTREAM\0")
    async for chunk in chunks:
        if chunk:
            writer.write(len(chunk).to_bytes(4, "big") + chunk)
            await writer.drain()
    writer.write(b"\0\0\0\0")
    await writer.drain()


def parse_reply(text: str) -> ScanResult:
    """`stream: OK` / `stream: Eicar-Signature FOUND` / anything ending in ERROR."""
    _, _, verdict = text.strip().partition(": ")
    verdict = verdict or text.strip()
    if verdict == "OK":
        return ScanResult(True)
    if verdict.endswith(" FOUND"):
        return ScanResult(False, verdict[: -len(" FOUND")].strip()[:200] or "unknown")
    raise ScannerUnavailable(f"the virus scanner reported an error: {text.strip()[:200]}")
