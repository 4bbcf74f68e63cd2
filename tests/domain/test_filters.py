"""Filters: parsing, validation, matching, event_fields projection."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paigham.domain.filters import (
    DEFAULT_FILTER,
    MAX_LIMIT,
    EventFilter,
    Filter,
    RoomEventFilter,
    RoomFilter,
    apply_event_fields,
    filter_events,
    parse_filter,
    parse_room_event_filter,
)
from paigham.domain.matching import MISSING, compile_glob, lookup_path, split_dotted_path
from paigham.errors import MatrixError

SPEC = Path(__file__).resolve().parents[2] / "spec" / "matrix" / "client-server-v1.19.openapi.json"


def ev(type_: str = "m.room.message", sender: str = "@a:x", **extra: Any) -> dict[str, Any]:
    return {"type": type_, "sender": sender, "content": {}, **extra}


# --------------------------------------------------------------------------- parsing


def test_empty_filter_is_default() -> None:
    assert parse_filter({}) == DEFAULT_FILTER
    assert DEFAULT_FILTER.to_json() == {}
    assert DEFAULT_FILTER.room.timeline.matches(ev())


def test_spec_example_parses_and_round_trips() -> None:
    body: dict[str, Any] = {
        "event_fields": ["type", "content", "sender"],
        "event_format": "client",
        "presence": {"not_senders": ["@alice:example.com"], "types": ["m.presence"]},
        "room": {
            "ephemeral": {
                "not_rooms": ["!726s6s6q:example.com"],
                "not_senders": ["@spam:example.com"],
                "types": ["m.receipt", "m.typing"],
            },
            "state": {"not_rooms": ["!726s6s6q:example.com"], "types": ["m.room.*"]},
            "timeline": {
                "limit": 10,
                "not_rooms": ["!726s6s6q:example.com"],
                "not_senders": ["@spam:example.com"],
                "types": ["m.room.message"],
            },
        },
    }
    assert SPEC.exists(), f"the spec's OpenAPI document is missing: {SPEC}"
    op = json.loads(SPEC.read_text())["paths"]["/_matrix/client/v3/user/{userId}/filter"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]["example"]
    f = parse_filter(body)
    assert f.event_fields == ("type", "content", "sender")
    assert f.room.timeline.limit == 10
    assert f.room.state.types == ("m.room.*",)
    assert f.presence.not_senders == ("@alice:example.com",)
    assert parse_filter(f.to_json()) == f
    expected = dict(body)
    expected.pop("event_format")  # the default is not echoed
    assert f.to_json() == expected


def test_all_room_event_filter_fields() -> None:
    f = parse_room_event_filter(
        {
            "limit": 5,
            "rooms": ["!a:x"],
            "not_rooms": [],
            "contains_url": False,
            "lazy_load_members": True,
            "include_redundant_members": True,
            "unread_thread_notifications": True,
            "rel_types": ["m.thread"],
            "org.matrix.msc3874.not_rel_types": ["m.replace"],
        }
    )
    assert f == RoomEventFilter(
        limit=5,
        rooms=("!a:x",),
        not_rooms=(),
        contains_url=False,
        lazy_load_members=True,
        include_redundant_members=True,
        unread_thread_notifications=True,
        rel_types=("m.thread",),
        not_rel_types=("m.replace",),
    )
    assert f.to_json()["not_rel_types"] == ["m.replace"]


def test_limit_clamped_and_zero_allowed() -> None:
    assert parse_filter({"room": {"timeline": {"limit": 10**9}}}).room.timeline.limit == MAX_LIMIT
    assert parse_filter({"room": {"timeline": {"limit": 0}}}).room.timeline.limit == 0
    assert parse_filter({"presence": {"limit": 3}}).presence.limit == 3


def test_unknown_keys_ignored_and_nulls_are_absent() -> None:
    f = parse_filter({"foo": 1, "room": {"bar": [], "timeline": None, "rooms": None}})
    assert f == DEFAULT_FILTER


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ([], "M_BAD_JSON"),
        ("{}", "M_BAD_JSON"),
        ({"presence": "not_an_object"}, "M_BAD_JSON"),
        ({"room": []}, "M_BAD_JSON"),
        ({"room": {"timeline": "x"}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"limit": "10"}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"limit": 1.5}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"limit": True}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"limit": -1}}}, "M_INVALID_PARAM"),
        ({"room": {"timeline": {"types": "m.room.message"}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"types": [1]}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"types": ["x" * 256]}}}, "M_INVALID_PARAM"),
        ({"room": {"timeline": {"types": ["a"] * 1001}}}, "M_INVALID_PARAM"),
        ({"room": {"include_leave": "yes"}}, "M_BAD_JSON"),
        ({"room": {"state": {"lazy_load_members": 1}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"contains_url": "true"}}}, "M_BAD_JSON"),
        ({"room": {"rooms": ["#alias:x"]}}, "M_INVALID_PARAM"),
        ({"room": {"timeline": {"not_rooms": ["x"]}}}, "M_INVALID_PARAM"),
        ({"presence": {"senders": ["alice"]}}, "M_INVALID_PARAM"),
        ({"event_format": "other"}, "M_INVALID_PARAM"),
        ({"event_format": 1}, "M_BAD_JSON"),
        ({"event_fields": "content.body"}, "M_BAD_JSON"),
        ({"event_fields": [None]}, "M_BAD_JSON"),
    ],
)
def test_invalid_bodies(body: object, errcode: str) -> None:
    with pytest.raises(MatrixError) as exc:
        parse_filter(body)
    assert exc.value.status == 400
    assert exc.value.errcode == errcode
    assert exc.value.error.startswith("Invalid filter")


def test_error_names_the_field() -> None:
    with pytest.raises(MatrixError, match=r"room\.timeline\.limit"):
        parse_filter({"room": {"timeline": {"limit": "x"}}})


# --------------------------------------------------------------------------- matching


def test_types_wildcards() -> None:
    f = EventFilter(types=("m.room.*", "org.example.exact"))
    assert f.matches(ev("m.room.message"))
    assert f.matches(ev("m.room."))
    assert f.matches(ev("org.example.exact"))
    assert not f.matches(ev("org.example.exactly"))
    assert not f.matches(ev("m.call.invite"))
    assert not f.matches({"sender": "@a:x"})  # no type at all
    assert EventFilter(types=("*",)).matches(ev("anything"))
    assert EventFilter(types=("m.*.invite",)).matches(ev("m.call.invite"))
    assert not EventFilter(types=()).matches(ev())  # empty list: nothing included
    assert EventFilter(not_types=()).matches(ev())  # empty list: nothing excluded


def test_not_types_and_not_senders_win() -> None:
    f = EventFilter(types=("m.room.*",), not_types=("m.room.member",))
    assert f.matches(ev("m.room.message"))
    assert not f.matches(ev("m.room.member"))
    f = EventFilter(types=("*",), not_types=("*",))
    assert not f.matches(ev())
    f = EventFilter(senders=("@a:x", "@b:x"), not_senders=("@a:x",))
    assert not f.matches(ev(sender="@a:x"))
    assert f.matches(ev(sender="@b:x"))
    assert not f.matches(ev(sender="@c:x"))
    assert not f.matches({"type": "m.typing"})  # senders set, event without sender


def test_wildcard_is_not_regex() -> None:
    f = EventFilter(types=("m.room.mess?ge", "a.b"))
    assert not f.matches(ev("m.room.message"))
    assert not f.matches(ev("aXb"))


def test_rooms_and_not_rooms() -> None:
    f = RoomEventFilter(rooms=("!a:x", "!b:x"), not_rooms=("!b:x",))
    assert f.matches(ev(room_id="!a:x"))
    assert not f.matches(ev(room_id="!b:x"))
    assert not f.matches(ev(room_id="!c:x"))
    assert f.matches(ev(), room_id="!a:x")
    assert not f.matches(ev(room_id="!a:x"), room_id="!c:x")  # explicit room wins
    assert f.matches(ev())  # room unknown: room lists not applied
    rf = RoomFilter(rooms=("!a:x",), not_rooms=("!a:x",))
    assert not rf.room_allowed("!a:x")
    assert RoomFilter().room_allowed("!z:x")
    assert RoomFilter(not_rooms=("!z:x",)).room_allowed("!a:x")


def test_contains_url() -> None:
    image = ev(content={"msgtype": "m.image", "url": "mxc://x/y"})
    bad_url = ev(content={"url": 5})
    text = ev(content={"body": "hi"})
    assert RoomEventFilter(contains_url=True).matches(image)
    assert not RoomEventFilter(contains_url=True).matches(text)
    assert not RoomEventFilter(contains_url=True).matches(bad_url)
    assert RoomEventFilter(contains_url=False).matches(text)
    assert RoomEventFilter(contains_url=False).matches(bad_url)
    assert not RoomEventFilter(contains_url=False).matches(image)
    assert RoomEventFilter().matches(image) and RoomEventFilter().matches(text)


def test_rel_types() -> None:
    thread = ev(content={"m.relates_to": {"rel_type": "m.thread", "event_id": "$r"}})
    edit = ev(content={"m.relates_to": {"rel_type": "m.replace", "event_id": "$r"}})
    plain = ev(content={"body": "x"})
    only_threads = RoomEventFilter(rel_types=("m.thread",))
    assert only_threads.matches(thread)
    assert not only_threads.matches(edit)
    assert not only_threads.matches(plain)
    no_edits = RoomEventFilter(not_rel_types=("m.replace",))
    assert no_edits.matches(thread) and no_edits.matches(plain)
    assert not no_edits.matches(edit)
    both = RoomEventFilter(rel_types=("m.replace",), not_rel_types=("m.replace",))
    assert not both.matches(edit)
    assert RoomEventFilter(rel_types=("m.thread",)).matches({**thread, "content": thread["content"]})
    assert not only_threads.matches(ev(content={"m.relates_to": "junk"}))


def test_filter_events_keeps_order() -> None:
    events = [ev("m.room.message", room_id="!a:x"), ev("m.room.member"), ev("m.room.message", sender="@s:x")]
    out = filter_events(RoomEventFilter(types=("m.room.message",), not_senders=("@s:x",)), events)
    assert out == [events[0]]
    assert filter_events(EventFilter(), events) == events
    assert filter_events(RoomEventFilter(rooms=("!b:x",)), events, room_id="!b:x") == events


def test_hostile_glob_is_fast() -> None:
    f = EventFilter(types=("*a" * 100 + "*b",))
    start = time.perf_counter()
    assert not f.matches(ev("a" * 255))
    assert time.perf_counter() - start < 0.5


# --------------------------------------------------------------------------- event_fields


def test_split_dotted_path_escapes() -> None:
    assert split_dotted_path("content.body") == ("content", "body")
    assert split_dotted_path(r"content.m\.relates_to.rel_type") == ("content", "m.relates_to", "rel_type")
    assert split_dotted_path(r"content.m\\foo") == ("content", "m\\foo")
    assert split_dotted_path(r"content.a\xb") == ("content", r"a\xb")
    assert split_dotted_path("a") == ("a",)
    assert split_dotted_path("a\\") == ("a\\",)
    assert lookup_path({"a": {"b.c": 1}}, r"a.b\.c") == 1
    assert lookup_path({"a": 1}, "a.b") is MISSING
    assert lookup_path({"a": None}, "a") is None


def test_apply_event_fields() -> None:
    event = {
        "type": "m.room.message",
        "sender": "@a:x",
        "event_id": "$e",
        "content": {"body": "hi", "msgtype": "m.text", "m.relates_to": {"rel_type": "m.thread"}},
        "unsigned": {"age": 5},
    }
    original = json.loads(json.dumps(event))
    assert apply_event_fields(event, None) == event
    assert apply_event_fields(event, ["type", "content.body"]) == {
        "type": "m.room.message",
        "content": {"body": "hi"},
    }
    assert apply_event_fields(event, [r"content.m\.relates_to.rel_type", "missing", "content.nope"]) == {
        "content": {"m.relates_to": {"rel_type": "m.thread"}}
    }
    # A whole sub-object then a sub-path must not mutate the event.
    out = apply_event_fields(event, ["unsigned", "unsigned.age", "content.body", "content"])
    assert out["unsigned"] == {"age": 5} and out["content"] == event["content"]
    assert apply_event_fields(event, []) == {}
    assert event == original


def test_compile_glob_options() -> None:
    assert compile_glob("a?c", single_char_wildcard=True)("abc")
    assert not compile_glob("a?c")("abc")
    assert compile_glob("ABC", ignore_case=True)("abc")
    assert compile_glob("ex*ple", ignore_case=True, word_boundary=True)("An exciting triple-whammy")


# --------------------------------------------------------------------------- round trip

_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
_lists = st.none() | st.lists(_names, max_size=4).map(tuple)
_users = st.none() | st.lists(_names.map(lambda s: "@" + s), max_size=3).map(tuple)
_room_ids = st.none() | st.lists(_names.map(lambda s: "!" + s), max_size=3).map(tuple)
_limits = st.none() | st.integers(min_value=0, max_value=MAX_LIMIT)

_event_filters = st.builds(
    EventFilter, limit=_limits, types=_lists, not_types=_lists, senders=_users, not_senders=_users
)
_room_event_filters = st.builds(
    RoomEventFilter,
    limit=_limits,
    types=_lists,
    not_types=_lists,
    senders=_users,
    not_senders=_users,
    rooms=_room_ids,
    not_rooms=_room_ids,
    contains_url=st.none() | st.booleans(),
    lazy_load_members=st.booleans(),
    include_redundant_members=st.booleans(),
    unread_thread_notifications=st.booleans(),
    rel_types=_lists,
    not_rel_types=_lists,
)
_filters = st.builds(
    Filter,
    event_fields=_lists,
    event_format=st.sampled_from(["client", "federation"]),
    presence=_event_filters,
    account_data=_event_filters,
    room=st.builds(
        RoomFilter,
        rooms=_room_ids,
        not_rooms=_room_ids,
        include_leave=st.booleans(),
        timeline=_room_event_filters,
        state=_room_event_filters,
        ephemeral=_room_event_filters,
        account_data=_room_event_filters,
    ),
)


@settings(max_examples=100, deadline=None)
@given(_filters)
def test_round_trip(f: Filter) -> None:
    as_json = f.to_json()
    assert parse_filter(json.loads(json.dumps(as_json))) == f


def _naive_glob(pattern: str, value: str, word_boundary: bool) -> bool:
    """Reference semantics: a plain backtracking regex (fine on tiny inputs)."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    if word_boundary:
        w = "(?-i:[A-Za-z0-9_])"
        return re.search(f"(?<!{w}){body}(?!{w})", value, re.DOTALL | re.IGNORECASE) is not None
    return re.fullmatch(body, value, re.DOTALL | re.IGNORECASE) is not None


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet="ab *?-.", max_size=8),
    st.text(alphabet="abAB -._\n", max_size=12),
    st.booleans(),
)
def test_compile_glob_agrees_with_naive_regex(pattern: str, value: str, word_boundary: bool) -> None:
    compiled = compile_glob(pattern, ignore_case=True, single_char_wildcard=True, word_boundary=word_boundary)
    assert compiled(value) == _naive_glob(pattern, value, word_boundary)
