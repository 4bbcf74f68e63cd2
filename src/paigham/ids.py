"""Matrix identifiers: parsing and validation of user, room and event IDs, and random tokens."""

from __future__ import annotations

import re
import secrets
import string

from paigham.errors import Codes, MatrixError

MAX_ID_BYTES = 255
_LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")
_SERVER_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?$")
_ALPHABET = string.ascii_letters + string.digits


def random_string(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def valid_server_name(name: str) -> bool:
    return bool(_SERVER_RE.match(name)) and len(name) <= 230


def valid_localpart(localpart: str) -> bool:
    return bool(localpart) and bool(_LOCALPART_RE.match(localpart))


def make_user_id(localpart: str, server_name: str) -> str:
    return f"@{localpart}:{server_name}"


def split_id(sigil: str, value: str) -> tuple[str, str]:
    """Split `<sigil>local:server`; raise M_INVALID_PARAM if it does not parse."""
    if not isinstance(value, str) or len(value.encode()) > MAX_ID_BYTES or not value.startswith(sigil):
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid identifier: {value!r}"[:300])
    local, sep, server = value[1:].partition(":")
    if not sep or not local or not valid_server_name(server):
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid identifier: {value!r}"[:300])
    return local, server


def parse_user_id(value: str) -> tuple[str, str]:
    return split_id("@", value)


def is_valid_user_id(value: object) -> bool:
    try:
        parse_user_id(value)  # type: ignore[arg-type]
    except MatrixError:
        return False
    return True


def check_room_id(value: str) -> str:
    """Room IDs are `!opaque:server` (v1-11) or `!hash` (v12); both are accepted."""
    if (
        not isinstance(value, str)
        or not value.startswith("!")
        or len(value) < 2
        or len(value.encode()) > MAX_ID_BYTES
        or any(c.isspace() for c in value)
    ):
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid room ID: {value!r}"[:300])
    return value


def check_event_id(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("$") or len(value) < 2 or len(value.encode()) > MAX_ID_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid event ID: {value!r}"[:300])
    return value


def check_alias(value: str) -> tuple[str, str]:
    return split_id("#", value)
