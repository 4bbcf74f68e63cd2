"""Signing JSON (appendices, "Signing JSON") and server signing keys.

Keys are ``signedjson`` keys: a ``nacl.signing.SigningKey`` carrying ``.alg`` ("ed25519") and
``.version`` (the key ID's second half, e.g. ``a_AbCd``), so the key ID is ``ed25519:a_AbCd``.
On disk a key is one line ``"<alg> <version> <unpadded base64 seed>"`` (the format ``signedjson``
also reads and writes).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any

import nacl.exceptions
import nacl.signing
from signedjson.key import (
    NACL_ED25519,
    get_verify_key,
)
from signedjson.key import (
    decode_signing_key_base64 as _decode_seed,
)
from signedjson.key import (
    generate_signing_key as _generate,
)
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from paigham.domain.canonical_json import encode

_VERSION_ALPHABET = string.ascii_letters + string.digits + "_"

__all__ = [
    "SigningKey",
    "VerifyKey",
    "decode_signing_key_base64",
    "encode_signing_key_base64",
    "encode_verify_key_base64",
    "generate_signing_key",
    "key_id",
    "sign_json",
    "signing_key_from_seed",
    "verify_json",
    "verify_json_any_key",
    "verify_key_from_base64",
    "verify_key_of",
]


def key_id(key: SigningKey | VerifyKey) -> str:
    """The key's identifier, e.g. ``ed25519:a_AbCd``."""
    return f"{key.alg}:{key.version}"


def generate_signing_key(version: str | None = None) -> SigningKey:
    """A fresh ed25519 signing key; ``version`` defaults to ``a_`` plus four random characters."""
    if version is None:
        version = "a_" + "".join(secrets.choice(_VERSION_ALPHABET) for _ in range(4))
    key: SigningKey = _generate(version)
    return key


def signing_key_from_seed(seed: bytes, version: str) -> SigningKey:
    """The ed25519 signing key with this 32-byte seed."""
    key: SigningKey = _decode_seed(NACL_ED25519, version, encode_base64(seed))
    return key


def encode_signing_key_base64(key: SigningKey) -> str:
    """The storage line for ``key``: ``"ed25519 <version> <unpadded base64 seed>"``."""
    return f"{key.alg} {key.version} {encode_base64(key.encode())}"


def decode_signing_key_base64(line: str) -> SigningKey:
    """Parse a storage line ``"<alg> <version> <seed>"``; ValueError when it is malformed."""
    parts = line.strip().split()
    if len(parts) != 3:
        raise ValueError("A signing key line has three fields: algorithm, version, base64 seed")
    alg, version, seed_b64 = parts
    if alg != NACL_ED25519:
        raise ValueError(f"Unsupported signing key algorithm {alg!r}")
    try:
        seed = decode_base64(seed_b64)
    except Exception:  # binascii.Error and friends
        raise ValueError("The signing key seed is not valid base64") from None
    if len(seed) != 32:
        raise ValueError("An ed25519 seed is 32 bytes")
    return signing_key_from_seed(seed, version)


def verify_key_of(key: SigningKey) -> VerifyKey:
    """The public half of ``key``, carrying the same ``alg`` and ``version``."""
    verify: VerifyKey = get_verify_key(key)
    return verify


def encode_verify_key_base64(key: SigningKey | VerifyKey) -> str:
    """The unpadded base64 public key (for ``/_matrix/key/v2/server``)."""
    raw: Any = key
    if isinstance(raw, nacl.signing.SigningKey):
        raw = raw.verify_key
    return encode_base64(bytes(raw))


def verify_key_from_base64(key_id_: str, key_base64: str) -> VerifyKey:
    """A verify key from its ID (``ed25519:...``) and unpadded base64 bytes; ValueError if invalid."""
    alg, sep, version = key_id_.partition(":")
    if alg != NACL_ED25519 or not sep:
        raise ValueError(f"Unsupported key ID {key_id_!r}")
    try:
        raw = decode_base64(key_base64)
        verify: Any = nacl.signing.VerifyKey(raw)
    except Exception:
        raise ValueError("Invalid ed25519 public key") from None
    verify.alg = alg
    verify.version = version
    result: VerifyKey = verify
    return result


def sign_json(obj: Mapping[str, Any], entity: str, key: SigningKey) -> dict[str, Any]:
    """A copy of ``obj`` with ``entity``'s signature added under ``signatures``.

    The signature covers the canonical JSON of ``obj`` without ``signatures`` and ``unsigned``;
    existing signatures (from ``entity`` with other keys, or from other entities) are kept.
    """
    body = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    signature = encode_base64(key.sign(encode(body)).signature)
    old = obj.get("signatures")
    signatures: dict[str, Any] = {}
    if isinstance(old, Mapping):
        signatures = {k: dict(v) for k, v in old.items() if isinstance(v, Mapping)}
    signatures.setdefault(entity, {})[key_id(key)] = signature
    out = dict(obj)
    out["signatures"] = signatures
    return out


def verify_json(obj: Mapping[str, Any], entity: str, key: VerifyKey) -> bool:
    """Whether ``obj`` carries a valid signature by ``entity`` with ``key`` (per "Checking for a
    Signature"); False when the signature is missing, not base64, or wrong."""
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    mine = signatures.get(entity)
    if not isinstance(mine, Mapping):
        return False
    sig_b64 = mine.get(key_id(key))
    if not isinstance(sig_b64, str):
        return False
    try:
        sig = decode_base64(sig_b64)
    except Exception:
        return False
    body = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    try:
        key.verify(encode(body), sig)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def verify_json_any_key(obj: Mapping[str, Any], public_keys_base64: list[str]) -> bool:
    """Whether any ed25519 signature in ``obj["signatures"]`` (by any entity, any key ID) verifies
    with any of the given unpadded (standard or URL-safe) base64 public keys. Used for the
    ``signed`` block of third-party invites."""
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    keys: list[nacl.signing.VerifyKey] = []
    for key_b64 in public_keys_base64:
        try:
            keys.append(nacl.signing.VerifyKey(decode_base64(key_b64)))
        except Exception:  # not base64, or not 32 bytes
            continue
    if not keys:
        return False
    message = encode({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})
    for by_entity in signatures.values():
        if not isinstance(by_entity, Mapping):
            continue
        for kid, sig_b64 in by_entity.items():
            if not (isinstance(kid, str) and kid.startswith(NACL_ED25519 + ":") and isinstance(sig_b64, str)):
                continue
            try:
                sig = decode_base64(sig_b64)
            except Exception:
                continue
            for key in keys:
                try:
                    key.verify(message, sig)
                except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
                    continue
                return True
    return False
