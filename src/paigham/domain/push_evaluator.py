"""Push rule evaluation (Client-Server API "Push Notifications": conditions and actions).

Evaluation runs for every local member of a room on every event, so rulesets are compiled
once (`compile_ruleset`: disabled and never-matching rules dropped, globs turned into cached
regexes, dotted paths pre-split) and the compiled form can be cached per user by the caller
and passed to `evaluate` instead of the JSON ruleset.

Condition kinds: event_match, event_property_is, event_property_contains,
contains_display_name (deprecated but still defined), room_member_count and
sender_notification_permission. Any other kind (e.g. the unstable related_event_match), or a
condition missing its parameters, never matches, which disables its rule.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import msgspec

from paigham.domain.matching import compile_glob, lookup_path, split_dotted_path
from paigham.domain.push_rules import KINDS
from paigham.domain.stored_event import StoredEvent

DEFAULT_NOTIFICATION_LEVEL = 50


def _default_notification_levels() -> Mapping[str, int]:
    return {"room": DEFAULT_NOTIFICATION_LEVEL}


@dataclass(frozen=True, slots=True)
class PushContext:
    """What the evaluator needs to know about the recipient and the room besides the event.

    `notification_power_levels` is the `notifications` object of the room's power levels
    (a missing key requires power level 50, the spec's default for `room`).
    """

    user_id: str
    user_display_name: str | None = None
    room_member_count: int = 0
    sender_power_level: int = 0
    notification_power_levels: Mapping[str, int] = field(default_factory=_default_notification_levels)


Condition = Callable[[Mapping[str, Any], PushContext], bool]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    kind: str
    rule_id: str
    actions: tuple[Any, ...]
    conditions: tuple[Condition, ...]


CompiledRuleset = tuple[CompiledRule, ...]


# ---------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------


def _same_value(actual: Any, expected: Any) -> bool:
    """Exact match of non-compound canonical JSON values (no casts: 1 is neither True nor 1.0)."""
    if expected is None or isinstance(expected, bool):
        return actual is expected
    if isinstance(expected, int):
        return isinstance(actual, int) and not isinstance(actual, bool) and actual == expected
    return isinstance(actual, str) and actual == expected


def _event_match(key: str, pattern: str) -> Condition:
    keys = split_dotted_path(key)
    matches = compile_glob(pattern, ignore_case=True, single_char_wildcard=True, word_boundary=key == "content.body")

    def condition(event: Mapping[str, Any], ctx: PushContext) -> bool:
        value = lookup_path(event, keys)
        return isinstance(value, str) and matches(value)

    return condition


def _property_is(key: str, expected: Any) -> Condition:
    keys = split_dotted_path(key)
    return lambda event, ctx: _same_value(lookup_path(event, keys), expected)


def _property_contains(key: str, expected: Any) -> Condition:
    keys = split_dotted_path(key)

    def condition(event: Mapping[str, Any], ctx: PushContext) -> bool:
        value = lookup_path(event, keys)
        return isinstance(value, list) and any(_same_value(item, expected) for item in value)

    return condition


@lru_cache(maxsize=4096)
def _display_name_regex(name: str) -> re.Pattern[str]:
    word = "(?-i:[A-Za-z0-9_])"
    return re.compile(f"(?<!{word}){re.escape(name)}(?!{word})", re.IGNORECASE)


def names_in_body(event: Mapping[str, Any], name: str | None) -> bool:
    """Whether `contains_display_name` matches for a member called `name` (None: no display name)."""
    body = lookup_path(event, ("content", "body"))
    return bool(name) and isinstance(body, str) and _display_name_regex(name or "").search(body) is not None


# Conditions compare the event with the rules and with the context (display name, member count, power
# levels), never with the recipient's ID except through the rules' text. So recipients whose rules are
# the same up to their own ID and localpart get the same result for an event that contains neither
# their ID nor their localpart, nor their display name where `contains_display_name` would look for it:
# one evaluation per such group (`recipient_group`) instead of one per recipient.
def rules_template(user_id: str, effective_rules: Any) -> bytes:
    """The effective rules' JSON with this user's ID and localpart as placeholders."""
    template = msgspec.json.encode(effective_rules).replace(user_id.encode(), b"\x00U\x00")
    return template.replace(_localpart(user_id).encode(), b"\x00L\x00")


def rules_event(ev: StoredEvent) -> dict[str, Any]:
    """The event as the push rules see it (the fields their conditions may name)."""
    out = {"type": ev.type, "sender": ev.sender, "content": ev.content, "room_id": ev.room_id}
    if ev.state_key is not None:
        out["state_key"] = ev.state_key
    return out


def event_text(event: Mapping[str, Any]) -> str:
    """The event as the rules see it, as lower-case JSON (what `recipient_group` searches)."""
    return msgspec.json.encode(event).decode().lower()


def recipient_group(
    user_id: str, template: bytes, name: str | None, event: Mapping[str, Any], text: str
) -> tuple[bytes, str | None] | None:
    """The group whose members the event gets the same result for (`rules_template`), or None when
    the event names this recipient (evaluated on their own). A display name the body does not contain
    is no display name for `contains_display_name`, so members called differently share a group."""
    if user_id.lower() in text or _localpart(user_id).lower() in text:
        return None
    return template, name if names_in_body(event, name) else None


def _localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def _contains_display_name(event: Mapping[str, Any], ctx: PushContext) -> bool:
    return names_in_body(event, ctx.user_display_name)


_MEMBER_COUNT_RE = re.compile(r"(==|<=|>=|<|>)?([0-9]{1,9})")
_OPERATORS: Mapping[str, Callable[[int, int], bool]] = {
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


def _room_member_count(spec: str) -> Condition | None:
    parsed = _MEMBER_COUNT_RE.fullmatch(spec)
    if parsed is None:
        return None
    compare = _OPERATORS[parsed.group(1) or "=="]
    number = int(parsed.group(2))
    return lambda event, ctx: compare(ctx.room_member_count, number)


def _sender_permission(key: str) -> Condition:
    def condition(event: Mapping[str, Any], ctx: PushContext) -> bool:
        required = ctx.notification_power_levels.get(key, DEFAULT_NOTIFICATION_LEVEL)
        return isinstance(required, int) and ctx.sender_power_level >= required

    return condition


def compile_condition(condition: Mapping[str, Any]) -> Condition | None:
    """A predicate for one push condition, or None if it can never match (unknown or malformed)."""
    kind, key = condition.get("kind"), condition.get("key")
    if kind == "event_match":
        pattern = condition.get("pattern")
        return _event_match(key, pattern) if isinstance(key, str) and isinstance(pattern, str) else None
    if kind in ("event_property_is", "event_property_contains"):
        if not isinstance(key, str) or "value" not in condition:
            return None
        value = condition["value"]
        if value is not None and not isinstance(value, str | int):
            return None
        return _property_is(key, value) if kind == "event_property_is" else _property_contains(key, value)
    if kind == "contains_display_name":
        return _contains_display_name
    if kind == "room_member_count":
        spec = condition.get("is")
        return _room_member_count(spec) if isinstance(spec, str) else None
    if kind == "sender_notification_permission":
        return _sender_permission(key) if isinstance(key, str) else None
    return None


def _field_equals(name: str, expected: str) -> Condition:
    return lambda event, ctx: event.get(name) == expected


# ---------------------------------------------------------------------------------------------
# Rulesets
# ---------------------------------------------------------------------------------------------


def _compile_rule(kind: str, rule: Mapping[str, Any]) -> CompiledRule | None:
    rule_id, actions = rule.get("rule_id"), rule.get("actions")
    if rule.get("enabled", True) is not True or not isinstance(rule_id, str) or not isinstance(actions, list):
        return None
    conditions: list[Condition | None]
    if kind in ("override", "underride"):
        raw = rule.get("conditions", [])
        if not isinstance(raw, list):
            return None
        conditions = [compile_condition(c) if isinstance(c, Mapping) else None for c in raw]
    elif kind == "content":
        pattern = rule.get("pattern")
        conditions = [_event_match("content.body", pattern) if isinstance(pattern, str) else None]
    elif kind == "room":
        conditions = [_field_equals("room_id", rule_id)]
    elif kind == "sender":
        conditions = [_field_equals("sender", rule_id)]
    else:
        return None
    compiled = tuple(c for c in conditions if c is not None)
    if len(compiled) != len(conditions):
        return None  # an unrecognised condition never matches: the rule is effectively disabled
    return CompiledRule(kind, rule_id, tuple(actions), compiled)


def compile_ruleset(rules: Mapping[str, Any]) -> CompiledRuleset:
    """Compile `{"global": {kind: [...]}}` (or the inner object) into priority order."""
    scope = rules.get("global", rules)
    out: list[CompiledRule] = []
    if isinstance(scope, Mapping):
        for kind in KINDS:
            for rule in scope.get(kind) or ():
                compiled = _compile_rule(kind, rule) if isinstance(rule, Mapping) else None
                if compiled is not None:
                    out.append(compiled)
    return tuple(out)


def evaluate(
    event: Mapping[str, Any], rules: Mapping[str, Any] | Sequence[CompiledRule], ctx: PushContext
) -> list[Any] | None:
    """The actions of the first enabled rule matching `event` for `ctx.user_id`, or None.

    Events the user sent themselves never notify (None).
    """
    if event.get("sender") == ctx.user_id:
        return None
    compiled = compile_ruleset(rules) if isinstance(rules, Mapping) else rules
    for rule in compiled:
        if all(condition(event, ctx) for condition in rule.conditions):
            return list(rule.actions)
    return None


# ---------------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------------


def actions_notify(actions: Sequence[Any] | None) -> tuple[bool, bool]:
    """(notify, highlight) for a list of actions.

    `highlight` needs a `highlight` tweak whose value is true or absent (the last tweak wins)
    and is only reported for notifying actions. Historical `dont_notify`/`coalesce` are ignored.
    """
    if not actions:
        return False, False
    notify = False
    highlight = False
    for action in actions:
        if action == "notify":
            notify = True
        elif isinstance(action, Mapping) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
    return notify, notify and highlight


def action_tweaks(actions: Sequence[Any] | None) -> dict[str, Any]:
    """The `tweaks` object for the push gateway (a value-less `highlight` is true)."""
    tweaks: dict[str, Any] = {}
    for action in actions or ():
        if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            name = action["set_tweak"]
            if "value" in action:
                tweaks[name] = action["value"]
            elif name == "highlight":
                tweaks[name] = True
    return tweaks
