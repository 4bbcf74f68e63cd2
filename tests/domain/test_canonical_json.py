from __future__ import annotations

import json
from typing import Any

import canonicaljson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paigham.domain.canonical_json import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    MIN_SAFE_INTEGER,
    check_canonical,
    decode,
    encode,
)
from paigham.errors import MatrixError

# The examples of the appendices' "Canonical JSON" section: (input text, canonical output).
SPEC_EXAMPLES = [
    ("{}", "{}"),
    ('{"one": 1, "two": "Two"}', '{"one":1,"two":"Two"}'),
    ('{"b": "2", "a": "1"}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        """{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {
            "display_name": "John Doe", "three_pids": [
            {"medium": "email", "address": "john.doe@example.org"},
            {"medium": "msisdn", "address": "123456789"}]}}}""",
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        '"success":true}}',
    ),
    ('{"a": "日本語"}', '{"a":"日本語"}'),
    ('{"本": 2, "日": 1}', '{"日":1,"本":2}'),
    ('{"a": "\\u65E5"}', '{"a":"日"}'),
    ('{"a": null}', '{"a":null}'),
    ('{"a": -0, "b": 1e10}', '{"a":0,"b":10000000000}'),
]


@pytest.mark.parametrize(("given_text", "expected"), SPEC_EXAMPLES)
def test_spec_examples(given_text: str, expected: str) -> None:
    value = decode(given_text)
    check_canonical(value)
    assert encode(value) == expected.encode("utf-8")


def test_control_characters_use_short_escapes_and_lowercase_hex() -> None:
    assert encode({"a": '\b\t\n\f\r"\\\x01\x1f'}) == b'{"a":"\\b\\t\\n\\f\\r\\"\\\\\\u0001\\u001f"}'


def test_non_ascii_is_raw_utf8_and_keys_sort_by_code_point() -> None:
    # U+FF61 sorts after U+1F600 in UTF-16 code units but before it by code point.
    assert encode({"\U0001f600": 1, "\uff61": 2, "z": 3}) == '{"z":3,"｡":2,"😀":1}'.encode()


@pytest.mark.parametrize(
    "bad",
    [
        {"a": 1.5},
        {"a": 1.0},
        {"a": [float("nan")]},
        {"a": MAX_SAFE_INTEGER + 1},
        {"a": MIN_SAFE_INTEGER - 1},
        {1: "x"},
        {"a": {"b": object()}},
        {"a": "\ud800"},
        {"\udfff": 1},
        {"a": b"bytes"},
    ],
)
def test_check_canonical_rejects(bad: Any) -> None:
    with pytest.raises(MatrixError) as exc:
        check_canonical(bad)
    assert exc.value.status == 400
    assert exc.value.errcode == "M_BAD_JSON"


def test_check_canonical_accepts_bounds_and_bools() -> None:
    check_canonical({"max": MAX_SAFE_INTEGER, "min": MIN_SAFE_INTEGER, "t": True, "n": None, "l": [False]})


def _nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_depth_limit() -> None:
    check_canonical(_nested(MAX_DEPTH))
    with pytest.raises(MatrixError):
        check_canonical(_nested(MAX_DEPTH + 1))
    with pytest.raises(MatrixError):
        check_canonical(_list_nested(MAX_DEPTH + 1))


def _list_nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("text", "errcode"),
    [
        ('{"a": 1.5}', "M_BAD_JSON"),
        ('{"a": 1e-3}', "M_BAD_JSON"),
        ('{"a": 1e400}', "M_BAD_JSON"),
        ('{"a": 9007199254740992}', "M_BAD_JSON"),
        ('{"a": 123456789012345678901234567890}', "M_BAD_JSON"),
        ('{"a": NaN}', "M_BAD_JSON"),
        ('{"a": -Infinity}', "M_BAD_JSON"),
        ("{not json", "M_NOT_JSON"),
        (b"\xff\xfe", "M_NOT_JSON"),
    ],
)
def test_decode_rejects(text: str | bytes, errcode: str) -> None:
    with pytest.raises(MatrixError) as exc:
        decode(text)
    assert exc.value.errcode == errcode


def test_decode_accepts_integral_exponents() -> None:
    assert decode('{"a": 2.0, "b": -1E2, "c": 9007199254740991}') == {"a": 2, "b": -100, "c": 2**53 - 1}


def test_encode_rejects_unencodable() -> None:
    with pytest.raises(MatrixError):
        encode({"a": "\ud800"})
    with pytest.raises(MatrixError):
        encode({"a": float("inf")})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(MIN_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_encode_is_deterministic_sorted_and_round_trips(value: Any) -> None:
    check_canonical(value)
    out = encode(value)
    assert out == encode(json.loads(out))
    assert json.loads(out) == value
    assert out == canonicaljson.encode_canonical_json(value)
    if isinstance(value, dict):
        assert list(json.loads(out)) == sorted(value)


@given(st.dictionaries(st.text(), st.integers(MIN_SAFE_INTEGER, MAX_SAFE_INTEGER), max_size=8))
def test_key_order_does_not_matter(value: dict[str, int]) -> None:
    reversed_value = dict(reversed(list(value.items())))
    assert encode(value) == encode(reversed_value)
