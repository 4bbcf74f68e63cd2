"""Stream tokens. Every stream shares one position, so a token is one integer: `s<position>`.
Pagination tokens use the same positions (history is linear on one server)."""

from __future__ import annotations

from paigham.errors import Codes, MatrixError


def make_token(pos: int) -> str:
    return f"s{pos}"


def parse_token(token: str, what: str = "token") -> int:
    raw = token[1:] if token[:1] in ("s", "t") else token
    # Accept the prefix of tokens with more fields (s12_0_0 from other servers' clients caches).
    raw = raw.split("_", 1)[0]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit(), but int("²") fails
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid {what}")
    return int(raw)
