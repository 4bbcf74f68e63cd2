"""Matrix canonical JSON (appendices, "Canonical JSON"): encoding, validation and strict parsing.

* :func:`encode` produces the canonical byte form: shortest UTF-8 JSON, no insignificant
  whitespace, object keys sorted by Unicode code point. It trusts its input to already be
  canonical-safe (it is on the hot path: every hash and signature goes through it); values that
  cannot be represented at all (NaN, lone surrogates) raise ``M_BAD_JSON``.
* :func:`check_canonical` validates untrusted data (event content from clients or servers):
  integers only, within ``[-(2**53)+1, 2**53-1]``, string keys, valid Unicode, nesting depth.
* :func:`decode` parses JSON text strictly: ``NaN``/``Infinity`` are rejected, numbers written with
  a fraction or exponent are accepted only when they are integral (``1e10`` → ``10000000000``, as
  in the spec's examples) and rejected otherwise.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from paigham.errors import Codes, MatrixError

MAX_SAFE_INTEGER = 2**53 - 1
MIN_SAFE_INTEGER = -(2**53) + 1
MAX_DEPTH = 100

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg)


def encode(obj: Any) -> bytes:
    """The canonical JSON encoding of ``obj`` as UTF-8 bytes.

    Floats are not checked here (``check_canonical`` rejects them on the way in); keys are sorted
    by code point, which is Python's ``str`` ordering.
    """
    try:
        return _ENCODER.encode(obj).encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("JSON strings must be valid Unicode (no lone surrogates)") from None
    except ValueError as exc:  # NaN / Infinity, circular references
        raise _bad(f"Value cannot be encoded as canonical JSON: {exc}") from None


def encode_str(obj: Any) -> str:
    """Like :func:`encode`, returning text rather than bytes."""
    return encode(obj).decode("utf-8")


def _check_str(value: str, what: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad(f"Invalid Unicode in {what}") from None


def _check(value: Any, depth: int) -> None:
    # Exact type checks: bool is an int subclass and is allowed; int/str/dict subclasses are fine too.
    if isinstance(value, str):
        _check_str(value, "string")
    elif value is None or value is True or value is False:
        return
    elif isinstance(value, int):
        if not MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise _bad(f"Integer out of the canonical JSON range: {value}")
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise _bad(f"JSON nested more than {MAX_DEPTH} levels deep")
        for key, item in value.items():
            if not isinstance(key, str):
                raise _bad(f"JSON object keys must be strings, not {type(key).__name__}")
            _check_str(key, "object key")
            _check(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise _bad(f"JSON nested more than {MAX_DEPTH} levels deep")
        for item in value:
            _check(item, depth + 1)
    elif isinstance(value, float):
        raise _bad("Floating point numbers are not allowed in canonical JSON")
    else:
        raise _bad(f"Value of type {type(value).__name__} is not JSON")


def check_canonical(obj: Any) -> None:
    """Raise ``400 M_BAD_JSON`` unless ``obj`` can be encoded as Matrix canonical JSON.

    Rejects floats (even integral ones), integers outside ``[-(2**53)+1, 2**53-1]``, non-string
    object keys, strings that are not valid Unicode, non-JSON types, and containers nested more
    than ``MAX_DEPTH`` (100) levels deep (the top-level object is level 1).
    """
    _check(obj, 0)


def _parse_number(text: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the JSON scanner only hands over valid numbers
        raise _bad(f"Invalid number {text!r}") from None
    if not value.is_finite() or value.adjusted() > 16:
        raise _bad(f"Integer out of the canonical JSON range: {text}")
    if value != value.to_integral_value():
        raise _bad(f"Non-integer number {text!r} is not allowed")
    result = int(value)
    if not MIN_SAFE_INTEGER <= result <= MAX_SAFE_INTEGER:
        raise _bad(f"Integer out of the canonical JSON range: {text}")
    return result


def _parse_int(text: str) -> int:
    if len(text) > 17:  # cheap guard against huge literals before int() does the work
        raise _bad("Integer out of the canonical JSON range")
    result = int(text)
    if not MIN_SAFE_INTEGER <= result <= MAX_SAFE_INTEGER:
        raise _bad(f"Integer out of the canonical JSON range: {text}")
    return result


def _reject_constant(name: str) -> Any:
    raise _bad(f"{name} is not allowed in JSON")


def decode(data: bytes | str) -> Any:
    """Parse JSON strictly into canonical-safe values; ``400 M_NOT_JSON`` / ``M_BAD_JSON`` on failure.

    The result still needs :func:`check_canonical` for the depth limit and string validity.
    """
    try:
        return json.loads(data, parse_float=_parse_number, parse_int=_parse_int, parse_constant=_reject_constant)
    except MatrixError:
        raise
    except (ValueError, RecursionError) as exc:
        raise MatrixError(400, Codes.NOT_JSON, f"Content not JSON: {exc}") from None
