"""Pure media rules and the at-rest encryption format (no database)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paigham.domain import media as rules
from paigham.errors import MatrixError
from paigham.media import crypto
from paigham.media.blobs import BlobStore
from paigham.media.scanner import ScannerUnavailable, parse_reply


@given(st.integers(0, 300_000), st.integers(0, 300_000), st.integers(1, 300_000))
def test_range_is_inside_the_file_or_refused(a: int, b: int, size: int) -> None:
    try:
        r = rules.parse_range(f"bytes={a}-{b}", size)
    except rules.RangeNotSatisfiable:
        assert a >= size or b < a
        return
    assert r is not None and 0 <= r.start <= r.end < size and r.start == a and r.end == min(b, size - 1)


def test_range_forms() -> None:
    assert rules.parse_range(None, 10) is None
    assert rules.parse_range("bytes=0-1,4-5", 10) is None  # several ranges: the whole file
    assert rules.parse_range("items=0-1", 10) is None
    assert rules.parse_range("bytes=-3", 10) == rules.ByteRange(7, 9)
    assert rules.parse_range("bytes=-30", 10) == rules.ByteRange(0, 9)
    with pytest.raises(rules.RangeNotSatisfiable):
        rules.parse_range("bytes=0-", 0)


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("IMAGE/PNG", "image/png"),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
        ('text/plain; charset="utf-8"', 'text/plain; charset="utf-8"'),
    ],
)
def test_content_type_parsing(header: str | None, expected: str) -> None:
    assert rules.parse_content_type(header) == expected


@pytest.mark.parametrize("header", ["png", "image/", "/png", "image/png; x", "image/png\r\nX: y", "a b/c"])
def test_bad_content_types(header: str) -> None:
    with pytest.raises(MatrixError) as e:
        rules.parse_content_type(header)
    assert e.value.errcode == "M_INVALID_PARAM"


def test_type_patterns() -> None:
    allowed = rules.parse_patterns("application/pdf, image/*")
    assert rules.type_allowed("image/webp", allowed) and rules.type_allowed("application/pdf; x=y", allowed)
    assert not rules.type_allowed("text/html", allowed) and not rules.type_allowed("imagex/png", allowed)
    assert rules.type_allowed("text/html", ["*/*"])


def test_disposition_and_sniffing() -> None:
    assert rules.content_disposition("image/png", None) == "inline"
    assert rules.content_disposition("text/html", "a.html") == 'attachment; filename="a.html"'
    assert rules.content_disposition("application/pdf", "ä.pdf") == "attachment; filename*=utf-8''%C3%A4.pdf"
    assert rules.served_type("image/png", b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert rules.served_type("image/png", b"<html>") == "application/octet-stream"
    assert rules.served_type("image/webp", b"RIFF\0\0\0\0WAVE") == "application/octet-stream"
    assert rules.served_type("application/pdf", b"anything") == "application/pdf"


def test_thumbnail_sizes_snap_up() -> None:
    assert rules.thumbnail_size(10, 10, "crop") == (32, 32, "crop")
    assert rules.thumbnail_size(33, 20, "crop") == (96, 96, "crop")
    assert rules.thumbnail_size(300, 200, "scale") == (320, 240, "scale")
    assert rules.thumbnail_size(90, 90, "scale") == (320, 240, "scale")
    assert rules.thumbnail_size(100, 100, "crop") == (100, 100, "crop")
    assert rules.thumbnail_size(1200, 900, "scale") == (1200, 900, "scale")


def test_sealed_chunks_detect_tampering(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "media", crypto.load_or_create_master_key(tmp_path / "media.key"))
    data = os.urandom(3 * crypto.CHUNK + 100)

    async def go() -> None:
        w = await store.write_bytes(data)
        path = tmp_path / "blob"
        await w.commit(path)
        wrapped = store.wrap(w.key, "mid")
        assert path.stat().st_size == crypto.stored_size(len(data))
        assert await store.read_all(path, wrapped, "mid", len(data)) == data
        part = b"".join([p async for p in store.read(path, wrapped, "mid", len(data), 70_000, 140_000)])
        assert part == data[70_000:140_001]
        with pytest.raises(crypto.MediaCryptoError):  # the key is bound to its media ID
            await store.read_all(path, wrapped, "other", len(data))
        raw = bytearray(path.read_bytes())
        # Swap chunks 0 and 1: each is authenticated with its index.
        c0, c1 = crypto.chunk_offset(0), crypto.chunk_offset(1)
        n = crypto.CHUNK + crypto.TAG
        swapped = raw[:c0] + raw[c1 : c1 + n] + raw[c0 : c0 + n] + raw[c1 + n :]
        path.write_bytes(bytes(swapped))
        with pytest.raises(crypto.MediaCryptoError):
            await store.read_all(path, wrapped, "mid", len(data))
        # Cut the file after a full chunk and claim that is the end: the last-chunk flag catches it.
        path.write_bytes(bytes(raw[: crypto.chunk_offset(1)]))
        with pytest.raises(crypto.MediaCryptoError):
            await store.read_all(path, wrapped, "mid", crypto.CHUNK)

    asyncio.run(go())


def test_master_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "media.key"
    key = crypto.load_or_create_master_key(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600
    os.chmod(key_file, 0o644)
    assert crypto.load_or_create_master_key(key_file) == key
    assert key_file.stat().st_mode & 0o777 == 0o600
    key_file.write_bytes(b"short")
    with pytest.raises(ValueError):
        crypto.load_or_create_master_key(key_file)


def test_clamd_replies() -> None:
    assert parse_reply("stream: OK").clean
    found = parse_reply("stream: Win.Test.EICAR_HDB-1 FOUND")
    assert not found.clean and found.signature == "Win.Test.EICAR_HDB-1"
    with pytest.raises(ScannerUnavailable):
        parse_reply("INSTREAM size limit exceeded. ERROR")
