"""Test clients' side of E2EE key material: real ed25519 keys and signatures (no mocks)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from unpaddedbase64 import encode_base64

from paigham.domain.signing import SigningKey, encode_verify_key_base64, generate_signing_key, sign_json
from tests.api.conftest import Harness, User
from tests.api.openapi import ConformanceRecorder, spec

V3 = "/_matrix/client/v3"


@pytest.fixture(autouse=True)
async def spec_conformance(hs: Harness) -> AsyncIterator[ConformanceRecorder]:
    """Every response of the test (successes and errors) is checked against the spec's OpenAPI."""
    recorder = ConformanceRecorder(spec()).attach(hs.http)
    yield recorder
    assert not recorder.problems, recorder.report()


def fake_curve25519() -> str:
    return encode_base64(secrets.token_bytes(32))


@dataclass
class Device:
    """A device's signing key and the signed objects a real client would upload."""

    user: User
    key: SigningKey
    curve25519: str = field(default_factory=fake_curve25519)
    _next: int = field(default=0)

    @classmethod
    def of(cls, user: User) -> Device:
        return cls(user, generate_signing_key(user.device_id))

    @property
    def ed25519(self) -> str:
        return encode_verify_key_base64(self.key)

    def device_keys(self) -> dict[str, Any]:
        d = self.user.device_id
        obj = {
            "user_id": self.user.user_id,
            "device_id": d,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{d}": self.curve25519, f"ed25519:{d}": self.ed25519},
        }
        return sign_json(obj, self.user.user_id, self.key)

    def one_time_keys(self, n: int, *, fallback: bool = False) -> dict[str, Any]:
        out = {}
        for _ in range(n):
            self._next += 1
            body: dict[str, Any] = {"key": fake_curve25519()}
            if fallback:
                body["fallback"] = True
            out[f"signed_curve25519:K{self._next:05d}"] = sign_json(body, self.user.user_id, self.key)
        return out

    async def upload(self, hs: Harness, otks: int = 0, fallback: bool = False) -> Any:
        body: dict[str, Any] = {"device_keys": self.device_keys(), "one_time_keys": self.one_time_keys(otks)}
        if fallback:
            body["fallback_keys"] = self.one_time_keys(1, fallback=True)
        return await hs.ok("POST", f"{V3}/keys/upload", self.user, json=body)


@dataclass
class CrossSigning:
    user: User
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def new(cls, user: User) -> CrossSigning:
        keys = [generate_signing_key("x") for _ in range(3)]
        for k in keys:  # key IDs are ed25519:<public key>
            k.version = encode_verify_key_base64(k)
        return cls(user, *keys)

    def obj(self, usage: str, key: SigningKey, signer: SigningKey | None) -> dict[str, Any]:
        pub = encode_verify_key_base64(key)
        obj: dict[str, Any] = {"user_id": self.user.user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}
        return sign_json(obj, self.user.user_id, signer) if signer is not None else obj

    def body(self) -> dict[str, Any]:
        return {
            "master_key": self.obj("master", self.master, None),
            "self_signing_key": self.obj("self_signing", self.self_signing, self.master),
            "user_signing_key": self.obj("user_signing", self.user_signing, self.master),
        }

    @property
    def master_pub(self) -> str:
        return encode_verify_key_base64(self.master)
