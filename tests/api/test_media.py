"""Media: upload/download round trips, encryption at rest, ranges, streaming in flat memory, bad inputs,
asynchronous uploads and quotas — each on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc

from tests.api.conftest import Harness
from tests.api.media_support import (
    DOWNLOAD,
    UPLOAD,
    asgi_stream,
    download,
    generated,
    generated_digest,
    image_bytes,
    leftovers,
    store_files_contain,
    upload,
)
from tests.reconfigure import reconfigure

CONFIG = "/_matrix/client/v1/media/config"
CREATE = "/_matrix/media/v1/create"


async def test_config_needs_auth_and_reports_the_limit(hs: Harness) -> None:
    await hs.err(401, "M_MISSING_TOKEN", "GET", CONFIG)
    alice = await hs.register("alice")
    assert await hs.ok("GET", CONFIG, alice) == {"m.upload.size": 100 * 1024 * 1024}
    assert await hs.ok("GET", "/_matrix/media/v3/config", alice) == {"m.upload.size": 100 * 1024 * 1024}


async def test_round_trip_headers_and_no_plaintext_on_disk(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    secret = b"%PDF-1.7 ORDER No. 42/2025: TOP SECRET transfer list " + os.urandom(3000)
    mxc = await upload(hs, alice, secret, "application/pdf", "order 42.pdf")
    r = await download(hs, bob, mxc)
    assert r.status_code == 200 and r.content == secret
    h = r.headers
    assert h["content-type"] == "application/pdf"
    assert h["content-disposition"] == 'attachment; filename="order 42.pdf"'
    assert h["content-length"] == str(len(secret))
    assert h["cache-control"].startswith("private")
    assert h["x-content-type-options"] == "nosniff"
    assert h["content-security-policy"].startswith("sandbox")
    assert h["cross-origin-resource-policy"] == "cross-origin"
    assert h["accept-ranges"] == "bytes"
    assert h["etag"] == f'"{hashlib.sha256(secret).hexdigest()}"'
    again = await download(hs, bob, mxc, headers={"If-None-Match": h["etag"]})
    assert again.status_code == 304 and again.content == b""
    # The name in the path overrides the stored one; images are served inline.
    r = await download(hs, bob, f"{mxc}/renamed.pdf")
    assert r.headers["content-disposition"] == 'attachment; filename="renamed.pdf"'
    # Nothing on disk is readable: neither the marker nor any 16-byte run of the random part.
    root = hs.server.media.blobs.root
    assert not store_files_contain(root, b"TOP SECRET")
    assert not store_files_contain(root, secret[-16:])
    key = hs.server.config.data_path / "media.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32


async def test_empty_and_chunk_boundary_sizes(hs: Harness) -> None:
    alice = await hs.register("alice")
    for size in (0, 1, 65535, 65536, 65537, 3 * 65536):
        data = os.urandom(size)
        mxc = await upload(hs, alice, data)
        r = await download(hs, alice, mxc)
        assert r.status_code == 200 and r.content == data, size


async def test_range_requests(hs: Harness) -> None:
    alice = await hs.register("alice")
    data = os.urandom(200_000)
    mxc = await upload(hs, alice, data, "video/mp4")
    cases = {
        "bytes=0-0": (0, 0),
        "bytes=65530-65600": (65530, 65600),
        "bytes=-10": (199_990, 199_999),
        "bytes=131072-": (131072, 199_999),
        "bytes=199000-999999": (199000, 199_999),
    }
    for rng, (lo, hi) in cases.items():
        r = await download(hs, alice, mxc, headers={"Range": rng})
        assert r.status_code == 206, rng
        assert r.content == data[lo : hi + 1], rng
        assert r.headers["content-range"] == f"bytes {lo}-{hi}/200000"
        assert r.headers["content-length"] == str(hi - lo + 1)
    full = await download(hs, alice, mxc, headers={"Range": "bytes=0-1,5-6"})
    assert full.status_code == 200 and full.content == data
    for bad in ("bytes=200000-", "bytes=500-100", "bytes=-0"):
        r = await download(hs, alice, mxc, headers={"Range": bad})
        assert r.status_code == 416, bad
        assert r.json()["errcode"] == "M_INVALID_PARAM"
        assert r.headers["content-range"] == "bytes */200000"


async def test_large_file_streams_in_flat_memory(hs: Harness) -> None:
    """64 MiB up and down through the real ASGI app while tracemalloc watches every Python allocation:
    a server that buffered the file would peak above 64 MiB; a streaming one stays at a few MiB."""
    alice = await hs.register("alice")
    app = hs.http._transport.app  # type: ignore[attr-defined]
    total = 64 * 1024 * 1024
    tracemalloc.start()
    try:
        up = await asgi_stream(
            app,
            "POST",
            f"{UPLOAD}?filename=big.bin",
            alice.token,
            generated(total),
            {"content-type": "application/octet-stream", "content-length": str(total)},
        )
        _, up_peak = tracemalloc.get_traced_memory()
        assert up.status == 200, up.body_head
        mxc = up.body_head.decode().split('"mxc://')[1].split('"')[0]
        tracemalloc.reset_peak()
        down = await asgi_stream(app, "GET", f"{DOWNLOAD}/{mxc}", alice.token)
        _, down_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert down.status == 200 and down.length == total
    assert down.sha256.hexdigest() == generated_digest(total)
    assert up_peak < 12 * 1024 * 1024, f"upload peaked at {up_peak / 2**20:.1f} MiB"
    assert down_peak < 12 * 1024 * 1024, f"download peaked at {down_peak / 2**20:.1f} MiB"


async def test_oversize_uploads_are_refused_and_leave_nothing(hs: Harness) -> None:
    alice = await hs.register("alice")
    reconfigure(hs.server.config, media_max_upload_bytes=100_000)
    assert await hs.ok("GET", CONFIG, alice) == {"m.upload.size": 100_000}
    await hs.err(
        413, "M_TOO_LARGE", "POST", UPLOAD, alice, content=b"x" * 100_001, headers={"Content-Type": "application/pdf"}
    )

    async def chunked() -> object:  # no Content-Length: the limit is enforced while streaming
        for _ in range(20):
            yield b"y" * 10_000

    await hs.err(
        413, "M_TOO_LARGE", "POST", UPLOAD, alice, content=chunked(), headers={"Content-Type": "application/pdf"}
    )
    assert await leftovers(hs) == (0, [])
    await upload(hs, alice, b"z" * 100_000)


async def test_content_types(hs: Harness) -> None:
    alice = await hs.register("alice")
    # Missing: the spec's default application/octet-stream, served as an attachment.
    r = await hs.request("POST", UPLOAD, alice, content=b"abc", headers={"Content-Type": ""})
    mxc = r.json()["content_uri"][6:]
    r = await download(hs, alice, mxc)
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == "attachment"
    # Malformed.
    for bad in ("not a type", "image/", "text/plain; charset", "a/b\x7f", "x/" + "y" * 300):
        await hs.err(400, "M_INVALID_PARAM", "POST", UPLOAD, alice, content=b"abc", headers={"Content-Type": bad})
    # Not allowed by configuration.
    hs.server.media.allowed = ["image/*", "application/pdf"]
    await hs.err(403, "M_FORBIDDEN", "POST", UPLOAD, alice, content=b"<html>", headers={"Content-Type": "text/html"})
    await hs.err(403, "M_FORBIDDEN", "POST", UPLOAD, alice, content=b"abc", headers={"Content-Type": ""})
    await upload(hs, alice, b"%PDF-1.4", "application/pdf")
    # An "image" whose bytes are not one is served as opaque bytes, not inline.
    fake = await upload(hs, alice, b"<script>alert(1)</script>", "image/png")
    r = await download(hs, alice, fake)
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == "attachment"
    # text/html is never inline.
    hs.server.media.allowed = ["*/*"]
    page = await upload(hs, alice, b"<html><script>x</script></html>", "text/html", "page.html")
    r = await download(hs, alice, page)
    assert r.headers["content-disposition"] == 'attachment; filename="page.html"'


async def test_hostile_filenames(hs: Harness) -> None:
    alice = await hs.register("alice")
    for bad in (
        "../../etc/passwd",
        "a/b.pdf",
        "C:\\x.exe",
        "a\r\nSet-Cookie: x=1",
        "nul\x00.pdf",
        "invoice\u202efdp.exe",
        "..",
        "n" * 256,
        "\u0939" * 90,
    ):
        await hs.err(
            400,
            "M_INVALID_PARAM",
            "POST",
            UPLOAD,
            alice,
            content=b"abc",
            headers={"Content-Type": "application/pdf"},
            params={"filename": bad},
        )
    assert await leftovers(hs) == (0, [])
    mxc = await upload(hs, alice, b"abc", "application/pdf", 'say "hi"; filename=evil.exe')
    cd = (await download(hs, alice, mxc)).headers["content-disposition"]
    assert cd == "attachment; filename*=utf-8''say%20%22hi%22%3B%20filename%3Devil.exe"
    mxc = await upload(hs, alice, b"abc", "text/plain", "आदेश संख्या ४२.txt")
    cd = (await download(hs, alice, mxc)).headers["content-disposition"]
    assert cd.startswith("inline; filename*=utf-8''%E0%A4%86")
    r = await download(hs, alice, f"{mxc}/a%0d%0ab.txt")
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"


async def test_unknown_invalid_remote_and_unauthenticated(hs: Harness) -> None:
    alice = await hs.register("alice")
    mxc = await upload(hs, alice, b"abc")
    media_id = mxc.split("/")[1]
    await hs.err(404, "M_NOT_FOUND", "GET", f"{DOWNLOAD}/test.local/AAAAunknownAAAA", alice)
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{DOWNLOAD}/test.local/bad.id", alice)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{DOWNLOAD}/elsewhere.example/{media_id}", alice)
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"{DOWNLOAD}/{mxc}")
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", f"{DOWNLOAD}/{mxc}", headers={"Authorization": "Bearer nope"})
    await hs.err(401, "M_MISSING_TOKEN", "POST", UPLOAD, content=b"abc")
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"/_matrix/client/v1/media/thumbnail/{mxc}?width=32&height=32")
    # The deprecated unauthenticated endpoints are off by default, and can be turned on.
    await hs.err(404, "M_NOT_FOUND", "GET", f"/_matrix/media/v3/download/{mxc}")
    reconfigure(hs.server.config, media_legacy_unauthenticated=True)
    r = await hs.request("GET", f"/_matrix/media/v3/download/{mxc}")
    assert r.status_code == 200 and r.content == b"abc"
    assert r.headers["cache-control"].startswith("public")
    # URL previews are never fetched.
    await hs.err(
        404, "M_UNRECOGNIZED", "GET", "/_matrix/client/v1/media/preview_url", alice, params={"url": "http://127.0.0.1/"}
    )


async def test_asynchronous_upload(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    created = await hs.ok("POST", CREATE, alice)
    assert created["unused_expires_at"] > 0
    mxc = created["content_uri"][6:]
    put = f"/_matrix/media/v3/upload/{mxc}"
    await hs.err(504, "M_NOT_YET_UPLOADED", "GET", f"{DOWNLOAD}/{mxc}", bob, params={"timeout_ms": 0})
    await hs.err(403, "M_FORBIDDEN", "PUT", put, bob, content=b"bob's", headers={"Content-Type": "text/plain"})
    await hs.err(404, "M_NOT_FOUND", "PUT", "/_matrix/media/v3/upload/test.local/neverCreated", alice, content=b"x")
    # A download that waits is answered as soon as the upload lands.
    waiting = asyncio.create_task(download(hs, bob, mxc, params={"timeout_ms": 10_000}))
    await asyncio.sleep(0.3)
    assert await hs.ok("PUT", put, alice, content=b"late content", headers={"Content-Type": "text/plain"}) == {}
    r = await waiting
    assert r.status_code == 200 and r.content == b"late content"
    await hs.err(409, "M_CANNOT_OVERWRITE_MEDIA", "PUT", put, alice, content=b"again")
    # A failed PUT (too large) leaves the ID pending and usable.
    second = (await hs.ok("POST", CREATE, alice))["content_uri"][6:]
    reconfigure(hs.server.config, media_max_upload_bytes=10)
    await hs.err(413, "M_TOO_LARGE", "PUT", f"/_matrix/media/v3/upload/{second}", alice, content=b"x" * 11)
    reconfigure(hs.server.config, media_max_upload_bytes=1000)
    await hs.ok("PUT", f"/_matrix/media/v3/upload/{second}", alice, content=b"fits")


async def test_pending_upload_limit(hs: Harness) -> None:
    alice = await hs.register("alice")
    reconfigure(hs.server.config, media_max_pending_uploads=3)
    for _ in range(3):
        await hs.ok("POST", CREATE, alice)
    body = await hs.err(429, "M_LIMIT_EXCEEDED", "POST", CREATE, alice)
    assert body["retry_after_ms"] > 0


async def test_quota(hs: Harness) -> None:
    alice, bob = await hs.register("alice"), await hs.register("bob")
    reconfigure(hs.server.config, media_user_quota_bytes=1000)
    await upload(hs, alice, b"a" * 600)
    before = await leftovers(hs)
    await hs.err(403, "M_FORBIDDEN", "POST", UPLOAD, alice, content=b"b" * 600)

    async def chunked() -> object:
        yield b"c" * 300
        yield b"c" * 300

    await hs.err(403, "M_FORBIDDEN", "POST", UPLOAD, alice, content=chunked())
    assert await leftovers(hs) == before
    await upload(hs, alice, b"d" * 400)
    await upload(hs, bob, b"e" * 900)


async def test_legacy_endpoints_when_enabled(hs: Harness) -> None:
    alice = await hs.register("alice")
    pic = await upload(hs, alice, image_bytes("PNG", (64, 48)), "image/png", "p.png")
    legacy = "/_matrix/media/v3"
    for path in (f"{legacy}/download/{pic}/x.png", f"{legacy}/thumbnail/{pic}?width=32&height=32"):
        await hs.err(404, "M_NOT_FOUND", "GET", path)
    reconfigure(hs.server.config, media_legacy_unauthenticated=True)
    r = await hs.request("GET", f"{legacy}/download/{pic}/x.png")
    assert r.status_code == 200 and r.headers["content-disposition"] == 'inline; filename="x.png"'
    r = await hs.request("GET", f"{legacy}/thumbnail/{pic}", params={"width": 32, "height": 32, "method": "crop"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    await hs.err(404, "M_UNRECOGNIZED", "GET", f"{legacy}/preview_url", alice, params={"url": "https://example.org"})


async def test_damaged_file_is_refused_cleanly(hs: Harness) -> None:
    alice = await hs.register("alice")
    mxc = await upload(hs, alice, os.urandom(1000))
    path = hs.server.media.blobs.media_path(mxc.split("/")[1])
    raw = bytearray(path.read_bytes())
    raw[100] ^= 1
    path.write_bytes(bytes(raw))
    body = await hs.err(404, "M_NOT_FOUND", "GET", f"{DOWNLOAD}/{mxc}", alice)
    assert "integrity" in body["error"]
    path.unlink()
    await hs.err(404, "M_NOT_FOUND", "GET", f"{DOWNLOAD}/{mxc}", alice)
