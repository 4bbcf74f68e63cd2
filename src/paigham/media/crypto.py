"""Encryption at rest: a random key per file, wrapped by a master key kept in a file outside the database.

A stored file is a header followed by chunks. Chunk i holds up to CHUNK plaintext bytes sealed with
XChaCha20-Poly1305 under the file key, nonce = i, associated data = (i, last?). A chunk cannot be
moved, swapped or dropped (the last chunk is marked, the size lives in the database), and a range
request decrypts only the chunks it needs. Deleting the database row destroys the wrapped key, so a
deleted file is unreadable even if its blocks survive on disk.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from nacl import bindings as sodium

MAGIC = b"PGMEDIA1"
CHUNK = 64 * 1024
TAG = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES
HEADER = len(MAGIC) + 4
KEY_BYTES = 32
_NONCE = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES


class MediaCryptoError(Exception):
    """A stored file failed authentication: it was altered, truncated or belongs to another key."""


def load_or_create_master_key(path: Path) -> bytes:
    """32 random bytes in a 0600 file; created once (O_EXCL, so concurrent workers agree)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.chmod(path, 0o600)
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path}: the media master key must be exactly {KEY_BYTES} bytes") from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def new_file_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def wrap_key(master: bytes, file_key: bytes, media_id: str) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    sealed = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(file_key, _key_ad(media_id), nonce, master)
    return nonce + sealed


def unwrap_key(master: bytes, wrapped: bytes, media_id: str) -> bytes:
    try:
        return bytes(
            sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                wrapped[_NONCE:], _key_ad(media_id), wrapped[:_NONCE], master
            )
        )
    except Exception:
        raise MediaCryptoError(f"cannot unwrap the key of {media_id}") from None


def _key_ad(media_id: str) -> bytes:
    return b"paigham-media-key:" + media_id.encode()


def _ad(index: int, last: bool) -> bytes:
    return index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


def _nonce(index: int) -> bytes:
    return index.to_bytes(_NONCE, "big")


def header() -> bytes:
    return MAGIC + CHUNK.to_bytes(4, "big")


def seal_chunk(key: bytes, index: int, plain: bytes, last: bool) -> bytes:
    return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, _ad(index, last), _nonce(index), key))


def open_chunk(key: bytes, index: int, sealed: bytes, last: bool) -> bytes:
    try:
        return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, _ad(index, last), _nonce(index), key))
    except Exception:
        raise MediaCryptoError(f"chunk {index} failed authentication") from None


def chunk_count(size: int) -> int:
    return max(1, -(-size // CHUNK))


def chunk_offset(index: int) -> int:
    return HEADER + index * (CHUNK + TAG)


def stored_size(size: int) -> int:
    return HEADER + size + chunk_count(size) * TAG


class ChunkSealer:
    """Turns a plaintext stream into sealed chunks; keeps back at most one chunk until it knows
    whether it is the last."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.index = 0
        self.buf = bytearray()
        self.size = 0

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        self.size += len(data)
        out: list[bytes] = []
        while len(self.buf) > CHUNK:
            out.append(seal_chunk(self.key, self.index, bytes(self.buf[:CHUNK]), last=False))
            del self.buf[:CHUNK]
            self.index += 1
        return out

    def finish(self) -> bytes:
        sealed = seal_chunk(self.key, self.index, bytes(self.buf), last=True)
        self.buf.clear()
        return sealed
