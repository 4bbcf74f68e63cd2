"""PDU hashing, event IDs, signing and size limits (server-server API, "Signing Events").

A PDU here is the federation event format as a plain dict. In room versions 10-12 it carries no
``event_id``: the ID is derived from the reference hash (fragment "v4-event-ids"), and in room
version 12 the room ID is derived from the create event's reference hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from unpaddedbase64 import decode_base64, encode_base64

from paigham.domain.canonical_json import encode
from paigham.domain.redaction import prune_event
from paigham.domain.room_versions import ROOM_V12, RoomVersion
from paigham.domain.signing import SigningKey, VerifyKey, sign_json, verify_json
from paigham.errors import Codes, MatrixError

MAX_EVENT_BYTES = 65536
MAX_KEY_BYTES = 255
# Keys whose values are limited to 255 bytes ("Size limits" in the client-server API).
_SIZE_LIMITED_KEYS = ("sender", "room_id", "type", "state_key", "event_id")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _content_hash_bytes(pdu: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    return _sha256(encode(body))


def compute_content_hash(pdu: Mapping[str, Any]) -> str:
    """The content hash: unpadded base64 of sha256 over the canonical JSON of the PDU without
    ``unsigned``, ``signatures`` and ``hashes`` (the value of ``hashes.sha256``)."""
    return encode_base64(_content_hash_bytes(pdu))


def check_content_hash(pdu: Mapping[str, Any]) -> bool:
    """Whether ``hashes.sha256`` of a received PDU matches its content. When it does not, the spec
    says to use the redacted form of the event instead of rejecting it."""
    hashes = pdu.get("hashes")
    expected = hashes.get("sha256") if isinstance(hashes, Mapping) else None
    if not isinstance(expected, str):
        return False
    try:
        return decode_base64(expected) == _content_hash_bytes(pdu)
    except Exception:  # not base64
        return False


def _essential(pdu: Mapping[str, Any], version: RoomVersion) -> dict[str, Any]:
    """The redacted PDU without ``signatures``/``unsigned``: what the reference hash covers.

    An ``event_id`` key is dropped (in these room versions it is not part of the PDU, and an ID can
    not cover itself). So is a ``room_id`` on a room v12 create event (which has none on the wire,
    though callers may store the room ID alongside it).
    """
    pruned = prune_event(pdu, version)
    pruned.pop("signatures", None)
    pruned.pop("event_id", None)
    if version.room_id_is_create_hash and pdu.get("type") == "m.room.create":
        pruned.pop("room_id", None)
    return pruned


def compute_reference_hash(pdu: Mapping[str, Any], version: RoomVersion) -> bytes:
    """The reference hash (raw sha256 digest) of the event, per "Calculating the reference hash"."""
    return _sha256(encode(_essential(pdu, version)))


def _urlsafe(digest: bytes) -> str:
    return encode_base64(digest, urlsafe=True)


def compute_event_id(pdu: Mapping[str, Any], version: RoomVersion) -> str:
    """``$`` + URL-safe unpadded base64 of the reference hash (room versions 4 and later)."""
    return "$" + _urlsafe(compute_reference_hash(pdu, version))


def compute_v12_room_id(create_pdu: Mapping[str, Any], version: RoomVersion = ROOM_V12) -> str:
    """The room ID of a room whose create event is ``create_pdu``: its event ID with sigil ``!``.

    The create event must already carry its ``hashes`` and ``signatures`` (see :func:`finalise_pdu`).
    """
    return "!" + _urlsafe(compute_reference_hash(create_pdu, version))


def create_event_id_for_room(room_id: str) -> str:
    """The create event's ID for a room ID of the create-hash form (room version 12)."""
    return "$" + room_id[1:]


def add_content_hash(pdu: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``pdu`` with ``hashes`` set to ``{"sha256": <content hash>}``."""
    out = dict(pdu)
    out["hashes"] = {"sha256": compute_content_hash(pdu)}
    return out


def sign_pdu(pdu: Mapping[str, Any], server_name: str, signing_key: SigningKey, version: RoomVersion) -> dict[str, Any]:
    """A copy of ``pdu`` signed by ``server_name``: the signature covers the redacted event (so it
    survives redaction), and is merged into the PDU's existing ``signatures``."""
    signed = sign_json(prune_event(pdu, version), server_name, signing_key)
    out = dict(pdu)
    out["signatures"] = signed["signatures"]
    return out


def verify_pdu_signature(pdu: Mapping[str, Any], server_name: str, verify_key: VerifyKey, version: RoomVersion) -> bool:
    """Whether ``pdu`` carries a valid signature of ``server_name`` by ``verify_key`` (checked over
    the redacted form, so a redacted copy of a signed event verifies too)."""
    return verify_json(prune_event(pdu, version), server_name, verify_key)


def finalise_pdu(
    pdu: Mapping[str, Any], server_name: str, signing_key: SigningKey, version: RoomVersion
) -> tuple[str, dict[str, Any]]:
    """Add the content hash and this server's signature; return ``(event_id, pdu)``.

    Any ``hashes`` and ``signatures`` already on ``pdu`` are replaced (the content hash does not
    cover them). ``pdu`` itself is not modified.
    """
    base = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures")}
    out = sign_pdu(add_content_hash(base), server_name, signing_key, version)
    return compute_event_id(out, version), out


def redaction_target(pdu: Mapping[str, Any], version: RoomVersion) -> str | None:
    """The event ID an ``m.room.redaction`` redacts: ``content.redacts`` from room v11, the
    top-level ``redacts`` before. None when absent or not a string."""
    if version.redacts_in_content:
        content = pdu.get("content")
        target = content.get("redacts") if isinstance(content, Mapping) else None
    else:
        target = pdu.get("redacts")
    return target if isinstance(target, str) else None


def check_event_size(pdu: Mapping[str, Any], event_id: str | None = None) -> None:
    """Enforce the event size limits ("Size limits" in the client-server API).

    ``pdu`` is the complete federation-format event including hashes and signatures. Over 65536
    bytes of canonical JSON, or a ``sender``/``room_id``/``type``/``state_key``/``event_id`` over
    255 bytes, raises ``413 M_TOO_LARGE``; one of those keys present but not a string raises
    ``400 M_BAD_JSON``. ``event_id`` is checked when given (v4+ PDUs do not carry it).
    """
    values = [(k, pdu[k]) for k in _SIZE_LIMITED_KEYS if k in pdu]
    if event_id is not None:
        values.append(("event_id", event_id))
    for key, value in values:
        if not isinstance(value, str):
            raise MatrixError(400, Codes.BAD_JSON, f"'{key}' must be a string")
        if len(value) > MAX_KEY_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise MatrixError(413, Codes.TOO_LARGE, f"'{key}' is longer than {MAX_KEY_BYTES} bytes")
    if len(encode(pdu)) > MAX_EVENT_BYTES:
        raise MatrixError(413, Codes.TOO_LARGE, f"Event is larger than {MAX_EVENT_BYTES} bytes")
