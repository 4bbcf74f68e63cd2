"""MatrixRTC (MSC4143, MSC4195, MSC3401 call memberships) as pure rules: the names the LiveKit SFU
sees, which call-membership state keys a user may write, and which events start or join a call.

The LiveKit room name and participant identity are derived exactly as element-hq/lk-jwt-service
derives them, so a call can mix our authorization service with another one (and Element Call, which
reads them back from the JWT, sees the same values):

* room:     unpadded base64 of sha256(JSON ["<matrix room id>", "<slot id>"]); the legacy /sfu/get
            uses the slot "m.call#ROOM".
* identity: unpadded base64 of sha256(JSON ["<user id>", "<device id>", "<member id>"]) for /get_token;
            "<user id>:<device id>" for the legacy /sfu/get.

The room's JSON is Go's `json.Marshal` of a string slice (lk-jwt-service): no spaces, non-ASCII as
UTF-8, and <, >, &, U+2028 and U+2029 escaped. The identity's JSON is JavaScript's `JSON.stringify`,
because matrix-js-sdk computes the identity itself (`computeRtcIdentityRaw`) to match encryption keys
to LiveKit participants, and must find the one in our JWT; the two forms differ only for IDs holding
one of those five characters, which Matrix user IDs cannot.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

CALL_MEMBER = "org.matrix.msc3401.call.member"  # matrix-js-sdk EventType.GroupCallMemberPrefix
CALLS_REFUSED = "Your organisation's policy does not allow calls"  # the 403 of every call refusal
RTC_MEMBER = "org.matrix.msc4143.rtc.member"  # the sticky-event membership (MSC4354 mode)
CALL_INVITE = "m.call.invite"  # 1:1 VoIP (spec "Voice over IP")
CALL_NOTIFY = "org.matrix.msc4075.call.notify"
RTC_NOTIFICATION = "org.matrix.msc4075.rtc.notification"  # "ring" for a MatrixRTC call
# Events that start, join or ring a call when their content is not empty (leaving is always allowed).
CALL_EVENT_TYPES = frozenset({CALL_MEMBER, RTC_MEMBER, CALL_INVITE, CALL_NOTIFY, RTC_NOTIFICATION})

LEGACY_SLOT = "m.call#ROOM"
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json_strings(items: list[str]) -> bytes:
    """Go's `json.Marshal([]string{...})`, byte for byte."""
    text = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode("utf-8", "surrogatepass")


def js_json_strings(items: list[str]) -> bytes:
    """JavaScript's `JSON.stringify([...])` of strings."""
    return json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii").rstrip("=")


def livekit_room(room_id: str, slot_id: str) -> str:
    """The LiveKit room for a Matrix room's MatrixRTC slot."""
    return _b64_sha256(go_json_strings([room_id, slot_id]))


def livekit_identity(user_id: str, device_id: str, member_id: str) -> str:
    """The LiveKit identity of one membership (/get_token)."""
    return _b64_sha256(js_json_strings([user_id, device_id, member_id]))


def legacy_identity(user_id: str, device_id: str) -> str:
    """The LiveKit identity the legacy /sfu/get gives."""
    return f"{user_id}:{device_id}"


def owns_call_member_key(state_key: str, sender: str) -> bool:
    """Whether `sender` may write the call-membership state event with this state key.

    matrix-js-sdk (MembershipManager.makeMembershipStateKey) uses `_<user id>_<device id>_<application>`
    in ordinary room versions (the leading `_` keeps the event clear of the auth rule that reserves
    state keys beginning with `@` for their user) and `<user id>_<device id>_…` in the MSC3757/MSC3779
    room versions; the first MSC3401 clients used the bare user id. Every form begins with the sender's
    own user id, which we require (MSC3757's ownership rule), so nobody can write or clear another
    user's membership of a call.
    """
    key = state_key[1:] if state_key.startswith("_") else state_key
    return key == sender or key.startswith(sender + "_")


def _active(content: Any) -> bool:
    """A membership content that is in a call: not empty, and (the first MSC3401 form, one event per
    user) not an empty `memberships` list."""
    if not isinstance(content, Mapping) or not content:
        return False
    memberships = content.get("memberships")
    return not (isinstance(memberships, list) and not memberships)


def is_call_event(event_type: str, content: Mapping[str, Any]) -> bool:
    """An event that starts, joins or rings a call (a membership in a call; an invite; a ring).
    Leaving (an empty membership) is not one: it is always allowed."""
    return event_type in CALL_EVENT_TYPES and _active(content)


def joins_call(event_type: str, content: Mapping[str, Any], prev_content: Any) -> bool:
    """A call-membership state event that takes its sender into a call they were not in (a refresh of
    a membership they already had is not a new join)."""
    return event_type == CALL_MEMBER and _active(content) and not _active(prev_content)
