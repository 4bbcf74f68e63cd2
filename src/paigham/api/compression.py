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
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Compressor = Callable[[bytes], bytes]
BROTLI_BIG = 256 * 1024


def _codings() -> dict[str, Compressor]:
    out: dict[str, Compressor] = {}
    try:
        import zstandard

        zstd = zstandard.ZstdCompressor(level=3)
        out["zstd"] = zstd.compress
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
    except ImportError:  # pragma: no cover - an optional package
        pass
    out["gzip"] = lambda data: gzip.compress(data, compresslevel=5, mtime=0)
    return out


CODINGS = _codings()
PREFERENCE = tuple(CODINGS)  # zstd, br, gzip — those installed


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
        start: Message | None = None
        done = False  # the start has gone out: pass everything else through

        async def wrapped(message: Message) -> None:
            nonlocal start, done
            if done:
                await send(message)
                return
            if message["type"] == "http.response.start":
                start = message
                return
            assert start is not None
            done = True
            headers = MutableHeaders(raw=list(start["headers"]))
            body: bytes = message.get("body", b"")
            compressible = _json(headers.get("content-type", "")) and "content-encoding" not in headers
            if compressible:
                headers.add_vary_header("Accept-Encoding")
            if (
                coding is None
                or not compressible
                or message.get("more_body", False)
                or len(body) < self.min_bytes
                or start["status"] in (204, 304)
            ):
                await send({**start, "headers": headers.raw})
                await send(message)
                return
            data = CODINGS[coding](body)
            headers["content-encoding"] = coding
            headers["content-length"] = str(len(data))
            if self.on_compressed is not None:
                self.on_compressed(coding, len(body), len(data))
            await send({**start, "headers": headers.raw})
            await send({"type": "http.response.body", "body": data, "more_body": False})

        await self.app(scope, receive, wrapped)
