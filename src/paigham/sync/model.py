"""The values of one /sync: the request as the sections see it, and the response body they build.

The body is a tree of msgspec Structs that the HTTP layer encodes as it is: field order is the JSON
key order, and a field left UNSET is left out. Events inside stay client-format dicts.

The Structs are not tracked by the garbage collector (gc=False): a response is a tree, nothing in
it refers back to a node, so no cycle can pass through one; a big initial sync then adds no
tracked objects of its own (the dicts it replaced were tracked).
"""

from __future__ import annotations

from dataclasses import dataclass

from msgspec import UNSET, Raw, Struct, UnsetType, field

from paigham.requester import Requester
from paigham.services.filtering import SyncFilterView
from paigham.storage.sync_probe import SyncProbe
from paigham.types import JsonDict


@dataclass
class SyncRequest:
    requester: Requester
    since: int | None
    upto: int
    flt: SyncFilterView
    full_state: bool
    # Where the streams stand and which have news past `since` (read once, at the start).
    probe: SyncProbe


class Events(Struct, gc=False):
    events: list[JsonDict]


def no_events() -> Events:
    return Events([])


class Timeline(Struct, gc=False):
    events: list[JsonDict]
    limited: bool
    prev_batch: str


class RoomSummary(Struct, kw_only=True, gc=False):
    joined_member_count: int = field(name="m.joined_member_count")
    invited_member_count: int = field(name="m.invited_member_count")
    heroes: list[str] | UnsetType = field(name="m.heroes", default=UNSET)  # only for a room without a name


class UnreadNotifications(Struct, gc=False):
    notification_count: int
    highlight_count: int


class _Room(Struct, kw_only=True, gc=False):
    """What joined and left rooms share."""

    timeline: Timeline
    state: Events
    # Sent for a room new to this response and when a membership changed, not otherwise.
    summary: RoomSummary | UnsetType = UNSET


class JoinedRoom(_Room, kw_only=True, gc=False):
    ephemeral: Events
    account_data: Events
    unread_notifications: UnreadNotifications


class LeftRoom(_Room, kw_only=True, gc=False):
    account_data: Events = field(default_factory=no_events)  # room account data is sent while joined only


class InvitedRoom(Struct, gc=False):
    invite_state: Events


class Rooms(Struct, kw_only=True, gc=False):
    # In a response of many rooms each joined room comes encoded already (sections.ENCODE_ROOMS_OVER).
    join: dict[str, JoinedRoom | Raw]
    invite: dict[str, InvitedRoom]
    leave: dict[str, LeftRoom]
    knock: dict[str, JsonDict] = {}  # knocked rooms are not reported (yet): always empty


class DeviceLists(Struct, gc=False):
    changed: list[str] = []
    left: list[str] = []


class SyncResponse(Struct, kw_only=True, gc=False):
    next_batch: str
    rooms: Rooms
    account_data: Events
    presence: Events
    # The E2EE extension fills these (sent empty without it).
    to_device: Events = field(default_factory=no_events)
    device_lists: DeviceLists = field(default_factory=DeviceLists)
    device_one_time_keys_count: dict[str, int] = {}
    device_unused_fallback_key_types: list[str] = []

    def has_news(self) -> bool:
        """Whether this response ends a long-poll: anything in it but the key counts, which every
        response carries."""
        rooms = self.rooms
        return bool(
            rooms.join
            or rooms.invite
            or rooms.leave
            or self.account_data.events
            or self.presence.events
            or self.to_device.events
            or self.device_lists.changed
            or self.device_lists.left
        )
