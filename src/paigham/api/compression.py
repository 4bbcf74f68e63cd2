"""Compressed answers for slow links (issue 18, "Slow links").

A JSON answer of at least `min_bytes` is compressed when the request's `Accept-Encoding` accepts a
coding this process has: zstd and brotli (when the `zstandard` / `brotli` packages are installed:
well-kept bindings of the reference libraries) and gzip (the standard library). Among the codings the
client accepts with the highest q-value, zstd is preferred, then brotli, then gzip: zstd compresses a
/sync about as well as brotli at a fraction of its CPU, and every browser and OkHttp speak gzip.

Everything else goes out as it is: small bodies (the headers would outweigh the saving), bodies sent
in parts (media downloads and thumbnails, already compressed and addressed by byte ranges), any
content type but JSON, and answers that already carry a `Content-Encoding`. A compressible answer
says `Vary: Accept-Encoding` whether it was compressed or not, so a cache in between keeps both.

The body is compressed in one piece when the handler hands it over, so a long-poll /sync is answered
the moment it has news: compression adds its CPU time (about 1 ms per 100 KB for zstd and gzip at
the levels below; docs/benchmarks.md "Slow links"), never a wait.

A JSON answer the handler sends in parts (`http.JSONInParts`: a /sync of many rooms) says so with
`IN_PARTS` in its start message: each part goes through a streaming compressor as it arrives and is
dropped, so the answer is never joined into one buffer nor held beside its compressed copy; the
compressed answer goes out in one piece, with its length.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Compressor = Callable[[bytes], bytes]
BROTLI_BIG = 256 * 1024
# The start message of a JSON answer sent in parts that may be compressed part by part (the key is
# taken out before the message goes on).
IN_PARTS = "paigham.json_in_parts"


class StreamCompressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _Brotli:
    def __init__(self) -> None:
        import brotli

        # Parts are sent for big answers only: quality 3, as for a big body in one piece.
        self._c = brotli.Compressor(quality=3, lgwin=18)

    def compress(self, data: bytes, /) -> bytes:
        return bytes(self._c.process(data))

    def flush(self) -> bytes:
        return bytes(self._c.finish())


def _codings() -> tuple[dict[str, Compressor], dict[str, Callable[[], StreamCompressor]]]:
    out: dict[str, Compressor] = {}
    streams: dict[str, Callable[[], StreamCompressor]] = {}
    try:
        import zstandard

        zstd = zstandard.ZstdCompressor(level=3)
        out["zstd"] = zstd.compress
        streams["zstd"] = zstd.compressobj
    except ImportError:  # pragma: no cover - an optional package
        pass
    try:
        import brotli

        def br(data: bytes) -> bytes:
            # A 256 KiB window (lgwin 18) instead of brotli's default 4 MiB: the same size of output
            # for a /sync, and 2-4x faster on small bodies (the window's allocation was most of their
            # time). Quality 3 from BROTLI_BIG on: a 1,000-room initial sync (2.7 MB) at quality 4 held
            # 6-9 MB of the encoder's tables for 17-24 ms; at 3 it holds 2 MB for 10 ms, 2.6 % larger.
            quality = 4 if len(data) < BROTLI_BIG else 3
            return bytes(brotli.compress(data, quality=quality, lgwin=18))

        out["br"] = br
        streams["br"] = _Brotli
    except ImportError:  # pragma: no cover - an optional package
        pass
    out["gzip"] = lambda data: gzip.compress(data, compresslevel=5, mtime=0)
    streams["gzip"] = lambda: zlib.compressobj(5, zlib.DEFLATED, 31)  # wbits 31: a gzip member, mtime 0
    return out, streams


CODINGS, STREAMS = _codings()
PREFERENCE = tuple(CODINGS)  # zstd, br, gzip — those installed


@functools.lru_cache(maxsize=256)  # clients send a handful of distinct values
def choose(accept_encoding: str, available: tuple[str, ...] = PREFERENCE) -> str | None:
    """The coding to answer with for this `Accept-Encoding` (RFC 9110 §12.5.3): among the available
    codings with the highest q-value > 0 (`*` standing for those not named), the first in
    `available`'s order; None for identity."""
    q: dict[str, float] = {}
    star: float | None = None
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        if not name:
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = max(0.0, min(1.0, float(value)))
                except ValueError:
                    weight = 0.0
        if name == "*":
            star = weight
        else:
            q[name] = max(q.get(name, 0.0), weight)
    weights = {c: q.get(c, star if star is not None else 0.0) for c in available}
    best = max(weights.values(), default=0.0)
    if best <= 0.0:
        return None
    return next(c for c in available if weights[c] == best)


def _json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class CompressResponses:
    """Pure ASGI middleware: compresses eligible answers (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, min_bytes: int = 1024, on_compressed: Callable[[str, int, int], Any] | None = None
    ):
        self.app = app
        self.min_bytes = min_bytes
        self.on_compressed = on_compressed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        coding = choose(Headers(scope=scope).get("accept-encoding", ""))
        await self.app(scope, receive, _Responder(self, coding, send).send)


class _Responder:
    """One answer on its way through CompressResponses. An object with slots, not closures: a held
    long-poll keeps it for its whole wait (docs/benchmarks.md: memory per held connection)."""

    __slots__ = ("_send", "coding", "done", "owner", "parts", "size", "start", "stream")

    def __init__(self, owner: CompressResponses, coding: str | None, send: Send) -> None:
        self.owner = owner
        self.coding = coding
        self._send = send
        self.start: Message | None = None
        self.done = False  # the start has gone out: pass everything else through
        self.stream: StreamCompressor | None = None  # compressing an answer sent in parts
        self.parts: list[bytes] = []  # its compressed output so far
        self.size = 0  # its uncompressed bytes so far

    async def send(self, message: Message) -> None:
        if self.done:
            await self._send(message)
            return
        if message["type"] == "http.response.start":
            self.start = message
            return
        start = self.start
        assert start is not None
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self.stream is not None:
            await self._part(body, more)
            return
        headers = MutableHeaders(raw=list(start["headers"]))
        in_parts = bool(start.pop(IN_PARTS, False))
        compressible = _json(headers.get("content-type", "")) and "content-encoding" not in headers
        if compressible:
            headers.add_vary_header("Accept-Encoding")
        coding, min_bytes = self.coding, self.owner.min_bytes
        if coding is None or not compressible or start["status"] in (204, 304):
            eligible = False
        elif more:  # sent in parts: by its declared length, when the handler allows it
            declared = headers.get("content-length", "")
            eligible = in_parts and declared.isdigit() and int(declared) >= min_bytes
        else:
            eligible = len(body) >= min_bytes
        self.start = {**start, "headers": headers.raw}
        if not eligible or coding is None:
            self.done = True
            await self._send(self.start)
            await self._send(message)
        elif more:
            self.stream = STREAMS[coding]()
            await self._part(body, more)
        else:
            self.done = True
            await self._finish(len(body), CODINGS[coding](body))

    async def _part(self, body: bytes, more: bool) -> None:
        assert self.stream is not None
        self.size += len(body)
        self.parts.append(self.stream.compress(body))
        if not more:
            self.parts.append(self.stream.flush())
            self.done = True
            data = b"".join(self.parts)
            self.parts.clear()
            await self._finish(self.size, data)

    async def _finish(self, plain: int, data: bytes) -> None:
        assert self.start is not None and self.coding is not None
        headers = MutableHeaders(raw=self.start["headers"])
        headers["content-encoding"] = self.coding
        headers["content-length"] = str(len(data))
        if self.owner.on_compressed is not None:
            self.owner.on_compressed(self.coding, plain, len(data))
        await self._send(self.start)
        await self._send({"type": "http.response.body", "body": data, "more_body": False})
