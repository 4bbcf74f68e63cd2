"""MatrixRTC's pure rules: LiveKit names as lk-jwt-service and matrix-js-sdk derive them, who may
write which call-membership state key, and which events join a call."""

from __future__ import annotations

import base64
import hashlib

from paigham.domain import rtc


def test_livekit_names_match_lk_jwt_service_test_vectors() -> None:
    # helper_test.go in element-hq/lk-jwt-service: TestLiveKitRoomAliasFor_TestVector, TestLiveKitIdentityFor_TestVector
    assert rtc.livekit_room("!roomid:example.com", "slot1234") == "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc"
    assert rtc.livekit_identity("@alice:example.com", "DEVICE123", "memberABC") == (
        "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU"
    )


def test_livekit_room_hashes_the_json_pair_unpadded() -> None:
    digest = hashlib.sha256(b'["!r:test.local","m.call#ROOM"]').digest()
    want = base64.b64encode(digest).decode().rstrip("=")
    assert rtc.livekit_room("!r:test.local", rtc.LEGACY_SLOT) == want
    assert "=" not in want
    assert rtc.livekit_room("!a:x", "s") != rtc.livekit_room("!a:x", "t") != rtc.livekit_room("!b:x", "s")
    assert rtc.legacy_identity("@a:x", "DEV") == "@a:x:DEV"


def test_go_json_escapes_what_go_escapes() -> None:
    assert rtc.go_json_strings(["a<b>&", "é", "\u2028"]) == '["a\\u003cb\\u003e\\u0026","é","\\u2028"]'.encode()
    assert rtc.js_json_strings(["a<b>&", "é"]) == '["a<b>&","é"]'.encode()
    assert rtc.go_json_strings(['q"\\']) == b'["q\\"\\\\"]'


def test_call_member_state_keys_belong_to_their_sender() -> None:
    me = "@alice:test.local"
    assert rtc.owns_call_member_key(f"_{me}_DEVICE_m.call", me)  # ordinary room versions (js-sdk)
    assert rtc.owns_call_member_key(f"{me}_DEVICE_m.call", me)  # MSC3757/MSC3779 room versions
    assert rtc.owns_call_member_key(me, me)  # the first MSC3401 form: one event per user
    assert not rtc.owns_call_member_key("_@bob:test.local_DEVICE_m.call", me)
    assert not rtc.owns_call_member_key("@alice:test.local.evil_DEVICE", me)  # a longer user ID
    assert not rtc.owns_call_member_key("@alice:test.localx", me)
    assert not rtc.owns_call_member_key("", me)
    assert not rtc.owns_call_member_key("__" + me, me)


def test_joining_and_leaving_calls() -> None:
    joined = {"application": "m.call", "call_id": "", "device_id": "D", "focus_active": {"type": "livekit"}}
    assert rtc.is_call_event(rtc.CALL_MEMBER, joined)
    assert not rtc.is_call_event(rtc.CALL_MEMBER, {})  # leaving
    assert not rtc.is_call_event(rtc.CALL_MEMBER, {"memberships": []})  # leaving, first MSC3401 form
    assert rtc.is_call_event(rtc.CALL_MEMBER, {"memberships": [{"call_id": ""}]})
    assert rtc.is_call_event(rtc.CALL_INVITE, {"call_id": "c", "version": "1"})
    assert rtc.is_call_event(rtc.RTC_NOTIFICATION, {"notification_type": "ring"})
    assert not rtc.is_call_event("m.room.message", {"body": "hi"})
    assert rtc.joins_call(rtc.CALL_MEMBER, joined, None)
    assert rtc.joins_call(rtc.CALL_MEMBER, joined, {})
    assert not rtc.joins_call(rtc.CALL_MEMBER, joined, joined)  # a refresh
    assert not rtc.joins_call(rtc.CALL_MEMBER, {}, joined)  # leaving
    assert not rtc.joins_call(rtc.CALL_INVITE, joined, None)
