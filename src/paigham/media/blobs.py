"""Encrypted files on local disk: streamed in through a temporary file, streamed out chunk by chunk.

Paths are built only from validated media IDs (A-Za-z0-9_-), never from anything else a client sent.
Blocking file work runs in a thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from paigham.domain.media import MEDIA_ID_RE
from paigham.media import crypto

_WRITE_BATCH = 1024 * 1024


class BlobStore:
    def __init__(self, root: Path, master_key: bytes) -> None:
        self.root = root
        self.master = master_key
        for sub in ("local", "thumbs", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # -- paths ----------------------------------------------------------------------------------
    def media_path(self, media_id: str) -> Path:
        assert MEDIA_ID_RE.match(media_id)
        return self.root / "local" / media_id[:2] / media_id[2:4] / media_id

    def thumb_dir(self, media_id: str) -> Path:
        assert MEDIA_ID_RE.match(media_id)
        return self.root / "thumbs" / media_id[:2] / media_id[2:4] / media_id

    def thumb_path(self, media_id: str, width: int, height: int, method: str, animated: bool) -> Path:
        return self.thumb_dir(media_id) / f"{width}x{height}-{method}{'-a' if animated else ''}"

    # -- writing --------------------------------------------------------------------------------
    def writer(self) -> BlobWriter:
        return BlobWriter(self.root / "tmp" / secrets.token_hex(16), crypto.new_file_key())

    async def write_bytes(self, data: bytes) -> BlobWriter:
        """`data` sealed into a temporary file, ready to commit; nothing is left behind if that fails."""
        w = self.writer()
        try:
            await w.open()
            await w.write(data)
            await w.finish()
        except BaseException:
            await w.abort()
            raise
        return w

    def wrap(self, key: bytes, media_id: str) -> bytes:
        return crypto.wrap_key(self.master, key, media_id)

    # -- reading --------------------------------------------------------------------------------
    async def read(
        self, path: Path, wrapped: bytes, key_id: str, size: int, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Plaintext bytes [start, end] (inclusive), decrypting only the chunks that hold them."""
        key = crypto.unwrap_key(self.master, wrapped, key_id)
        end = size - 1 if end is None else end
        if size == 0 or end < start:
            return
        last = crypto.chunk_count(size) - 1
        fh = await asyncio.to_thread(open, path, "rb")
        try:
            for index in range(start // crypto.CHUNK, end // crypto.CHUNK + 1):
                plain = await asyncio.to_thread(_read_chunk, fh, key, index, index == last, size)
                lo = start - index * crypto.CHUNK if index == start // crypto.CHUNK else 0
                hi = end - index * crypto.CHUNK + 1
                yield plain[lo:hi]
        finally:
            await asyncio.to_thread(fh.close)

    async def read_all(self, path: Path, wrapped: bytes, key_id: str, size: int) -> bytes:
        parts = [p async for p in self.read(path, wrapped, key_id, size)]
        return b"".join(parts)

    # -- removing -------------------------------------------------------------------------------
    async def remove_media(self, media_id: str) -> None:
        await asyncio.to_thread(_remove_quietly, self.media_path(media_id))
        await asyncio.to_thread(shutil.rmtree, self.thumb_dir(media_id), True)

    def sweep_tmp(self, older_than_s: float = 86400) -> int:
        """Temporary files left by a crash; young ones may belong to an upload in another worker."""
        cutoff = time.time() - older_than_s
        n = 0
        for p in (self.root / "tmp").iterdir():
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    n += 1
        return n


def _read_chunk(fh: BinaryIO, key: bytes, index: int, last: bool, size: int) -> bytes:
    fh.seek(crypto.chunk_offset(index))
    want = (size - index * crypto.CHUNK if last else crypto.CHUNK) + crypto.TAG
    sealed = fh.read(want)
    if len(sealed) != want:
        raise crypto.MediaCryptoError(f"stored file is truncated at chunk {index}")
    return crypto.open_chunk(key, index, sealed, last)


def _close_quietly(fh: BinaryIO) -> None:
    with contextlib.suppress(OSError):
        fh.close()  # the descriptor is closed even when flushing the buffer fails


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class BlobWriter:
    """One upload on its way to disk: plaintext in, sealed chunks to a temporary file."""

    def __init__(self, tmp: Path, key: bytes) -> None:
        self.tmp = tmp
        self.key = key
        self.sealer = crypto.ChunkSealer(key)
        self.head = b""
        self._fh: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0

    @property
    def size(self) -> int:
        return self.sealer.size

    async def open(self) -> None:
        self._fh = await asyncio.to_thread(_open_new, self.tmp)
        self._pending.append(crypto.header())

    async def write(self, data: bytes) -> None:
        if len(self.head) < 16:
            self.head += data[: 16 - len(self.head)]
        for sealed in self.sealer.feed(data):
            self._pending.append(sealed)
            self._pending_size += len(sealed)
        if self._pending_size >= _WRITE_BATCH:
            await self._flush()

    async def finish(self) -> None:
        self._pending.append(self.sealer.finish())
        await self._flush()
        assert self._fh is not None
        await asyncio.to_thread(_sync_close, self._fh)
        self._fh = None

    async def _flush(self) -> None:
        data, self._pending, self._pending_size = self._pending, [], 0
        assert self._fh is not None
        await asyncio.to_thread(self._fh.writelines, data)

    async def commit(self, dest: Path) -> None:
        def move() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.tmp, dest)

        await asyncio.to_thread(move)

    async def abort(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            await asyncio.to_thread(_close_quietly, fh)  # closing flushes: on a full disk that fails again
        await asyncio.to_thread(_remove_quietly, self.tmp)


def _open_new(path: Path) -> BinaryIO:
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _sync_close(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
