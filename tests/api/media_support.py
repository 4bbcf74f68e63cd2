"""Helpers for the media tests: uploads, images (good and hostile), a raw ASGI client that streams
without buffering, a fake clamd speaking the real INSTREAM protocol, and leftover checks."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import func, select

from paigham.storage.media_schema import media, media_thumbnails
from tests.api.conftest import Harness, User

UPLOAD = "/_matrix/media/v3/upload"
DOWNLOAD = "/_matrix/client/v1/media/download"
THUMB = "/_matrix/client/v1/media/thumbnail"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


async def upload(
    hs: Harness, user: User, data: bytes, content_type: str | None = "application/pdf", filename: str | None = None
) -> str:
    headers = {"Content-Type": content_type} if content_type else {}
    params = {"filename": filename} if filename is not None else {}
    r = await hs.request("POST", UPLOAD, user, content=data, headers=headers, params=params)
    assert r.status_code == 200, r.text
    uri = r.json()["content_uri"]
    assert uri.startswith("mxc://test.local/")
    return str(uri[len("mxc://") :])


async def download(hs: Harness, user: User | None, mxc: str, **kw: Any) -> httpx.Response:
    return await hs.request("GET", f"{DOWNLOAD}/{mxc}", user, **kw)


def image_bytes(fmt: str, size: tuple[int, int] = (1000, 800), mode: str = "RGB") -> bytes:
    # A gradient, so resizing has something to do and formats compress differently.
    g = Image.linear_gradient("L")
    bands = [g.resize(size), g.rotate(90).resize(size), Image.new("L", size, 90), Image.new("L", size, 200)]
    img = Image.merge(mode, bands[: len(mode)]) if mode != "L" else bands[0]
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def animated_gif(size: tuple[int, int] = (200, 160), frames: int = 4) -> bytes:
    imgs = [Image.new("RGB", size, (i * 60, 20, 200 - i * 40)) for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, "GIF", save_all=True, append_images=imgs[1:], duration=80, loop=0)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid-looking PNG that claims billions of pixels in a few hundred bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width * 3 + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@functools.cache
def png_solid(width: int, height: int) -> bytes:
    """A genuine (complete) grey PNG of many pixels: small on the wire, slow to decode and resize."""
    z = zlib.compressobj(6)
    rows = (b"\0" + b"\x80" * (width * 3)) * 100
    idat = b"".join(z.compress(rows) for _ in range(height // 100)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


async def leftovers(hs: Harness) -> tuple[int, list[Path]]:
    """Rows in the media table and every file under the media store."""
    async with hs.server.db.read() as conn:
        rows = (await conn.execute(select(func.count()).select_from(media))).scalar_one()
        rows += (await conn.execute(select(func.count()).select_from(media_thumbnails))).scalar_one()
    root = hs.server.media.blobs.root
    return int(rows), sorted(p for p in root.rglob("*") if p.is_file())


# -- a raw ASGI client: streams the request body from a generator and counts the response body ---------
@dataclass
class Streamed:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    length: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    body_head: bytes = b""


async def asgi_stream(
    app: Any,
    method: str,
    path: str,
    token: str,
    body: AsyncIterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> Streamed:
    out = Streamed()
    done = asyncio.Event()
    path, _, query = path.partition("?")
    hdrs = [(b"authorization", f"Bearer {token}".encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": hdrs,
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
    }
    chunks = body.__aiter__() if body is not None else None

    async def receive() -> dict[str, Any]:
        if chunks is not None:
            try:
                return {"type": "http.request", "body": await chunks.__anext__(), "more_body": True}
            except StopAsyncIteration:
                pass
        if not done.is_set() and scope.get("_sent_final") is None:
            scope["_sent_final"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            data = message.get("body", b"")
            out.length += len(data)
            out.sha256.update(data)
            if len(out.body_head) < 4096:
                out.body_head += data[:4096]
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    done.set()
    return out


async def generated(total: int, chunk: int = 64 * 1024, seed: bytes = b"paigham") -> AsyncIterator[bytes]:
    """`total` pseudo-random bytes, made on the fly (never held whole)."""
    block = hashlib.sha256(seed).digest() * (chunk // 32)
    sent, i = 0, 0
    while sent < total:
        n = min(chunk, total - sent)
        yield (i.to_bytes(8, "big") + block)[:n]
        sent += n
        i += 1


def generated_digest(total: int, chunk: int = 64 * 1024, seed: bytes = b"paigham") -> str:
    h = hashlib.sha256()
    block = hashlib.sha256(seed).digest() * (chunk // 32)
    sent, i = 0, 0
    while sent < total:
        n = min(chunk, total - sent)
        h.update((i.to_bytes(8, "big") + block)[:n])
        sent += n
        i += 1
    return h.hexdigest()


# -- a fake clamd: the real INSTREAM wire protocol on loopback TCP or a unix socket -------------------------
class FakeClamd:
    def __init__(self, max_stream: int = 25 * 1024 * 1024, verdict: Callable[[bytes], str] | None = None) -> None:
        self.max_stream = max_stream
        self.verdict = verdict or (lambda data: "Eicar-Test-Signature FOUND" if EICAR in data else "OK")
        self.scanned: list[int] = []
        self.server: asyncio.AbstractServer | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = await reader.readuntil(b"\0")
        if command != b"zINSTREAM\0":
            writer.write(b"UNKNOWN COMMAND\0")
        else:
            data = bytearray()
            while True:
                size = int.from_bytes(await reader.readexactly(4), "big")
                if size == 0:
                    break
                data += await reader.readexactly(size)
                if len(data) > self.max_stream:
                    writer.write(b"INSTREAM size limit exceeded. ERROR\0")
                    break
            if len(data) <= self.max_stream:
                self.scanned.append(len(data))
                writer.write(f"stream: {self.verdict(bytes(data))}\0".encode())
        await writer.drain()
        writer.close()

    async def start_tcp(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def start_unix(self, path: Path) -> None:
        self.server = await asyncio.start_unix_server(self.handle, str(path))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def store_files_contain(root: Path, needle: bytes) -> bool:
    return any(p.is_file() and needle in p.read_bytes() for p in root.rglob("*"))
