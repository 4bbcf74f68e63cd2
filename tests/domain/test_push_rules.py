"""Push rules: the predefined ruleset, user customisations and the evaluator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from paigham.domain.push_evaluator import (
    PushContext,
    action_tweaks,
    actions_notify,
    compile_condition,
    compile_ruleset,
    evaluate,
)
from paigham.domain.push_rules import (
    KINDS,
    MAX_RULES_PER_KIND,
    DefaultOverride,
    UserRule,
    UserRules,
    add_rule,
    default_rules,
    delete_rule,
    effective_rules,
    get_rule,
    set_actions,
    set_enabled,
)
from paigham.errors import MatrixError

SPEC = Path(__file__).resolve().parents[2] / "spec" / "matrix" / "client-server-v1.19.openapi.json"
ME = "@me:example.org"
OTHER = "@other:example.org"
ROOM = "!room:example.org"

SPEC_OVERRIDE_ORDER = [
    ".m.rule.master",
    ".m.rule.suppress_notices",
    ".m.rule.invite_for_me",
    ".m.rule.member_event",
    ".m.rule.is_user_mention",
    ".m.rule.is_room_mention",
    ".m.rule.tombstone",
    ".m.rule.reaction",
    ".m.rule.room.server_acl",
    ".m.rule.suppress_edits",
]
SPEC_UNDERRIDE_ORDER = [
    ".m.rule.call",
    ".m.rule.encrypted_room_one_to_one",
    ".m.rule.room_one_to_one",
    ".m.rule.message",
    ".m.rule.encrypted",
]


def ruleset_schema() -> dict[str, Any]:
    assert SPEC.exists(), f"the spec's OpenAPI document is missing: {SPEC}"
    op = json.loads(SPEC.read_text())["paths"]["/_matrix/client/v3/pushrules/"]["get"]
    schema: dict[str, Any] = op["responses"]["200"]["content"]["application/json"]["schema"]
    return schema


def validate_ruleset(ruleset: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(ruleset_schema()).validate(ruleset)
    assert set(ruleset) == {"global"}
    assert list(ruleset["global"]) == list(KINDS)
    for rules in ruleset["global"].values():
        ids = [r["rule_id"] for r in rules]
        assert len(ids) == len(set(ids))


def ids(ruleset: dict[str, Any], kind: str) -> list[str]:
    return [r["rule_id"] for r in ruleset["global"][kind]]


def msg(
    body: str = "hello", sender: str = OTHER, extra: dict[str, Any] | None = None, **content: Any
) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": sender,
        "room_id": ROOM,
        "event_id": "$e",
        "content": {"msgtype": "m.text", "body": body, **(extra or {}), **content},
    }


def ctx(members: int = 10, power: int = 0, **kw: Any) -> PushContext:
    return PushContext(
        user_id=ME, user_display_name="Me Myself", room_member_count=members, sender_power_level=power, **kw
    )


def run(event: dict[str, Any], user_rules: UserRules | None = None, **kw: Any) -> list[Any] | None:
    return evaluate(event, effective_rules(ME, user_rules or UserRules()), ctx(**kw))


def err(exc: pytest.ExceptionInfo[MatrixError]) -> tuple[int, str]:
    return exc.value.status, exc.value.errcode


# --------------------------------------------------------------------------- the default ruleset


def test_default_ruleset_validates_and_is_in_spec_order() -> None:
    rules = default_rules(ME)
    validate_ruleset(rules)
    assert ids(rules, "override") == SPEC_OVERRIDE_ORDER
    assert ids(rules, "underride") == SPEC_UNDERRIDE_ORDER
    assert rules["global"]["content"] == rules["global"]["room"] == rules["global"]["sender"] == []
    for kind in KINDS:
        for rule in rules["global"][kind]:
            assert rule["default"] is True
            assert rule["enabled"] is (rule["rule_id"] != ".m.rule.master")
            assert rule["rule_id"].startswith(".")


def test_default_rules_embed_the_user_and_match_the_spec_text() -> None:
    by_id = {r["rule_id"]: r for k in KINDS for r in default_rules(ME)["global"][k]}
    assert by_id[".m.rule.invite_for_me"]["conditions"][2] == {"kind": "event_match", "key": "state_key", "pattern": ME}
    assert by_id[".m.rule.invite_for_me"]["actions"] == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert by_id[".m.rule.is_user_mention"]["conditions"] == [
        {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": ME}
    ]
    assert by_id[".m.rule.is_user_mention"]["actions"] == [
        "notify",
        {"set_tweak": "sound", "value": "default"},
        {"set_tweak": "highlight"},
    ]
    assert by_id[".m.rule.member_event"]["actions"] == []
    assert by_id[".m.rule.call"]["actions"] == ["notify", {"set_tweak": "sound", "value": "ring"}]
    assert by_id[".m.rule.message"]["actions"] == ["notify"]
    assert by_id[".m.rule.encrypted"]["actions"] == ["notify"]
    assert by_id[".m.rule.tombstone"]["conditions"][1] == {"kind": "event_match", "key": "state_key", "pattern": ""}
    legacy = {".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"}
    assert not legacy & set(by_id)  # removed in v1.17


def test_default_rules_are_fresh_copies() -> None:
    a = default_rules(ME)
    a["global"]["override"][0]["actions"].append("notify")
    assert default_rules(ME)["global"]["override"][0]["actions"] == []


# --------------------------------------------------------------------------- evaluating the defaults


def test_plain_message() -> None:
    assert run(msg()) == ["notify"]
    assert actions_notify(run(msg())) == (True, False)


def test_one_to_one_and_encrypted() -> None:
    sound = {"set_tweak": "sound", "value": "default"}
    assert run(msg(), members=2) == ["notify", sound]
    encrypted = {"type": "m.room.encrypted", "sender": OTHER, "room_id": ROOM, "content": {"ciphertext": "x"}}
    assert run(encrypted, members=2) == ["notify", sound]
    assert run(encrypted, members=3) == ["notify"]


def test_notice_is_suppressed() -> None:
    actions = run(msg(msgtype="m.notice"))
    assert actions == []
    assert actions_notify(actions) == (False, False)


def test_user_mention_highlights() -> None:
    actions = run(msg("hi", extra={"m.mentions": {"user_ids": [OTHER, ME]}}))
    assert actions_notify(actions) == (True, True)
    assert action_tweaks(actions) == {"sound": "default", "highlight": True}
    # Mentioning someone else, or a display name in the body, is just a message.
    assert run(msg("Me Myself", extra={"m.mentions": {"user_ids": [OTHER]}})) == ["notify"]


def test_room_mention_needs_power() -> None:
    event = msg("@room", extra={"m.mentions": {"room": True}})
    assert actions_notify(run(event, power=50)) == (True, True)
    assert run(event, power=49) == ["notify"]
    assert actions_notify(run(event, power=10, notification_power_levels={"room": 10})) == (True, True)
    assert run(msg(extra={"m.mentions": {"room": "true"}}), power=100) == ["notify"]


def test_member_events() -> None:
    invite = {
        "type": "m.room.member",
        "sender": OTHER,
        "room_id": ROOM,
        "state_key": ME,
        "content": {"membership": "invite"},
    }
    assert run(invite) == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert run({**invite, "state_key": "@third:example.org"}) == []
    assert run({**invite, "content": {"membership": "join"}}) == []


def test_other_default_overrides() -> None:
    tombstone = {"type": "m.room.tombstone", "sender": OTHER, "state_key": "", "content": {"body": "moved"}}
    assert actions_notify(run(tombstone)) == (True, True)
    assert run({k: v for k, v in tombstone.items() if k != "state_key"}) is None
    assert run({"type": "m.reaction", "sender": OTHER, "content": {}}) == []
    assert run({"type": "m.room.server_acl", "sender": OTHER, "state_key": "", "content": {}}) == []
    edit = msg("* fixed", extra={"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert run(edit) == []
    call = {"type": "m.call.invite", "sender": OTHER, "content": {}}
    assert run(call) == ["notify", {"set_tweak": "sound", "value": "ring"}]
    assert run({"type": "org.example.custom", "sender": OTHER, "content": {}}) is None


def test_own_events_never_notify() -> None:
    assert run(msg(sender=ME, extra={"m.mentions": {"user_ids": [ME]}})) is None


def test_master_rule_silences_everything() -> None:
    muted = set_enabled(UserRules(), "override", ".m.rule.master", True)
    assert run(msg(extra={"m.mentions": {"user_ids": [ME]}}), muted) == []
    assert effective_rules(ME, muted)["global"]["override"][0]["enabled"] is True


# --------------------------------------------------------------------------- conditions


def matches(condition: dict[str, Any], event: dict[str, Any], context: PushContext | None = None) -> bool:
    compiled = compile_condition(condition)
    return compiled is not None and compiled(event, context or ctx())


def test_event_match_glob_spec_examples() -> None:
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}
    for topic in ("Lunch plans", "LUNCH"):
        assert matches(cond, {"content": {"topic": topic}})
    for bad in (" lunch", "lunc", None, 5):
        assert not matches(cond, {"content": {"topic": bad}})
    assert not matches({"kind": "event_match", "key": "content.topic", "pattern": "*"}, {"content": {}})
    assert matches({"kind": "event_match", "key": "type", "pattern": "m.room.*"}, {"type": "m.room.message"})
    assert not matches({"kind": "event_match", "key": "type", "pattern": "m.room"}, {"type": "m.room.message"})


def test_event_match_body_word_boundaries() -> None:
    cond = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
    for body in ("An example event.", "exple", "An exciting triple-whammy", "EXAMPLE"):
        assert matches(cond, {"content": {"body": body}}), body
    for body in ("examples", "counterexample", "ex", "tex_ple"):
        assert not matches(cond, {"content": {"body": body}}), body
    word = {"kind": "event_match", "key": "content.body", "pattern": "cake"}
    assert matches(word, {"content": {"body": "I like cake!"}})
    assert matches(word, {"content": {"body": "über-cake"}})
    assert not matches(word, {"content": {"body": "cakes"}})
    assert not matches(word, {"content": {"body": "cake_walk"}})


def test_dotted_keys_with_escapes() -> None:
    cond = {"kind": "event_property_is", "key": "content.m\\.federate", "value": True}
    assert matches(cond, {"content": {"m.federate": True}})
    assert not matches(cond, {"content": {"m.federate": "true"}})
    assert not matches(cond, {"content": {"m.federate": 1}})
    assert not matches(cond, {"content": {"m": {"federate": True}}})
    one = {"kind": "event_property_is", "key": "content.n", "value": 1}
    assert matches(one, {"content": {"n": 1}})
    assert not matches(one, {"content": {"n": True}})
    assert not matches(one, {"content": {"n": 1.0}})
    null = {"kind": "event_property_is", "key": "content.x", "value": None}
    assert matches(null, {"content": {"x": None}})
    assert not matches(null, {"content": {}})


def test_event_property_contains() -> None:
    cond = {"kind": "event_property_contains", "key": "content.alt_aliases", "value": "#myroom:example.com"}
    assert matches(cond, {"content": {"alt_aliases": ["#somewhere:example.org", "#myroom:example.com"]}})
    assert not matches(cond, {"content": {"alt_aliases": [":example.com"]}})
    assert not matches(cond, {"content": {"alt_aliases": "#myroom:example.com"}})
    assert not matches(cond, {"content": {}})
    flag = {"kind": "event_property_contains", "key": "content.l", "value": True}
    assert not matches(flag, {"content": {"l": [1, [True], {"a": True}]}})
    assert matches(flag, {"content": {"l": [1, True]}})


def test_contains_display_name() -> None:
    cond = {"kind": "contains_display_name"}
    assert matches(cond, {"content": {"body": "hey me myself, lunch?"}})
    assert not matches(cond, {"content": {"body": "Me Myselfish"}})
    assert not matches(cond, {"content": {"body": "hey"}})
    weird = PushContext(user_id=ME, user_display_name="a.b*")
    assert matches(cond, {"content": {"body": "ping a.b*"}}, weird)
    assert not matches(cond, {"content": {"body": "ping axbbb"}}, weird)
    assert not matches(cond, {"content": {"body": ""}}, PushContext(user_id=ME, user_display_name=""))


@pytest.mark.parametrize(
    ("is_", "count", "expected"),
    [
        ("2", 2, True),
        ("2", 3, False),
        ("==2", 2, True),
        ("<3", 2, True),
        ("<3", 3, False),
        (">2", 3, True),
        (">2", 2, False),
        ("<=2", 2, True),
        ("<=2", 3, False),
        (">=3", 3, True),
        (">=3", 2, False),
    ],
)
def test_room_member_count(is_: str, count: int, expected: bool) -> None:
    assert matches({"kind": "room_member_count", "is": is_}, {}, ctx(members=count)) is expected


def test_malformed_and_unknown_conditions_never_match() -> None:
    for cond in (
        {"kind": "room_member_count", "is": "lots"},
        {"kind": "room_member_count"},
        {"kind": "event_match", "key": "type"},
        {"kind": "event_property_is", "key": "type"},
        {"kind": "event_property_is", "key": "type", "value": [1]},
        {"kind": "related_event_match", "key": "sender", "pattern": "*", "rel_type": "m.in_reply_to"},
        {"kind": "org.example.whatever"},
    ):
        assert compile_condition(cond) is None
    rules = {
        "global": {
            "override": [
                {
                    "rule_id": "x",
                    "enabled": True,
                    "default": False,
                    "actions": ["notify"],
                    "conditions": [{"kind": "?"}],
                },
                {"rule_id": "off", "enabled": False, "default": False, "actions": ["notify"], "conditions": []},
            ]
        }
    }
    assert compile_ruleset(rules) == ()
    assert evaluate(msg(), rules, ctx()) is None


def test_sender_notification_permission() -> None:
    cond = {"kind": "sender_notification_permission", "key": "room"}
    assert matches(cond, {}, ctx(power=50))
    assert not matches(cond, {}, ctx(power=49))
    other = {"kind": "sender_notification_permission", "key": "custom"}
    assert matches(other, {}, ctx(power=5, notification_power_levels={"custom": 5}))
    assert not matches(other, {}, ctx(power=5, notification_power_levels={"room": 0}))


def test_hostile_patterns_are_fast() -> None:
    pattern = "*a" * 60 + "*b"
    conds = [
        {"kind": "event_match", "key": "content.body", "pattern": pattern},
        {"kind": "event_match", "key": "content.topic", "pattern": pattern},
    ]
    event = {"content": {"body": "a " * 20000, "topic": "a" * 40000}}
    start = time.perf_counter()
    for cond in conds:
        assert not matches(cond, event)
    assert time.perf_counter() - start < 1.0


def test_evaluation_is_fast_when_compiled() -> None:
    user_rules = add_rule(UserRules(), "content", "kw", {"pattern": "deploy*", "actions": ["notify"]})
    compiled = compile_ruleset(effective_rules(ME, user_rules))
    event = msg("just a normal message in a big room " * 20)
    context = ctx(members=500)
    start = time.perf_counter()
    for _ in range(5000):
        assert evaluate(event, compiled, context) == ["notify"]
    assert time.perf_counter() - start < 2.0


# --------------------------------------------------------------------------- actions


def test_actions_notify() -> None:
    assert actions_notify(None) == (False, False)
    assert actions_notify([]) == (False, False)
    assert actions_notify(["dont_notify"]) == (False, False)
    assert actions_notify(["coalesce"]) == (False, False)
    assert actions_notify(["notify"]) == (True, False)
    assert actions_notify(["notify", {"set_tweak": "highlight"}]) == (True, True)
    assert actions_notify(["notify", {"set_tweak": "highlight", "value": False}]) == (True, False)
    assert actions_notify(["notify", {"set_tweak": "highlight", "value": True}]) == (True, True)
    assert actions_notify([{"set_tweak": "highlight"}]) == (False, False)
    assert action_tweaks(["notify", {"set_tweak": "sound", "value": "ring"}, {"set_tweak": "x"}]) == {"sound": "ring"}


# --------------------------------------------------------------------------- user rules


def test_user_rules_come_before_defaults_except_master() -> None:
    ur = add_rule(UserRules(), "override", "mine", {"conditions": [], "actions": ["notify"]})
    ur = add_rule(
        ur, "underride", "low", {"conditions": [{"kind": "event_match", "key": "type", "pattern": "x"}], "actions": []}
    )
    ur = add_rule(ur, "content", "cake", {"pattern": "cake*lie", "actions": ["notify", {"set_tweak": "highlight"}]})
    ur = add_rule(ur, "room", ROOM, {"actions": []})
    ur = add_rule(ur, "sender", OTHER, {"actions": ["notify"]})
    rules = effective_rules(ME, ur)
    validate_ruleset(rules)
    assert ids(rules, "override") == [".m.rule.master", "mine", *SPEC_OVERRIDE_ORDER[1:]]
    assert ids(rules, "underride") == ["low", *SPEC_UNDERRIDE_ORDER]
    assert rules["global"]["content"] == [
        {
            "rule_id": "cake",
            "default": False,
            "enabled": True,
            "pattern": "cake*lie",
            "actions": ["notify", {"set_tweak": "highlight"}],
        }
    ]
    assert rules["global"]["room"] == [{"rule_id": ROOM, "default": False, "enabled": True, "actions": []}]
    assert ids(rules, "sender") == [OTHER]


def test_user_rules_evaluate() -> None:
    ur = add_rule(
        UserRules(), "content", "cake", {"pattern": "cake*lie", "actions": ["notify", {"set_tweak": "highlight"}]}
    )
    assert actions_notify(run(msg("the CAKE is a lie"), ur)) == (True, True)
    assert run(msg("cake lies"), ur) == ["notify"]
    muted_room = add_rule(UserRules(), "room", ROOM, {"actions": []})
    assert run(msg(), muted_room) == []
    assert run({**msg(), "room_id": "!elsewhere:x"}, muted_room) == ["notify"]
    muted_sender = add_rule(UserRules(), "sender", OTHER, {"actions": ["dont_notify"]})
    assert run(msg(), muted_sender) == []
    # Overrides beat room rules; mentions are overrides.
    assert actions_notify(run(msg(extra={"m.mentions": {"user_ids": [ME]}}), muted_room)) == (True, True)


def test_new_rules_first_and_before_after() -> None:
    body = {"pattern": "p", "actions": ["notify"]}
    ur = UserRules()
    for rid in ("a", "b", "c"):
        ur = add_rule(ur, "content", rid, body)
    assert [r.rule_id for r in ur.of_kind("content")] == ["c", "b", "a"]
    ur = add_rule(ur, "content", "d", body, before="a")
    assert [r.rule_id for r in ur.of_kind("content")] == ["c", "b", "d", "a"]
    ur = add_rule(ur, "content", "e", body, after="c")
    assert [r.rule_id for r in ur.of_kind("content")] == ["c", "e", "b", "d", "a"]
    ur = add_rule(ur, "content", "f", body, before="c", after="a")  # before wins
    assert [r.rule_id for r in ur.of_kind("content")] == ["f", "c", "e", "b", "d", "a"]
    ur = add_rule(ur, "content", "c", body, after="a")  # moving an existing rule
    assert [r.rule_id for r in ur.of_kind("content")] == ["f", "e", "b", "d", "a", "c"]


def test_update_keeps_position_and_enabled_and_is_idempotent() -> None:
    ur = UserRules()
    for rid in ("a", "b", "c"):
        ur = add_rule(ur, "content", rid, {"pattern": rid, "actions": ["notify"]})
    ur = set_enabled(ur, "content", "b", False)
    again = add_rule(ur, "content", "b", {"pattern": "new", "actions": []})
    assert [r.rule_id for r in again.of_kind("content")] == ["c", "b", "a"]
    assert again.of_kind("content")[1] == UserRule("b", (), enabled=False, pattern="new")
    assert add_rule(ur, "content", "b", {"pattern": "b", "actions": ["notify"]}) == ur


@pytest.mark.parametrize(
    ("kind", "rule_id", "body", "before", "expected"),
    [
        ("content", ".m.rule.mine", {"pattern": "x", "actions": []}, None, (400, "M_INVALID_PARAM")),
        ("content", "a/b", {"pattern": "x", "actions": []}, None, (400, "M_INVALID_PARAM")),
        ("content", "a\\b", {"pattern": "x", "actions": []}, None, (400, "M_INVALID_PARAM")),
        ("content", "", {"pattern": "x", "actions": []}, None, (400, "M_INVALID_PARAM")),
        ("global", "x", {"actions": []}, None, (400, "M_INVALID_PARAM")),
        ("override", "x", {"actions": ["notify"]}, None, (400, "M_MISSING_PARAM")),
        ("underride", "x", {"actions": ["notify"]}, None, (400, "M_MISSING_PARAM")),
        ("override", "x", {"conditions": [{"key": "type"}], "actions": []}, None, (400, "M_MISSING_PARAM")),
        ("override", "x", {"conditions": ["type"], "actions": []}, None, (400, "M_BAD_JSON")),
        ("override", "x", {"conditions": {}, "actions": []}, None, (400, "M_BAD_JSON")),
        (
            "override",
            "x",
            {"conditions": [{"kind": "event_match", "key": "type"}], "actions": []},
            None,
            (400, "M_MISSING_PARAM"),
        ),
        (
            "override",
            "x",
            {"conditions": [{"kind": "event_property_is", "key": "a", "value": 1.5}], "actions": []},
            None,
            (400, "M_INVALID_PARAM"),
        ),
        ("content", "x", {"actions": ["notify"]}, None, (400, "M_MISSING_PARAM")),
        ("content", "x", {"pattern": 1, "actions": ["notify"]}, None, (400, "M_BAD_JSON")),
        ("content", "x", {"pattern": "p"}, None, (400, "M_MISSING_PARAM")),
        ("content", "x", {"pattern": "p", "actions": "notify"}, None, (400, "M_BAD_JSON")),
        ("content", "x", {"pattern": "p", "actions": ["wibble"]}, None, (400, "M_INVALID_PARAM")),
        ("content", "x", {"pattern": "p", "actions": [{"value": 1}]}, None, (400, "M_INVALID_PARAM")),
        ("content", "x", {"pattern": "p", "actions": [1]}, None, (400, "M_INVALID_PARAM")),
        ("content", "x", [], None, (400, "M_BAD_JSON")),
        ("room", "#alias:x", {"actions": []}, None, (400, "M_INVALID_PARAM")),
        ("sender", "bob", {"actions": []}, None, (400, "M_INVALID_PARAM")),
        ("content", "x", {"pattern": "p", "actions": []}, "nope", (400, "M_UNKNOWN")),
        ("override", "x", {"conditions": [], "actions": []}, ".m.rule.master", (400, "M_UNKNOWN")),
    ],
)
def test_add_rule_errors(kind: str, rule_id: str, body: Any, before: str | None, expected: tuple[int, str]) -> None:
    with pytest.raises(MatrixError) as exc:
        add_rule(UserRules(), kind, rule_id, body, before=before)
    assert err(exc) == expected


def test_after_unknown_rule_message() -> None:
    with pytest.raises(MatrixError, match="before/after rule not found: ghost"):
        add_rule(UserRules(), "content", "x", {"pattern": "p", "actions": []}, after="ghost")


def test_unknown_conditions_are_accepted_and_legacy_actions_stripped() -> None:
    ur = add_rule(
        UserRules(),
        "override",
        "future",
        {"conditions": [{"kind": "org.example.future", "foo": 1}], "actions": ["notify", "coalesce", "org.x.act"]},
    )
    assert ur.of_kind("override")[0].actions == ("notify", "org.x.act")
    assert run(msg(), ur) == ["notify"]  # the rule never matches; the default message rule does


def test_too_many_rules() -> None:
    rules = tuple(UserRule(f"r{i}", (), pattern="p") for i in range(MAX_RULES_PER_KIND))
    ur = UserRules(rules={"content": rules})
    with pytest.raises(MatrixError) as exc:
        add_rule(ur, "content", "one-more", {"pattern": "p", "actions": []})
    assert err(exc) == (400, "M_INVALID_PARAM")
    add_rule(ur, "content", "r0", {"pattern": "q", "actions": []})  # updating is fine


def test_delete_rule() -> None:
    ur = add_rule(UserRules(), "sender", OTHER, {"actions": []})
    assert delete_rule(ur, "sender", OTHER).of_kind("sender") == ()
    with pytest.raises(MatrixError) as exc:
        delete_rule(ur, "sender", "@nobody:x")
    assert err(exc) == (404, "M_NOT_FOUND")
    with pytest.raises(MatrixError) as exc:
        delete_rule(ur, "room", OTHER)  # wrong kind
    assert err(exc) == (404, "M_NOT_FOUND")
    with pytest.raises(MatrixError) as exc:
        delete_rule(ur, "override", ".m.rule.master")
    assert err(exc) == (400, "M_INVALID_PARAM")
    with pytest.raises(MatrixError) as exc:
        delete_rule(ur, "nope", OTHER)
    assert err(exc) == (400, "M_INVALID_PARAM")


def test_enable_disable() -> None:
    ur = set_enabled(UserRules(), "underride", ".m.rule.message", False)
    assert get_rule(ME, ur, "underride", ".m.rule.message")["enabled"] is False
    assert run(msg(), ur) is None
    ur = set_enabled(ur, "underride", ".m.rule.message", True)
    assert run(msg(), ur) == ["notify"]
    ur = add_rule(ur, "room", ROOM, {"actions": []})
    ur = set_enabled(ur, "room", ROOM, False)
    assert get_rule(ME, ur, "room", ROOM)["enabled"] is False
    assert run(msg(), ur) == ["notify"]
    for kind, rule_id, value, expected in [
        ("underride", ".m.rule.nope", True, (404, "M_NOT_FOUND")),
        ("override", ".m.rule.message", True, (404, "M_NOT_FOUND")),
        ("underride", ".m.rule.message", "yes", (400, "M_BAD_JSON")),
        ("bogus", ".m.rule.message", True, (400, "M_INVALID_PARAM")),
    ]:
        with pytest.raises(MatrixError) as exc:
            set_enabled(ur, kind, rule_id, value)
        assert err(exc) == expected


def test_change_actions() -> None:
    loud = ["notify", {"set_tweak": "sound", "value": "bell"}, {"set_tweak": "highlight"}]
    ur = set_actions(UserRules(), "underride", ".m.rule.message", loud)
    assert get_rule(ME, ur, "underride", ".m.rule.message") == {
        **default_rules(ME)["global"]["underride"][3],
        "actions": loud,
    }
    assert actions_notify(run(msg(), ur)) == (True, True)
    ur = add_rule(ur, "content", "kw", {"pattern": "p", "actions": []})
    ur = set_actions(ur, "content", "kw", ["notify"])
    assert get_rule(ME, ur, "content", "kw")["actions"] == ["notify"]
    with pytest.raises(MatrixError) as exc:
        set_actions(ur, "content", "ghost", ["notify"])
    assert err(exc) == (404, "M_NOT_FOUND")
    with pytest.raises(MatrixError) as exc:
        set_actions(ur, "content", "kw", [42])
    assert err(exc) == (400, "M_INVALID_PARAM")


def test_get_rule() -> None:
    assert get_rule(ME, UserRules(), "override", ".m.rule.master")["enabled"] is False
    with pytest.raises(MatrixError) as exc:
        get_rule(ME, UserRules(), "override", "nope")
    assert err(exc) == (404, "M_NOT_FOUND")
    with pytest.raises(MatrixError) as exc:
        get_rule(ME, UserRules(), "nope", "nope")
    assert err(exc) == (400, "M_INVALID_PARAM")
    rule = get_rule(ME, UserRules(), "override", ".m.rule.master")
    rule["actions"].append("x")  # the caller owns the result
    assert get_rule(ME, UserRules(), "override", ".m.rule.master")["actions"] == []


def test_user_rules_json_round_trip() -> None:
    ur = add_rule(
        UserRules(), "override", "o", {"conditions": [{"kind": "room_member_count", "is": "<5"}], "actions": []}
    )
    ur = add_rule(ur, "content", "c", {"pattern": "p", "actions": ["notify", {"set_tweak": "sound", "value": "x"}]})
    ur = add_rule(ur, "room", ROOM, {"actions": []})
    ur = set_enabled(ur, "room", ROOM, False)
    ur = set_enabled(ur, "override", ".m.rule.master", True)
    ur = set_actions(ur, "underride", ".m.rule.call", [])
    blob = json.loads(json.dumps(ur.to_json()))
    assert UserRules.from_json(blob) == ur
    assert ur.defaults[("override", ".m.rule.master")] == DefaultOverride(enabled=True)
    assert effective_rules(ME, UserRules.from_json(blob)) == effective_rules(ME, ur)
    assert UserRules.from_json(UserRules().to_json()) == UserRules()
    garbage: object
    for garbage in (
        None,
        [],
        {"version": 2},
        {"version": 1, "rules": {"bogus": []}},
        {"version": 1, "rules": {"content": [{}]}},
        {"version": 1, "defaults": {"bogus": {}}},
        {"version": 1, "defaults": {"override": {".m.rule.master": {"enabled": "yes"}}}},
    ):
        with pytest.raises(ValueError):
            UserRules.from_json(garbage)


def test_mutating_outputs_does_not_change_state() -> None:
    ur = add_rule(
        UserRules(),
        "override",
        "o",
        {"conditions": [{"kind": "event_match", "key": "type", "pattern": "x"}], "actions": ["notify"]},
    )
    rules = effective_rules(ME, ur)
    rules["global"]["override"][1]["conditions"][0]["pattern"] = "changed"
    rules["global"]["override"][1]["actions"].append("oops")
    assert effective_rules(ME, ur)["global"]["override"][1]["conditions"][0]["pattern"] == "x"
    assert effective_rules(ME, ur)["global"]["override"][1]["actions"] == ["notify"]
