from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paigham.domain.redaction import prune_event
from paigham.domain.room_versions import ROOM_V10, ROOM_V11, ROOM_V12, RoomVersion

V10, V11, V12 = ROOM_V10, ROOM_V11, ROOM_V12
ALL_VERSIONS = [V10, V11, V12]

ENVELOPE: dict[str, Any] = {
    "event_id": "$e",
    "room_id": "!r:x",
    "sender": "@a:x",
    "state_key": "",
    "hashes": {"sha256": "h"},
    "signatures": {"x": {"ed25519:1": "s"}},
    "depth": 4,
    "prev_events": ["$p"],
    "prev_state": [],
    "auth_events": ["$a"],
    "origin": "x",
    "origin_server_ts": 5,
    "membership": "join",
    "unsigned": {"age": 1},
    "redacts": "$t",
    "age_ts": 7,
    "extra": {"whatever": 1},
}
KEPT_V10 = {
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "prev_state",
    "auth_events",
    "origin",
    "origin_server_ts",
    "membership",
}
KEPT_V11 = KEPT_V10 - {"origin", "membership", "prev_state"}


def _event(event_type: str, content: dict[str, Any]) -> dict[str, Any]:
    return {**ENVELOPE, "type": event_type, "content": content}


@pytest.mark.parametrize(("version", "kept"), [(V10, KEPT_V10), (V11, KEPT_V11), (V12, KEPT_V11)])
def test_top_level_keys(version: RoomVersion, kept: set[str]) -> None:
    pruned = prune_event(_event("m.room.message", {"body": "x"}), version)
    assert set(pruned) == kept
    assert pruned["content"] == {}
    assert "unsigned" not in pruned and "redacts" not in pruned


MEMBER = {
    "membership": "join",
    "join_authorised_via_users_server": "@b:x",
    "displayname": "A",
    "avatar_url": "mxc://x/y",
    "reason": "r",
    "is_direct": True,
    "third_party_invite": {"display_name": "a@b", "signed": {"mxid": "@a:x", "token": "t", "signatures": {}}},
}
CREATE = {
    "creator": "@a:x",
    "room_version": "10",
    "m.federate": False,
    "predecessor": {"room_id": "!old:x"},
    "type": "m.space",
    "additional_creators": ["@c:x"],
}
JOIN_RULES = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!s:x"}], "x": 1}
POWER_LEVELS = {
    "ban": 50,
    "events": {"m.room.name": 50},
    "events_default": 0,
    "invite": 0,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "users": {"@a:x": 100},
    "users_default": 0,
    "notifications": {"room": 50},
    "historical": 100,
}
PL_V10 = {k: v for k, v in POWER_LEVELS.items() if k not in ("invite", "notifications", "historical")}
PL_V11 = {k: v for k, v in POWER_LEVELS.items() if k not in ("notifications", "historical")}

# (event type, content, expected content per version: v10, v11, v12)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "m.room.member",
        MEMBER,
        {"membership": "join", "join_authorised_via_users_server": "@b:x"},
        {
            "membership": "join",
            "join_authorised_via_users_server": "@b:x",
            "third_party_invite": {"signed": {"mxid": "@a:x", "token": "t", "signatures": {}}},
        },
    ),
    ("m.room.create", CREATE, {"creator": "@a:x"}, CREATE),
    (
        "m.room.join_rules",
        JOIN_RULES,
        {"join_rule": "restricted", "allow": JOIN_RULES["allow"]},
        {"join_rule": "restricted", "allow": JOIN_RULES["allow"]},
    ),
    ("m.room.power_levels", POWER_LEVELS, PL_V10, PL_V11),
    (
        "m.room.history_visibility",
        {"history_visibility": "shared", "x": 1},
        {"history_visibility": "shared"},
        {"history_visibility": "shared"},
    ),
    ("m.room.redaction", {"redacts": "$t", "reason": "spam"}, {}, {"redacts": "$t"}),
    ("m.room.message", {"body": "hi", "msgtype": "m.text"}, {}, {}),
    ("m.room.name", {"name": "n"}, {}, {}),
    ("m.room.topic", {"topic": "t"}, {}, {}),
    ("m.room.avatar", {"url": "mxc://a/b"}, {}, {}),
    ("m.room.canonical_alias", {"alias": "#a:x", "alt_aliases": []}, {}, {}),
    ("m.room.guest_access", {"guest_access": "can_join"}, {}, {}),
    ("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"}, {}, {}),
    ("m.room.server_acl", {"allow": ["*"], "deny": []}, {}, {}),
    ("m.room.tombstone", {"replacement_room": "!n:x", "body": "b"}, {}, {}),
    ("m.room.third_party_invite", {"display_name": "d", "public_key": "k", "key_validity_url": "u"}, {}, {}),
    ("m.room.pinned_events", {"pinned": ["$a"]}, {}, {}),
    ("m.reaction", {"m.relates_to": {"rel_type": "m.annotation"}}, {}, {}),
    ("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "c"}, {}, {}),
    ("m.sticker", {"body": "s", "url": "mxc://a/b"}, {}, {}),
    ("org.example.custom", {"membership": "join", "join_rule": "public"}, {}, {}),
]


@pytest.mark.parametrize(("event_type", "content", "v10", "v11"), CASES, ids=[c[0] for c in CASES])
def test_content_per_type(event_type: str, content: dict[str, Any], v10: dict[str, Any], v11: dict[str, Any]) -> None:
    event = _event(event_type, content)
    assert prune_event(event, V10)["content"] == v10
    assert prune_event(event, V11)["content"] == v11
    assert prune_event(event, V12)["content"] == v11


@pytest.mark.parametrize("invite", [{"display_name": "d"}, "not an object", None])
def test_v11_member_third_party_invite_without_signed(invite: Any) -> None:
    pruned = prune_event(_event("m.room.member", {"membership": "invite", "third_party_invite": invite}), V11)
    if isinstance(invite, dict):
        assert pruned["content"] == {"membership": "invite", "third_party_invite": {}}
    else:
        assert pruned["content"] == {"membership": "invite"}


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=lambda v: v.identifier)
def test_malformed_content_and_missing_keys(version: RoomVersion) -> None:
    assert prune_event({"type": "m.room.member", "content": "x"}, version) == {"type": "m.room.member", "content": {}}
    assert prune_event({}, version) == {"content": {}}
    assert prune_event({"type": 5, "content": {"membership": "join"}}, version) == {"type": 5, "content": {}}


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=lambda v: v.identifier)
def test_does_not_mutate_or_share(version: RoomVersion) -> None:
    event = _event("m.room.power_levels", copy.deepcopy(POWER_LEVELS))
    before = copy.deepcopy(event)
    pruned = prune_event(event, version)
    assert event == before
    pruned["content"]["users"]["@x:x"] = 1
    pruned["signatures"]["y"] = {}
    pruned["prev_events"].append("$z")
    assert event == before


json_leaf = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=5)
json_value = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=10,
)
content_keys = st.sampled_from(
    [
        "membership",
        "join_authorised_via_users_server",
        "creator",
        "join_rule",
        "allow",
        "ban",
        "users",
        "history_visibility",
        "redacts",
        "third_party_invite",
        "signed",
        "body",
        "invite",
        "x",
    ]
)
events = st.fixed_dictionaries(
    {
        "type": st.sampled_from([c[0] for c in CASES]),
        "content": st.dictionaries(content_keys, json_value | st.dictionaries(content_keys, json_value)),
    },
    optional={k: json_value for k in [*ENVELOPE, "unsigned"]},
)


@given(events, st.sampled_from(ALL_VERSIONS))
def test_prune_is_idempotent(event: dict[str, Any], version: RoomVersion) -> None:
    once = prune_event(event, version)
    assert prune_event(once, version) == once
    assert "unsigned" not in once
    assert set(once) <= (KEPT_V10 if version is V10 else KEPT_V11)
