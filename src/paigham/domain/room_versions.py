"""The room versions Paigham supports, as a table of behaviour flags.

Only room versions 10, 11 and 12 are supported; every other identifier is unknown to us (rooms of
older versions can neither be created nor joined). Code branches on the flags below, never on the
identifier, so a future version is one more table row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class RedactionRules(Enum):
    """Which redaction algorithm a room version uses."""

    V9 = "v9"  # room versions 9 and 10 (fragment "v9-redactions")
    V11 = "v11"  # room versions 11 and later (fragment "v11-redactions")


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    # Redaction algorithm (also used for hashing, signing and event IDs).
    redaction: RedactionRules
    # v11+: m.room.create has no `content.creator`; the create event's `sender` is the creator.
    creator_removed_from_create: bool
    # v11+: m.room.redaction carries `redacts` in `content` instead of at the top level.
    redacts_in_content: bool
    # v12: the room ID is "!" + the create event's reference hash; the create event has no room_id.
    room_id_is_create_hash: bool
    # v12: the create event's sender and `content.additional_creators` have infinite power and may
    # not appear in the power levels' `users` map.
    creators_have_infinite_power: bool
    # False for v12: the create event is implied by the room ID and MUST NOT be in auth_events.
    create_event_in_auth_events: bool
    # v10+: the `knock_restricted` join rule exists.
    knock_restricted: bool
    # v10+: power level values must be integers (no string forms).
    integer_power_levels: bool
    # v8+: `restricted` joins via `join_authorised_via_users_server`.
    restricted_join_rule: bool
    # v7+: knocking.
    knocking: bool
    stable: bool = True


ROOM_V10 = RoomVersion(
    identifier="10",
    redaction=RedactionRules.V9,
    creator_removed_from_create=False,
    redacts_in_content=False,
    room_id_is_create_hash=False,
    creators_have_infinite_power=False,
    create_event_in_auth_events=True,
    knock_restricted=True,
    integer_power_levels=True,
    restricted_join_rule=True,
    knocking=True,
)

ROOM_V11 = RoomVersion(
    identifier="11",
    redaction=RedactionRules.V11,
    creator_removed_from_create=True,
    redacts_in_content=True,
    room_id_is_create_hash=False,
    creators_have_infinite_power=False,
    create_event_in_auth_events=True,
    knock_restricted=True,
    integer_power_levels=True,
    restricted_join_rule=True,
    knocking=True,
)

ROOM_V12 = RoomVersion(
    identifier="12",
    redaction=RedactionRules.V11,
    creator_removed_from_create=True,
    redacts_in_content=True,
    room_id_is_create_hash=True,
    creators_have_infinite_power=True,
    create_event_in_auth_events=False,
    knock_restricted=True,
    integer_power_levels=True,
    restricted_join_rule=True,
    knocking=True,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {v.identifier: v for v in (ROOM_V10, ROOM_V11, ROOM_V12)}

DEFAULT_ROOM_VERSION = "12"


def get_room_version(identifier: object) -> RoomVersion | None:
    """The supported room version called ``identifier``, or None when it is unknown or unsupported."""
    return KNOWN_ROOM_VERSIONS.get(identifier) if isinstance(identifier, str) else None
