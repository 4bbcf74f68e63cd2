"""A full disk under the media store (issue 14, "Also"): an upload that does not fit is refused with a
clear error (507), leaves no file and no row behind, and once space is free again uploads work —
without a restart. The disk is real: a small tmpfs mounted for the test (CI runs as root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from paigham.app import Server, create_app
from paigham.config import Config
from tests.api.conftest import Harness
from tests.api.media_support import THUMB, UPLOAD, download, image_bytes, leftovers, upload

MOUNT_KB = 512


@pytest.fixture
async def small_disk(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    store = tmp_path / "media-disk"
    store.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={MOUNT_KB}k", "tmpfs", str(store)], check=False)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("cannot mount a tmpfs for the full-disk test (CI runs as root)")
        pytest.skip("mounting a tmpfs needs root")
    config = Config(
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        server_name="test.local",
        create_admin=False,
        media_store_path=str(store),
    )
    server = Server(config)
    app = create_app(config, server)
    await server.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(server, client)
    finally:
        await server.stop()
        subprocess.run(["umount", "-l", str(store)], check=False)


async def test_a_full_disk_refuses_the_upload_cleanly_and_recovers(small_disk: Harness) -> None:
    hs = small_disk
    alice = await hs.register("alice")
    small = await upload(hs, alice, b"a memo that fits" * 10)
    rows_before, files_before = await leftovers(hs)
    filler = hs.server.media.blobs.root / "filler"
    filler.write_bytes(b"\0" * ((MOUNT_KB - 64) * 1024))  # something else filled the disk
    body = await hs.err(507, "M_UNKNOWN", "POST", UPLOAD, alice, content=os.urandom(200_000),
                        headers={"Content-Type": "application/pdf"})  # fmt: skip
    assert "no room left" in body["error"]
    rows_after, files_after = await leftovers(hs)
    assert (rows_after, [f for f in files_after if f != filler]) == (rows_before, files_before)  # nothing half-written
    assert (await download(hs, alice, small)).status_code == 200  # what was stored is still served
    filler.unlink()  # space is free again: no restart needed
    again = await upload(hs, alice, os.urandom(200_000))
    assert (await download(hs, alice, again)).status_code == 200


async def test_a_full_disk_still_serves_thumbnails_without_keeping_them(small_disk: Harness) -> None:
    """A thumbnail is generated and served even when there is no room to keep it: the kept copies are
    a cache, so a full disk costs speed only, never a 500, and leaves no half-written file."""
    hs = small_disk
    alice = await hs.register("alice")
    pic = await upload(hs, alice, image_bytes("PNG", (400, 300)), "image/png")
    rows_before, files_before = await leftovers(hs)
    filler = hs.server.media.blobs.root / "filler"
    free = os.statvfs(filler.parent)
    filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize))  # nothing more fits
    params = {"width": 96, "height": 96, "method": "crop"}  # a standard size: normally kept
    for _ in range(2):
        r = await hs.request("GET", f"{THUMB}/{pic}", alice, params=params)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")
    rows_after, files_after = await leftovers(hs)
    assert (rows_after, [f for f in files_after if f != filler]) == (rows_before, files_before)
    filler.unlink()  # with room again, the thumbnail is kept
    r = await hs.request("GET", f"{THUMB}/{pic}", alice, params=params)
    assert r.status_code == 200
    assert (await leftovers(hs))[0] == rows_before + 1
