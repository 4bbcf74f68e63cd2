"""Push rules (Client-Server API "Push Notifications"): predefined rules and user customisations.

Pure domain code. A user's customisations are one immutable `UserRules` value (stored as one
JSON blob per user, see `UserRules.to_json` / `UserRules.from_json`); `effective_rules` merges
it with the server-default rules of spec v1.19 into the ruleset clients GET and the evaluator
(`paigham.domain.push_evaluator`) runs.

Ordering: within each kind, user-defined rules come before the server-default rules, except
`.m.rule.master`, which always comes first of all.

Spec v1.17 removed the legacy body-based mention rules (`.m.rule.contains_display_name`,
`.m.rule.contains_user_name`, `.m.rule.roomnotif`); v1.19 lists none of them, nor do we.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from paigham.errors import Codes, MatrixError

KINDS: tuple[str, ...] = ("override", "content", "room", "sender", "underride")
MASTER_RULE_ID = ".m.rule.master"
MAX_RULE_ID_LENGTH = 255
MAX_STRING_LENGTH = 1024
MAX_ACTIONS = 50
MAX_CONDITIONS = 50
MAX_RULES_PER_KIND = 500
LEGACY_ACTIONS = frozenset({"dont_notify", "coalesce"})
_MAX_SAFE_INT = 2**53 - 1

_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(rule_id: str, conditions: list[dict[str, Any]], actions: list[Any], enabled: bool = True) -> dict[str, Any]:
    return {"rule_id": rule_id, "default": True, "enabled": enabled, "conditions": conditions, "actions": actions}


def default_rules(user_id: str) -> dict[str, Any]:
    """The server-default ruleset of spec v1.19 for `user_id`, in the spec's order (a fresh copy)."""
    override = [
        _rule(MASTER_RULE_ID, [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _rule(
            ".m.rule.invite_for_me",
            [_match("type", "m.room.member"), _match("content.membership", "invite"), _match("state_key", user_id)],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _rule(
            ".m.rule.is_user_mention",
            [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user_id}],
            ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.tombstone",
            [_match("type", "m.room.tombstone"), _match("state_key", "")],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _rule(".m.rule.room.server_acl", [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
        _rule(
            ".m.rule.suppress_edits",
            [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
            [],
        ),
    ]
    one_to_one = {"kind": "room_member_count", "is": "2"}
    underride = [
        _rule(".m.rule.call", [_match("type", "m.call.invite")], ["notify", {"set_tweak": "sound", "value": "ring"}]),
        _rule(
            ".m.rule.encrypted_room_one_to_one",
            [dict(one_to_one), _match("type", "m.room.encrypted")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(
            ".m.rule.room_one_to_one",
            [dict(one_to_one), _match("type", "m.room.message")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]
    return {"global": {"override": override, "content": [], "room": [], "sender": [], "underride": underride}}


# The only default rules whose result depends on who receives the event: the invitee of a membership
# event and the users a message mentions. Everyone else with the defaults gets the same result, so a
# write evaluates them once, however many they are (services/push.py; tests pin this list).
USER_DEPENDENT_DEFAULTS = frozenset({".m.rule.invite_for_me", ".m.rule.is_user_mention"})


def mentioned_users(content: Mapping[str, Any]) -> list[str]:
    """The user IDs of `content["m.mentions"]["user_ids"]` (what `.m.rule.is_user_mention` matches);
    as many as the event's size allows."""
    mentions = content.get("m.mentions")
    ids = mentions.get("user_ids") if isinstance(mentions, Mapping) else None
    if not isinstance(ids, list):
        return []
    return list(dict.fromkeys(u for u in ids if isinstance(u, str)))


DEFAULT_RULE_IDS: Mapping[str, frozenset[str]] = {
    kind: frozenset(r["rule_id"] for r in rules) for kind, rules in default_rules("@_:_")["global"].items()
}


# ---------------------------------------------------------------------------------------------
# The model of a user's customisations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRule:
    """A user-defined rule. `conditions` only for override/underride, `pattern` only for content."""

    rule_id: str
    actions: tuple[Any, ...]
    enabled: bool = True
    conditions: tuple[Mapping[str, Any], ...] | None = None
    pattern: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule_id": self.rule_id,
            "default": False,
            "enabled": self.enabled,
            "actions": copy.deepcopy(list(self.actions)),
        }
        if self.conditions is not None:
            out["conditions"] = [dict(c) for c in self.conditions]
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out


@dataclass(frozen=True, slots=True)
class DefaultOverride:
    """A user's changes to one server-default rule; `None` keeps the default."""

    enabled: bool | None = None
    actions: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class UserRules:
    """All of one user's push rule customisations. Treat as immutable: functions return new ones."""

    rules: Mapping[str, tuple[UserRule, ...]] = field(default_factory=dict)
    defaults: Mapping[tuple[str, str], DefaultOverride] = field(default_factory=dict)

    def of_kind(self, kind: str) -> tuple[UserRule, ...]:
        return self.rules.get(kind, ())

    def to_json(self) -> dict[str, Any]:
        defaults: dict[str, dict[str, Any]] = {}
        for (kind, rule_id), change in self.defaults.items():
            entry: dict[str, Any] = {}
            if change.enabled is not None:
                entry["enabled"] = change.enabled
            if change.actions is not None:
                entry["actions"] = copy.deepcopy(list(change.actions))
            defaults.setdefault(kind, {})[rule_id] = entry
        rules = {kind: [r.to_json() for r in rs] for kind, rs in self.rules.items() if rs}
        return {"version": 1, "rules": rules, "defaults": defaults}

    @classmethod
    def from_json(cls, obj: object) -> UserRules:
        """Load a blob written by `to_json`; raise ValueError if it is not one."""
        if not isinstance(obj, Mapping) or obj.get("version") != 1:
            raise ValueError("not a push rules blob")
        rules: dict[str, tuple[UserRule, ...]] = {}
        for kind, items in _mapping(obj.get("rules", {})).items():
            if kind not in KINDS or not isinstance(items, list):
                raise ValueError(f"bad push rules of kind {kind!r}")
            rules[kind] = tuple(_user_rule_from_json(item) for item in items)
        defaults: dict[tuple[str, str], DefaultOverride] = {}
        for kind, changes in _mapping(obj.get("defaults", {})).items():
            if kind not in KINDS:
                raise ValueError(f"bad push rule kind {kind!r}")
            for rule_id, change in _mapping(changes).items():
                enabled, actions = _mapping(change).get("enabled"), _mapping(change).get("actions")
                if not isinstance(enabled, bool | None) or not isinstance(actions, list | None):
                    raise ValueError(f"bad change to default push rule {rule_id!r}")
                defaults[(kind, rule_id)] = DefaultOverride(enabled, None if actions is None else tuple(actions))
        return cls(rules, defaults)


def _mapping(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError("expected an object")
    return obj


def _user_rule_from_json(obj: object) -> UserRule:
    body = _mapping(obj)
    rule_id, actions, enabled = body.get("rule_id"), body.get("actions"), body.get("enabled", True)
    conditions, pattern = body.get("conditions"), body.get("pattern")
    if not isinstance(rule_id, str) or not isinstance(actions, list) or not isinstance(enabled, bool):
        raise ValueError("bad user push rule")
    if not isinstance(conditions, list | None) or not isinstance(pattern, str | None):
        raise ValueError(f"bad user push rule {rule_id!r}")
    conds = None if conditions is None else tuple(_mapping(c) for c in conditions)
    return UserRule(rule_id, tuple(actions), enabled, conds, pattern)


# ---------------------------------------------------------------------------------------------
# The effective ruleset
# ---------------------------------------------------------------------------------------------


def _apply_override(rule: dict[str, Any], change: DefaultOverride | None) -> dict[str, Any]:
    if change is not None:
        if change.enabled is not None:
            rule["enabled"] = change.enabled
        if change.actions is not None:
            rule["actions"] = copy.deepcopy(list(change.actions))
    return rule


def _effective_kind(kind: str, defaults: list[dict[str, Any]], user_rules: UserRules) -> list[dict[str, Any]]:
    merged = [_apply_override(r, user_rules.defaults.get((kind, r["rule_id"]))) for r in defaults]
    mine = [r.to_json() for r in user_rules.of_kind(kind)]
    if merged and merged[0]["rule_id"] == MASTER_RULE_ID:
        return [merged[0], *mine, *merged[1:]]
    return [*mine, *merged]


def effective_rules(user_id: str, user_rules: UserRules) -> dict[str, Any]:
    """The full ruleset `{"global": {kind: [PushRule, ...]}}` served by GET /pushrules/."""
    server = default_rules(user_id)["global"]
    return {"global": {kind: _effective_kind(kind, server[kind], user_rules) for kind in KINDS}}


def get_rule(user_id: str, user_rules: UserRules, kind: str, rule_id: str) -> dict[str, Any]:
    """One rule of the effective ruleset; 404 M_NOT_FOUND if there is none."""
    _check_kind(kind)
    for rule in _effective_kind(kind, default_rules(user_id)["global"][kind], user_rules):
        if rule["rule_id"] == rule_id:
            return rule
    raise _not_found()


# ---------------------------------------------------------------------------------------------
# Changes (PUT / DELETE /pushrules/global/{kind}/{ruleId}[/enabled|/actions])
# ---------------------------------------------------------------------------------------------


def _not_found() -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, "The push rule was not found.")


def _invalid(message: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, message)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise _invalid(f"Unknown push rule kind {kind!r}; expected one of {', '.join(KINDS)}")


def validate_actions(actions: object) -> tuple[Any, ...]:
    """Validate a list of actions; the historical `dont_notify`/`coalesce` are stripped."""
    if not isinstance(actions, list):
        raise MatrixError(400, Codes.BAD_JSON, "'actions' must be a list")
    if len(actions) > MAX_ACTIONS:
        raise _invalid(f"At most {MAX_ACTIONS} actions are allowed")
    out: list[Any] = []
    for action in actions:
        if isinstance(action, str):
            if action in LEGACY_ACTIONS:
                continue
            if action != "notify" and "." not in action:  # namespaced (unstable) actions pass
                raise _invalid(f"Unknown push rule action {action!r}")
        elif not isinstance(action, Mapping) or not isinstance(action.get("set_tweak"), str):
            raise _invalid("Push rule actions must be strings or objects with a string 'set_tweak'")
        out.append(copy.deepcopy(action))
    return tuple(out)


def _string(body: Mapping[str, Any], key: str, what: str) -> str:
    value = body.get(key)
    if value is None:
        raise MatrixError(400, Codes.MISSING_PARAM, f"{what} requires '{key}'")
    if not isinstance(value, str):
        raise MatrixError(400, Codes.BAD_JSON, f"'{key}' of {what} must be a string")
    if len(value) > MAX_STRING_LENGTH:
        raise _invalid(f"'{key}' of {what} is too long")
    return value


def _validate_condition(condition: object) -> dict[str, Any]:
    if not isinstance(condition, Mapping):
        raise MatrixError(400, Codes.BAD_JSON, "Push rule conditions must be objects")
    kind = _string(condition, "kind", "a push condition")
    what = f"a {kind!r} condition"
    if kind == "event_match":
        _string(condition, "key", what)
        _string(condition, "pattern", what)
    elif kind in ("event_property_is", "event_property_contains"):
        _string(condition, "key", what)
        if "value" not in condition:
            raise MatrixError(400, Codes.MISSING_PARAM, f"{what} requires 'value'")
        value = condition["value"]
        if isinstance(value, str):
            _string(condition, "value", what)
        elif (
            isinstance(value, float) or not isinstance(value, int | bool | None) or abs(int(value or 0)) > _MAX_SAFE_INT
        ):
            raise _invalid(f"'value' of {what} must be a string, an integer in the canonical range, a boolean or null")
    elif kind == "room_member_count":
        _string(condition, "is", what)
    elif kind == "sender_notification_permission":
        _string(condition, "key", what)
    return copy.deepcopy(dict(condition))


def _validate_rule_id(kind: str, rule_id: str) -> None:
    if not rule_id or len(rule_id) > MAX_RULE_ID_LENGTH:
        raise _invalid("Invalid push rule ID")
    if rule_id.startswith("."):
        raise _invalid("Push rule IDs starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise _invalid("Push rule IDs may not contain slashes or backslashes")
    if kind == "room" and not rule_id.startswith("!"):
        raise _invalid("The rule ID of a room rule must be a room ID")
    if kind == "sender" and not rule_id.startswith("@"):
        raise _invalid("The rule ID of a sender rule must be a user ID")


def _with_kind(user_rules: UserRules, kind: str, rules: Sequence[UserRule]) -> UserRules:
    return replace(user_rules, rules={**user_rules.rules, kind: tuple(rules)})


def add_rule(
    user_rules: UserRules,
    kind: str,
    rule_id: str,
    body: object,
    before: str | None = None,
    after: str | None = None,
) -> UserRules:
    """Create or replace a user-defined rule (PUT /pushrules/global/{kind}/{ruleId}).

    A new rule is enabled and, without `before`/`after`, the most important of its kind; an
    updated rule keeps its `enabled` state and, without `before`/`after`, its position. When both
    are given, `before` wins.
    """
    _check_kind(kind)
    _validate_rule_id(kind, rule_id)
    if not isinstance(body, Mapping):
        raise MatrixError(400, Codes.BAD_JSON, "The push rule must be a JSON object")
    if "actions" not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, "A push rule requires 'actions'")
    actions = validate_actions(body["actions"])
    conditions: tuple[Mapping[str, Any], ...] | None = None
    pattern: str | None = None
    if kind in ("override", "underride"):
        raw = body.get("conditions")
        if raw is None:
            raise MatrixError(400, Codes.MISSING_PARAM, f"An {kind} rule requires 'conditions'")
        if not isinstance(raw, list):
            raise MatrixError(400, Codes.BAD_JSON, "'conditions' must be a list")
        if len(raw) > MAX_CONDITIONS:
            raise _invalid(f"At most {MAX_CONDITIONS} conditions are allowed")
        conditions = tuple(_validate_condition(c) for c in raw)
    elif kind == "content":
        pattern = _string(body, "pattern", "a content rule")

    existing = user_rules.of_kind(kind)
    old_index = next((i for i, r in enumerate(existing) if r.rule_id == rule_id), None)
    others = [r for r in existing if r.rule_id != rule_id]
    if old_index is None and len(others) >= MAX_RULES_PER_KIND:
        raise _invalid(f"Too many {kind} push rules")
    enabled = existing[old_index].enabled if old_index is not None else True
    rule = UserRule(rule_id, actions, enabled, conditions, pattern)
    anchor = before if before is not None else after
    if anchor is not None:
        position = next((i for i, r in enumerate(others) if r.rule_id == anchor), None)
        if position is None:
            raise MatrixError(400, Codes.UNKNOWN, f"before/after rule not found: {anchor}")
        others.insert(position if before is not None else position + 1, rule)
    else:
        others.insert(old_index if old_index is not None else 0, rule)
    return _with_kind(user_rules, kind, others)


def delete_rule(user_rules: UserRules, kind: str, rule_id: str) -> UserRules:
    """Delete a user-defined rule; server-default rules cannot be deleted (400)."""
    _check_kind(kind)
    existing = user_rules.of_kind(kind)
    if not any(r.rule_id == rule_id for r in existing):
        if rule_id in DEFAULT_RULE_IDS[kind]:
            raise _invalid("Server-default push rules cannot be deleted")
        raise _not_found()
    return _with_kind(user_rules, kind, [r for r in existing if r.rule_id != rule_id])


def _change(user_rules: UserRules, kind: str, rule_id: str, **changes: Any) -> UserRules:
    _check_kind(kind)
    existing = user_rules.of_kind(kind)
    if any(r.rule_id == rule_id for r in existing):
        return _with_kind(user_rules, kind, [replace(r, **changes) if r.rule_id == rule_id else r for r in existing])
    if rule_id not in DEFAULT_RULE_IDS[kind]:
        raise _not_found()
    key = (kind, rule_id)
    current = user_rules.defaults.get(key, DefaultOverride())
    return replace(user_rules, defaults={**user_rules.defaults, key: replace(current, **changes)})


def set_enabled(user_rules: UserRules, kind: str, rule_id: str, enabled: object) -> UserRules:
    """PUT .../{ruleId}/enabled, for user-defined and server-default rules alike."""
    if not isinstance(enabled, bool):
        raise MatrixError(400, Codes.BAD_JSON, "'enabled' must be a boolean")
    return _change(user_rules, kind, rule_id, enabled=enabled)


def set_actions(user_rules: UserRules, kind: str, rule_id: str, actions: object) -> UserRules:
    """PUT .../{ruleId}/actions, for user-defined and server-default rules alike."""
    return _change(user_rules, kind, rule_id, actions=validate_actions(actions))
