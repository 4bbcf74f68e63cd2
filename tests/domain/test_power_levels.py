from __future__ import annotations

import math
from typing import Any

import pytest

from paigham.domain.power_levels import (
    action_level,
    check_power_levels_content,
    creators,
    event_level,
    is_user_id,
    notification_level,
    power_levels_content_error,
    user_level,
)
from paigham.domain.room_versions import ROOM_V10, ROOM_V11, ROOM_V12
from paigham.errors import MatrixError

CREATE_V10 = {"type": "m.room.create", "sender": "@alice:x", "content": {"creator": "@alice:x"}}
CREATE_V11 = {"type": "m.room.create", "sender": "@alice:x", "content": {}}
CREATE_V12 = {"type": "m.room.create", "sender": "@alice:x", "content": {"additional_creators": ["@carol:y", 5]}}
PL: dict[str, Any] = {"users": {"@bob:x": 75, "@alice:x": 100}, "users_default": 10}


def test_creators_per_version() -> None:
    assert creators(CREATE_V10, ROOM_V10) == {"@alice:x"}
    assert creators({**CREATE_V10, "content": {"creator": "@other:x"}}, ROOM_V10) == {"@other:x"}
    assert creators(CREATE_V11, ROOM_V11) == {"@alice:x"}
    # additional_creators only means something from room v12.
    assert creators(CREATE_V12, ROOM_V11) == {"@alice:x"}
    assert creators(CREATE_V12, ROOM_V12) == {"@alice:x", "@carol:y"}
    assert creators(None, ROOM_V12) == frozenset()


def test_user_level_without_power_levels() -> None:
    assert user_level("@alice:x", None, CREATE_V10, ROOM_V10) == 100
    assert user_level("@bob:x", None, CREATE_V10, ROOM_V10) == 0
    assert user_level("@alice:x", None, CREATE_V11, ROOM_V11) == 100
    assert user_level("@alice:x", None, CREATE_V12, ROOM_V12) == math.inf
    assert user_level("@carol:y", None, CREATE_V12, ROOM_V12) == math.inf
    assert user_level("@bob:x", None, CREATE_V12, ROOM_V12) == 0


def test_user_level_with_power_levels() -> None:
    assert user_level("@bob:x", PL, CREATE_V11, ROOM_V11) == 75
    assert user_level("@dave:x", PL, CREATE_V11, ROOM_V11) == 10
    assert user_level("@dave:x", {}, CREATE_V11, ROOM_V11) == 0
    # In v12 creators are infinite whatever the power levels say.
    assert user_level("@alice:x", PL, CREATE_V12, ROOM_V12) == math.inf
    assert user_level("@alice:x", {"users": {}}, CREATE_V12, ROOM_V12) == math.inf
    assert user_level("@bob:x", PL, CREATE_V12, ROOM_V12) == 75
    # Non-integer values are ignored.
    assert user_level("@bob:x", {"users": {"@bob:x": "75"}, "users_default": True}, CREATE_V11, ROOM_V11) == 0
    assert user_level("@bob:x", {"users": ["@bob:x"]}, CREATE_V11, ROOM_V11) == 0


def test_event_level() -> None:
    assert event_level("m.room.name", True, None) == 50
    assert event_level("m.room.message", False, None) == 0
    content = {"events": {"m.room.name": 20, "m.room.message": 5}, "state_default": 40, "events_default": 1}
    assert event_level("m.room.name", True, content) == 20
    assert event_level("m.room.topic", True, content) == 40
    assert event_level("m.room.message", False, content) == 5
    assert event_level("m.reaction", False, content) == 1
    assert event_level("m.room.topic", True, {}) == 50
    assert event_level("m.reaction", False, {}) == 0


def test_action_and_notification_levels() -> None:
    assert [action_level(None, a) for a in ("invite", "kick", "ban", "redact")] == [0, 50, 50, 50]
    assert [action_level({}, a) for a in ("invite", "kick", "ban", "redact")] == [0, 50, 50, 50]
    content = {"invite": 5, "kick": 6, "ban": 7, "redact": 8}
    assert [action_level(content, a) for a in ("invite", "kick", "ban", "redact")] == [5, 6, 7, 8]
    assert action_level({"kick": 1.5}, "kick") == 50
    assert notification_level(None) == 50
    assert notification_level({"notifications": {"room": 20}}) == 20
    assert notification_level({"notifications": {"room": 20}}, "other") == 50
    assert notification_level({"notifications": "x"}) == 50


@pytest.mark.parametrize(
    "user_id",
    ["@a:x", "@a.b_c=d-e/f+g:example.org:8448", "@:x", "@Ünicode:x", "@a:[::1]:80", "@a:1.2.3.4"],
)
def test_user_ids_accepted(user_id: str) -> None:
    assert is_user_id(user_id)


@pytest.mark.parametrize(
    "user_id", ["a:x", "@a", "@a:", "@a:x y", "@a\x00b:x", "@a:x:port", 5, None, "@a:" + "x" * 260]
)
def test_user_ids_rejected(user_id: object) -> None:
    assert not is_user_id(user_id)


@pytest.mark.parametrize(
    "content",
    [
        {"ban": "50"},
        {"kick": 1.0},
        {"invite": True},
        {"users_default": None},
        {"events": {"m.room.name": "50"}},
        {"events": []},
        {"notifications": {"room": 1.5}},
        {"users": {"@a:x": "100"}},
        {"users": {"not-a-user": 100}},
        {"users": []},
        {"state_default": 2**53},
    ],
)
def test_invalid_power_levels_content(content: dict[str, Any]) -> None:
    assert power_levels_content_error(content) is not None
    with pytest.raises(MatrixError) as exc:
        check_power_levels_content(content)
    assert exc.value.errcode == "M_BAD_JSON"


def test_valid_power_levels_content() -> None:
    content = {
        "ban": 50,
        "kick": -5,
        "invite": 0,
        "redact": 50,
        "users_default": 0,
        "events_default": 0,
        "state_default": 50,
        "events": {"m.room.name": 100},
        "notifications": {"room": 50},
        "users": {"@a:x": 100},
        "historical": "anything else is not validated",
    }
    assert power_levels_content_error(content) is None
    assert power_levels_content_error({}) is None
    check_power_levels_content(content)
