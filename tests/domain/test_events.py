from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unpaddedbase64 import decode_base64, encode_base64

from paigham.domain.canonical_json import encode
from paigham.domain.events import (
    MAX_EVENT_BYTES,
    check_content_hash,
    check_event_size,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    compute_v12_room_id,
    create_event_id_for_room,
    finalise_pdu,
    redaction_target,
    sign_pdu,
    verify_pdu_signature,
)
from paigham.domain.redaction import prune_event
from paigham.domain.room_versions import ROOM_V10, ROOM_V11, ROOM_V12, RoomVersion
from paigham.domain.signing import (
    decode_signing_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    key_id,
    sign_json,
    signing_key_from_seed,
    verify_json,
    verify_json_any_key,
    verify_key_from_base64,
    verify_key_of,
)
from paigham.errors import MatrixError

# Appendices, "Cryptographic Test Vectors".
SEED = decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
KEY = signing_key_from_seed(SEED, "1")
ALL_VERSIONS = [ROOM_V10, ROOM_V11, ROOM_V12]
SIG_EMPTY = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
SIG_ONE_TWO = "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
SIG_MINIMAL = "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
SIG_REDACTABLE = "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"

MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
REDACTABLE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}


def test_json_signing_vectors() -> None:
    assert key_id(KEY) == "ed25519:1"
    assert sign_json({}, "domain", KEY) == {"signatures": {"domain": {"ed25519:1": SIG_EMPTY}}}
    assert sign_json({"one": 1, "two": "Two"}, "domain", KEY) == {
        "one": 1,
        "signatures": {"domain": {"ed25519:1": SIG_ONE_TWO}},
        "two": "Two",
    }


def test_event_signing_vector_minimal_event() -> None:
    # The vectors predate room v11; they use the v1-v10 redaction rules, which keep `origin`.
    original = copy.deepcopy(MINIMAL_EVENT)
    _, signed = finalise_pdu(MINIMAL_EVENT, "domain", KEY, ROOM_V10)
    assert original == MINIMAL_EVENT
    assert signed == {
        "auth_events": [],
        "content": {},
        "depth": 3,
        "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
        "origin": "domain",
        "origin_server_ts": 1000000,
        "prev_events": [],
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "signatures": {"domain": {"ed25519:1": SIG_MINIMAL}},
        "type": "X",
        "unsigned": {"age_ts": 1000000},
    }


def test_event_signing_vector_redactable_event() -> None:
    _, signed = finalise_pdu(REDACTABLE_EVENT, "domain", KEY, ROOM_V10)
    assert signed["hashes"] == {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"}
    assert signed["signatures"] == {"domain": {"ed25519:1": SIG_REDACTABLE}}
    assert signed["unsigned"] == {"age_ts": 1000000}
    verify = verify_key_of(KEY)
    assert verify_pdu_signature(signed, "domain", verify, ROOM_V10)
    # The signature covers only the redacted form: a redacted copy still verifies...
    assert verify_pdu_signature(prune_event(signed, ROOM_V10), "domain", verify, ROOM_V10)
    # ...but the content hash no longer matches it.
    assert check_content_hash(signed)
    assert not check_content_hash(prune_event(signed, ROOM_V10))


def test_content_hash_definition() -> None:
    body = {k: v for k, v in MINIMAL_EVENT.items() if k not in ("unsigned", "signatures", "hashes")}
    expected = encode_base64(hashlib.sha256(encode(body)).digest())
    assert compute_content_hash(MINIMAL_EVENT) == expected == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"


@given(
    unsigned=st.dictionaries(st.text(max_size=5), st.integers(0, 10**6), max_size=3),
    signatures=st.dictionaries(st.text(max_size=5), st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
    hashes=st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=2),
)
def test_content_hash_ignores_unsigned_signatures_hashes(
    unsigned: dict[str, int], signatures: dict[str, dict[str, str]], hashes: dict[str, str]
) -> None:
    event = {**REDACTABLE_EVENT, "unsigned": unsigned, "signatures": signatures, "hashes": hashes}
    assert compute_content_hash(event) == compute_content_hash(REDACTABLE_EVENT)


@given(body=st.text())
def test_content_hash_covers_content(body: str) -> None:
    event = {**REDACTABLE_EVENT, "content": {"body": body}}
    same = body == REDACTABLE_EVENT["content"]["body"]
    assert (compute_content_hash(event) == compute_content_hash(REDACTABLE_EVENT)) == same


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=lambda v: v.identifier)
def test_event_id_is_reference_hash(version: RoomVersion) -> None:
    pdu = {**MINIMAL_EVENT, "type": "m.room.message", "content": {"body": "hi"}}
    event_id, signed = finalise_pdu(pdu, "domain", KEY, version)
    essential = prune_event(signed, version)
    del essential["signatures"]
    digest = hashlib.sha256(encode(essential)).digest()
    assert compute_reference_hash(signed, version) == digest
    assert event_id == "$" + encode_base64(digest, urlsafe=True) == compute_event_id(signed, version)
    assert "+" not in event_id and "/" not in event_id and "=" not in event_id
    # Redacting the event, re-signing or changing unsigned data does not change the ID.
    assert compute_event_id(prune_event(signed, version), version) == event_id
    assert compute_event_id({**signed, "unsigned": {"age": 5}}, version) == event_id
    assert compute_event_id(sign_pdu(signed, "other", generate_signing_key(), version), version) == event_id
    # An event_id key (not part of v4+ PDUs) is ignored.
    assert compute_event_id({**signed, "event_id": "$whatever"}, version) == event_id
    # Changing the content changes the content hash and so the ID.
    other_id, _ = finalise_pdu({**pdu, "content": {"body": "ho"}}, "domain", KEY, version)
    assert other_id != event_id


def test_v11_drops_origin_from_the_reference_hash() -> None:
    pdu = {k: v for k, v in MINIMAL_EVENT.items() if k not in ("hashes", "signatures")}
    _, signed = finalise_pdu(pdu, "domain", KEY, ROOM_V11)
    with_origin = compute_event_id(signed, ROOM_V11)
    assert compute_event_id({**signed, "origin": "elsewhere"}, ROOM_V11) == with_origin
    assert compute_event_id({**signed, "origin": "elsewhere"}, ROOM_V10) != compute_event_id(signed, ROOM_V10)


def _create_v12() -> dict[str, Any]:
    return {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@alice:example.org",
        "content": {"room_version": "12"},
        "origin_server_ts": 1234,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
    }


def test_v12_room_id_is_create_event_id() -> None:
    event_id, create = finalise_pdu(_create_v12(), "example.org", KEY, ROOM_V12)
    room_id = compute_v12_room_id(create)
    assert room_id == "!" + event_id[1:]
    assert create_event_id_for_room(room_id) == event_id
    # A room_id stored alongside the create event does not change it.
    assert compute_v12_room_id({**create, "room_id": room_id}) == room_id
    assert compute_event_id({**create, "room_id": room_id}, ROOM_V12) == event_id
    assert len(room_id) == 44


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=lambda v: v.identifier)
def test_signatures_verify_and_detect_tampering(version: RoomVersion) -> None:
    key = generate_signing_key("a_test")
    pdu = {
        **_create_v12(),
        "type": "m.room.power_levels",
        "room_id": "!r:example.org",
        "content": {"users": {"@alice:example.org": 100}, "ban": 50},
    }
    _, signed = finalise_pdu(pdu, "example.org", key, version)
    verify = verify_key_of(key)
    assert verify_pdu_signature(signed, "example.org", verify, version)
    assert not verify_pdu_signature(signed, "other.org", verify, version)
    tampered = {**signed, "content": {**signed["content"], "ban": 0}}
    assert not verify_pdu_signature(tampered, "example.org", verify, version)
    wrong_key = verify_key_of(generate_signing_key("a_test"))
    assert not verify_pdu_signature(signed, "example.org", wrong_key, version)
    # Signatures from another server are added, not replacing ours.
    both = sign_pdu(signed, "other.org", generate_signing_key("b"), version)
    assert set(both["signatures"]) == {"example.org", "other.org"}
    assert verify_pdu_signature(both, "example.org", verify, version)


def test_signing_key_storage_line_round_trip() -> None:
    line = encode_signing_key_base64(KEY)
    assert line == "ed25519 1 " + encode_base64(SEED)
    decoded = decode_signing_key_base64(line + "\n")
    assert decoded.encode() == SEED
    assert (decoded.alg, decoded.version) == ("ed25519", "1")
    fresh = generate_signing_key()
    assert fresh.version.startswith("a_") and len(fresh.version) == 6
    assert decode_signing_key_base64(encode_signing_key_base64(fresh)).encode() == fresh.encode()
    for bad in ["", "ed25519 1", "curve 1 AAAA", "ed25519 1 !!!!", "ed25519 1 AAAA"]:
        with pytest.raises(ValueError):
            decode_signing_key_base64(bad)


def test_verify_keys() -> None:
    public = encode_verify_key_base64(KEY)
    assert public == encode_verify_key_base64(verify_key_of(KEY))
    verify = verify_key_from_base64("ed25519:1", public)
    signed = sign_json({"a": 1, "unsigned": {"x": 1}}, "domain", KEY)
    assert verify_json(signed, "domain", verify)
    assert verify_json({**signed, "unsigned": {"y": 2}}, "domain", verify)
    assert not verify_json({**signed, "a": 2}, "domain", verify)
    assert not verify_json({"a": 1}, "domain", verify)
    assert not verify_json({**signed, "signatures": {"domain": {"ed25519:1": "!!"}}}, "domain", verify)
    with pytest.raises(ValueError):
        verify_key_from_base64("curve25519:1", public)
    with pytest.raises(ValueError):
        verify_key_from_base64("ed25519:1", "AAAA")
    assert verify_json_any_key(signed, ["bad", encode_base64(b"\x00" * 32), public])
    assert not verify_json_any_key(signed, [encode_verify_key_base64(generate_signing_key())])
    assert verify_json_any_key(signed, [encode_base64(decode_base64(public), urlsafe=True)])


def test_check_event_size() -> None:
    pdu: dict[str, Any] = {"type": "m.room.message", "sender": "@a:b", "room_id": "!r:b", "content": {}}
    check_event_size(pdu, "$" + "a" * 254)
    padding = MAX_EVENT_BYTES - len(encode({**pdu, "content": {"body": ""}}))
    check_event_size({**pdu, "content": {"body": "x" * padding}})
    with pytest.raises(MatrixError) as exc:
        check_event_size({**pdu, "content": {"body": "x" * (padding + 1)}})
    assert (exc.value.status, exc.value.errcode) == (413, "M_TOO_LARGE")
    for key in ("sender", "room_id", "type", "state_key"):
        check_event_size({**pdu, key: "é" * 127})
        with pytest.raises(MatrixError) as exc:
            check_event_size({**pdu, key: "é" * 128})
        assert exc.value.errcode == "M_TOO_LARGE"
    with pytest.raises(MatrixError) as exc:
        check_event_size(pdu, "$" + "a" * 255)
    assert exc.value.errcode == "M_TOO_LARGE"
    with pytest.raises(MatrixError) as exc:
        check_event_size({**pdu, "state_key": 5})
    assert (exc.value.status, exc.value.errcode) == (400, "M_BAD_JSON")
    with pytest.raises(MatrixError) as exc:
        check_event_size({**pdu, "type": "\ud800" * 10})
    assert exc.value.errcode == "M_BAD_JSON"


def test_redaction_target() -> None:
    old = {"type": "m.room.redaction", "redacts": "$a", "content": {"redacts": "$b"}}
    assert redaction_target(old, ROOM_V10) == "$a"
    assert redaction_target(old, ROOM_V11) == "$b"
    assert redaction_target({"content": {"redacts": 5}}, ROOM_V12) is None
    assert redaction_target({"content": None}, ROOM_V12) is None
