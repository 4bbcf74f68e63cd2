"""Power levels: who may do what, from ``m.room.power_levels`` content and the create event.

Defaults follow the ``m.room.power_levels`` event description: ``users_default`` 0,
``events_default`` 0, ``state_default`` 50, ``invite`` 0, ``kick``/``ban``/``redact`` 50,
``notifications.room`` 50. With no power levels event the room creator has 100 (room v10/11) and
everyone else 0. In room v12 the creators (the create event's ``sender`` and
``content.additional_creators``) always have an infinite level (``math.inf``).

Values that are not integers (they cannot pass the v10+ auth rules, but old state could in theory
hold them) are treated as absent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from paigham.domain.room_versions import RoomVersion
from paigham.errors import Codes, MatrixError

Action = Literal["invite", "kick", "ban", "redact"]

USERS_DEFAULT = 0
EVENTS_DEFAULT = 0
STATE_DEFAULT = 50
NOTIFICATION_DEFAULT = 50
CREATOR_LEVEL_WITHOUT_POWER_LEVELS = 100
ACTION_DEFAULTS: dict[str, int] = {"invite": 0, "kick": 50, "ban": 50, "redact": 50}
# The top-level integer properties (auth rules: "users_default, events_default, ... invite").
LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")
# The properties that map a name to an integer level.
MAP_KEYS = ("events", "notifications")

_MAX = 2**53 - 1
_SERVER_NAME_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.\-]{1,255})(?::[0-9]{1,5})?\Z")


def is_level(value: object) -> bool:
    """A power level value: a JSON integer (not a boolean) in the canonical JSON range."""
    return type(value) is int and -_MAX <= value <= _MAX


def _level(value: object, default: int) -> int:
    return value if is_level(value) else default  # type: ignore[return-value]


def is_user_id(value: object) -> bool:
    """Whether ``value`` has user ID grammar, accepting historical localparts (any code points but
    ``:`` and NUL, even empty) as servers must for events; at most 255 bytes."""
    if not isinstance(value, str) or not value.startswith("@"):
        return False
    local, sep, server = value[1:].partition(":")
    if not sep or "\x00" in local or not _SERVER_NAME_RE.match(server):
        return False
    return len(value.encode("utf-8", "surrogatepass")) <= 255


def creators(create_event: Mapping[str, Any] | None, version: RoomVersion) -> frozenset[str]:
    """The room's creators: ``content.creator`` (room v10), the create ``sender`` (v11+), plus the
    ``content.additional_creators`` strings in room v12."""
    if create_event is None:
        return frozenset()
    content = create_event.get("content")
    content = content if isinstance(content, Mapping) else {}
    found: set[str] = set()
    main = create_event.get("sender") if version.creator_removed_from_create else content.get("creator")
    if isinstance(main, str):
        found.add(main)
    if version.creators_have_infinite_power:
        extra = content.get("additional_creators")
        if isinstance(extra, list):
            found.update(u for u in extra if isinstance(u, str))
    return frozenset(found)


def user_level(
    user_id: str,
    pl_content: Mapping[str, Any] | None,
    create_event: Mapping[str, Any] | None,
    version: RoomVersion,
) -> int | float:
    """``user_id``'s power level: ``math.inf`` for room v12 creators, else from ``users`` /
    ``users_default``, or (no power levels event) 100 for the creator and 0 for others."""
    if version.creators_have_infinite_power and user_id in creators(create_event, version):
        return math.inf
    if pl_content is None:
        if user_id in creators(create_event, version):
            return CREATOR_LEVEL_WITHOUT_POWER_LEVELS
        return USERS_DEFAULT
    default = _level(pl_content.get("users_default"), USERS_DEFAULT)
    users = pl_content.get("users")
    if isinstance(users, Mapping):
        return _level(users.get(user_id), default)
    return default


def event_level(event_type: str, is_state: bool, pl_content: Mapping[str, Any] | None) -> int:
    """The level required to send an event of ``event_type`` (``events``, then ``state_default``
    or ``events_default``)."""
    if pl_content is None:
        return STATE_DEFAULT if is_state else EVENTS_DEFAULT
    default = (
        _level(pl_content.get("state_default"), STATE_DEFAULT)
        if is_state
        else _level(pl_content.get("events_default"), EVENTS_DEFAULT)
    )
    events = pl_content.get("events")
    if isinstance(events, Mapping):
        return _level(events.get(event_type), default)
    return default


def action_level(pl_content: Mapping[str, Any] | None, action: Action) -> int:
    """The *invite*, *kick*, *ban* or *redact level* (defaults 0, 50, 50, 50)."""
    default = ACTION_DEFAULTS[action]
    return default if pl_content is None else _level(pl_content.get(action), default)


def notification_level(pl_content: Mapping[str, Any] | None, key: str = "room") -> int:
    """The level needed to trigger the notification ``key`` (e.g. ``@room``); default 50."""
    if pl_content is None:
        return NOTIFICATION_DEFAULT
    notifications = pl_content.get("notifications")
    if isinstance(notifications, Mapping):
        return _level(notifications.get(key), NOTIFICATION_DEFAULT)
    return NOTIFICATION_DEFAULT


def power_levels_content_error(content: Mapping[str, Any]) -> str | None:
    """Why ``content`` is not a valid ``m.room.power_levels`` content for room v10+ (integers
    only; ``users`` keyed by valid user IDs), or None when it is valid."""
    for key in LEVEL_KEYS:
        if key in content and not is_level(content[key]):
            return f"power levels '{key}' must be an integer"
    for key in MAP_KEYS:
        if key in content:
            value = content[key]
            if not isinstance(value, Mapping) or not all(is_level(v) for v in value.values()):
                return f"power levels '{key}' must be an object of integers"
    if "users" in content:
        users = content["users"]
        if not isinstance(users, Mapping):
            return "power levels 'users' must be an object"
        for user, level in users.items():
            if not is_user_id(user):
                return f"power levels 'users' has an invalid user ID {user!r}"[:200]
            if not is_level(level):
                return f"power levels 'users' has a non-integer level for {user}"[:200]
    return None


def check_power_levels_content(content: Mapping[str, Any]) -> None:
    """Raise ``400 M_BAD_JSON`` when ``content`` is not valid power levels content (for the API
    edge, before an event is built)."""
    reason = power_levels_content_error(content)
    if reason is not None:
        raise MatrixError(400, Codes.BAD_JSON, reason)
