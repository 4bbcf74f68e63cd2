"""The redaction algorithm ("pruning"), per room version.

:func:`prune_event` is used both to compute reference hashes and signatures (see
``paigham.domain.events``) and to build the redacted form of an event for clients.

The result never carries ``unsigned``: the redaction algorithm strips it, which is what hashing and
signing need. When serving a redacted event to clients, the caller builds a fresh ``unsigned`` (age,
``redacted_because``, transaction ID, ...) and adds it to the pruned event itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paigham.domain.room_versions import RedactionRules, RoomVersion

# Top-level keys kept by the redaction algorithm (fragment "v9-redactions", used by room v10).
_TOP_LEVEL_V9 = frozenset(
    {
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
)
# Room v11+ (fragment "v11-redactions"): `origin`, `membership` and `prev_state` are no longer kept.
_TOP_LEVEL_V11 = _TOP_LEVEL_V9 - {"origin", "membership", "prev_state"}

_ALL = None  # marker: the whole content is kept

# Content keys kept per event type. A type that is absent keeps no content at all.
_CONTENT_V9: dict[str, frozenset[str] | None] = {
    "m.room.member": frozenset({"membership", "join_authorised_via_users_server"}),
    "m.room.create": frozenset({"creator"}),
    "m.room.join_rules": frozenset({"join_rule", "allow"}),
    "m.room.power_levels": frozenset(
        {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
    ),
    "m.room.history_visibility": frozenset({"history_visibility"}),
}
_CONTENT_V11: dict[str, frozenset[str] | None] = {
    **_CONTENT_V9,
    "m.room.create": _ALL,
    "m.room.power_levels": frozenset(
        {
            "ban",
            "events",
            "events_default",
            "invite",
            "kick",
            "redact",
            "state_default",
            "users",
            "users_default",
        }
    ),
    "m.room.redaction": frozenset({"redacts"}),
}

_RULES: dict[RedactionRules, tuple[frozenset[str], dict[str, frozenset[str] | None]]] = {
    RedactionRules.V9: (_TOP_LEVEL_V9, _CONTENT_V9),
    RedactionRules.V11: (_TOP_LEVEL_V11, _CONTENT_V11),
}


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts and lists are copied, scalars shared)."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def _prune_content(event_type: Any, content: Any, rules: RedactionRules) -> dict[str, Any]:
    if not isinstance(content, Mapping):
        return {}
    table = _RULES[rules][1]
    if not isinstance(event_type, str) or event_type not in table:
        return {}
    allowed = table[event_type]
    if allowed is _ALL:
        return {k: _copy(v) for k, v in content.items()}
    out = {k: _copy(content[k]) for k in allowed if k in content}
    if rules is RedactionRules.V11 and event_type == "m.room.member":
        # v11: keep `third_party_invite`, but only its `signed` key. A non-object value is dropped;
        # an object without `signed` is kept as an empty object.
        invite = content.get("third_party_invite")
        if isinstance(invite, Mapping):
            out["third_party_invite"] = {"signed": _copy(invite["signed"])} if "signed" in invite else {}
    return out


def prune_event(event: Mapping[str, Any], version: RoomVersion) -> dict[str, Any]:
    """The redacted form of ``event`` under ``version``'s redaction rules.

    Returns a new dict sharing no mutable structure with ``event``; ``event`` is never modified.
    ``unsigned`` is always removed (see the module docstring). ``content`` is always present in the
    result (empty when nothing survives).
    """
    top_level, _ = _RULES[version.redaction]
    out: dict[str, Any] = {k: _copy(v) for k, v in event.items() if k in top_level and k != "content"}
    out["content"] = _prune_content(event.get("type"), event.get("content"), version.redaction)
    return out
