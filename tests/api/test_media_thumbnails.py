"""Thumbnails of JPEG, PNG, WebP and GIF at every recommended size, and hostile images (bombs, truncated,
malformed, slow) that fail alone in the worker process while the server keeps serving."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from paigham.media.thumbnailer import Thumbnailer, ThumbnailLimits
from tests.api.conftest import Harness, User
from tests.api.media_support import THUMB, animated_gif, download, image_bytes, png_bomb, png_solid, upload
from tests.reconfigure import reconfigure

SIZES = [(32, 32, "crop"), (96, 96, "crop"), (320, 240, "scale"), (640, 480, "scale"), (800, 600, "scale")]
FORMATS = [
    ("JPEG", "image/jpeg", "image/jpeg"),
    ("PNG", "image/png", "image/png"),
    ("WEBP", "image/webp", "image/png"),
    ("GIF", "image/gif", "image/png"),
]


async def thumb(
    hs: Harness, user: User, mxc: str, w: int, h: int, method: str = "scale", **params: object
) -> tuple[str, Image.Image]:
    r = await hs.request("GET", f"{THUMB}/{mxc}", user, params={"width": w, "height": h, "method": method, **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].startswith('inline; filename="thumbnail.')
    img = Image.open(io.BytesIO(r.content))
    assert img.format is not None and img.format.lower() == r.headers["content-type"].split("/")[1]
    return r.headers["content-type"], img


def expected(w: int, h: int, method: str, src: tuple[int, int] = (1000, 800)) -> tuple[int, int]:
    if method == "crop":
        return w, h
    ratio = min(w / src[0], h / src[1])
    return round(src[0] * ratio), round(src[1] * ratio)


async def test_every_format_and_recommended_size(hs: Harness) -> None:
    alice = await hs.register("alice")

    async def one_format(fmt: str, upload_type: str, thumb_type: str) -> None:
        mxc = await upload(hs, alice, image_bytes(fmt), upload_type)
        for w, h, method in SIZES:
            kind, img = await thumb(hs, alice, mxc, w, h, method)
            assert kind == thumb_type, (fmt, w, h)
            assert img.size == expected(w, h, method), (fmt, w, h, method, img.size)
        # Cached: asking again (or for a size that snaps to a standard one) needs no worker.
        kind, img = await thumb(hs, alice, mxc, 90, 90, "crop")
        assert img.size == (96, 96)

    await asyncio.gather(*(one_format(*f) for f in FORMATS))


async def test_never_upscaled_and_odd_sizes(hs: Harness) -> None:
    alice = await hs.register("alice")
    small = await upload(hs, alice, image_bytes("PNG", (50, 40)), "image/png")
    _, img = await thumb(hs, alice, small, 320, 240)
    assert img.size == (50, 40)
    _, img = await thumb(hs, alice, small, 96, 96, "crop")
    assert img.size == (50, 40)
    big = await upload(hs, alice, image_bytes("JPEG", (1000, 800)), "image/jpeg")
    _, img = await thumb(hs, alice, big, 100, 100, "crop")  # beyond every standard crop: made as asked
    assert img.size == (100, 100)
    _, img = await thumb(hs, alice, big, 1000, 1000)  # bigger than the image: its own size
    assert img.size == (1000, 800)


async def test_animated_gif(hs: Harness) -> None:
    alice = await hs.register("alice")
    mxc = await upload(hs, alice, animated_gif(), "image/gif")
    kind, img = await thumb(hs, alice, mxc, 96, 96, "crop", animated="true")
    assert kind == "image/webp" and getattr(img, "is_animated", False) and getattr(img, "n_frames", 1) == 4
    kind, img = await thumb(hs, alice, mxc, 96, 96, "crop", animated="false")
    assert kind == "image/png" and not getattr(img, "is_animated", False)


async def test_bad_parameters(hs: Harness) -> None:
    alice = await hs.register("alice")
    mxc = await upload(hs, alice, image_bytes("PNG", (64, 64)), "image/png")
    url = f"{THUMB}/{mxc}"
    await hs.err(400, "M_MISSING_PARAM", "GET", url, alice, params={"height": 32})
    await hs.err(400, "M_INVALID_PARAM", "GET", url, alice, params={"width": "abc", "height": 32})
    await hs.err(400, "M_INVALID_PARAM", "GET", url, alice, params={"width": -5, "height": 32})
    await hs.err(400, "M_INVALID_PARAM", "GET", url, alice, params={"width": 32, "height": 32, "method": "zoom"})
    await hs.err(400, "M_INVALID_PARAM", "GET", url, alice, params={"width": 9000, "height": 32})
    await hs.err(400, "M_INVALID_PARAM", "GET", url, alice, params={"width": 32, "height": 32, "animated": "x"})
    await hs.err(
        404, "M_NOT_FOUND", "GET", f"{THUMB}/test.local/noSuchMedia", alice, params={"width": 32, "height": 32}
    )


async def served_while(hs: Harness, user: User, hostile: asyncio.Task[object]) -> None:
    """The server answers other requests while a hostile image is being processed."""
    other = await upload(hs, user, b"still here")
    r = await download(hs, user, other)
    assert r.status_code == 200 and r.content == b"still here"
    await hostile


@pytest.mark.parametrize(
    "label, data, claimed",
    [
        ("truncated png", image_bytes("PNG")[:3000], "image/png"),
        ("truncated jpeg", image_bytes("JPEG")[:2000], "image/jpeg"),
        ("garbage after jpeg magic", b"\xff\xd8\xff\xe0" + b"\x13" * 5000, "image/jpeg"),
        ("random bytes called png", bytes(range(256)) * 20, "image/png"),
        ("a pdf", b"%PDF-1.7\n" + b"0" * 500, "application/pdf"),
    ],
)
async def test_undecodable_content(hs: Harness, label: str, data: bytes, claimed: str) -> None:
    alice = await hs.register("alice")
    mxc = await upload(hs, alice, data, claimed)
    params = {"width": 96, "height": 96, "method": "crop"}
    task = asyncio.create_task(hs.err(400, "M_UNKNOWN", "GET", f"{THUMB}/{mxc}", alice, params=params))
    await served_while(hs, alice, task)
    # The failure is remembered: no second worker run for the same hostile file.
    await hs.err(400, "M_UNKNOWN", "GET", f"{THUMB}/{mxc}", alice, params=params)
    r = await download(hs, alice, mxc)  # the file itself is still downloadable as uploaded
    assert r.status_code == 200 and r.content == data


async def test_decompression_bomb_is_refused(hs: Harness) -> None:
    alice = await hs.register("alice")
    bomb = png_bomb()
    assert len(bomb) < 200_000
    mxc = await upload(hs, alice, bomb, "image/png")
    params = {"width": 320, "height": 240}
    task = asyncio.create_task(hs.err(413, "M_TOO_LARGE", "GET", f"{THUMB}/{mxc}", alice, params=params))
    await served_while(hs, alice, task)
    await hs.err(413, "M_TOO_LARGE", "GET", f"{THUMB}/{mxc}", alice, params=params)
    ok = await upload(hs, alice, image_bytes("PNG", (300, 300)), "image/png")
    await thumb(hs, alice, ok, 96, 96, "crop")


async def test_memory_limit_stops_a_bomb_that_passes_the_pixel_check(hs: Harness) -> None:
    """With the pixel guard opened wide, the worker's own address-space limit still stops the decode."""
    alice = await hs.register("alice")
    hs.server.media.thumbnailer = Thumbnailer(ThumbnailLimits(max_pixels=10**10, memory_mb=300, timeout_s=20))
    mxc = await upload(hs, alice, png_bomb(30_000, 30_000), "image/png")
    task = asyncio.create_task(
        hs.err(413, "M_TOO_LARGE", "GET", f"{THUMB}/{mxc}", alice, params={"width": 96, "height": 96})
    )
    await served_while(hs, alice, task)


async def test_slow_worker_is_killed(hs: Harness) -> None:
    alice = await hs.register("alice")
    hs.server.media.thumbnailer = Thumbnailer(ThumbnailLimits(timeout_s=0.05))
    mxc = await upload(hs, alice, png_solid(5000, 5000), "image/png")
    body = await hs.err(400, "M_UNKNOWN", "GET", f"{THUMB}/{mxc}", alice, params={"width": 32, "height": 32})
    assert "too long" in body["error"]


async def test_source_too_large_to_thumbnail(hs: Harness) -> None:
    alice = await hs.register("alice")
    reconfigure(hs.server.config, media_thumbnail_max_source_bytes=500)
    mxc = await upload(hs, alice, image_bytes("PNG", (300, 300)), "image/png")
    await hs.err(413, "M_TOO_LARGE", "GET", f"{THUMB}/{mxc}", alice, params={"width": 32, "height": 32})
