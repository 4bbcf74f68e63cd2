"""Simplified Sliding Sync (MSC4186) as Element X and Synapse speak it today: the request body, the
response, and `pos`.

The shape is the unstable one the apps send (ruma's `sync_events::v5`): lists with `ranges`,
`required_state` as `[type, state_key]` pairs with `*`, `$LAZY` and `$ME`, `filters.is_invite`,
`invite_state`, `conn_id` in the body, `pos` and `timeout` in the query (research/element-x.md §2).
Request structs validate types and limits (M_BAD_JSON); responses are Structs whose UNSET fields
are left out.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType, field

from paigham.errors import Codes, MatrixError
from paigham.types import JsonDict

Str = Annotated[str, Meta(max_length=255)]
Index = Annotated[int, Meta(ge=0, le=10_000_000)]
Range = tuple[Index, Index]
StatePair = tuple[Str, Str]
RoomIds = Annotated[list[Str], Meta(max_length=1000)]
Names = Annotated[list[Str], Meta(max_length=100)]

MAX_TIMELINE = 1000
# Element X's room list asks for 17 pairs, a subscription 18; room for more without letting one
# request ask for thousands.
MAX_REQUIRED_STATE = 100


class Filters(Struct, kw_only=True, forbid_unknown_fields=False):
    """The list filters Synapse supports (a filter left out does not filter)."""

    is_dm: bool | None = None
    spaces: RoomIds | None = None
    is_encrypted: bool | None = None
    is_invite: bool | None = None
    room_types: Annotated[list[Str | None], Meta(max_length=100)] | None = None
    not_room_types: Annotated[list[Str | None], Meta(max_length=100)] | None = None
    tags: Names | None = None
    not_tags: Names | None = None


class RoomConfig(Struct, kw_only=True, forbid_unknown_fields=False):
    timeline_limit: Annotated[int, Meta(ge=0, le=MAX_TIMELINE)] = 0
    required_state: Annotated[list[StatePair], Meta(max_length=MAX_REQUIRED_STATE)] = []


class ListConfig(RoomConfig, kw_only=True, forbid_unknown_fields=False):
    ranges: Annotated[list[Range], Meta(max_length=100)] = []
    filters: Filters | None = None


class Toggle(Struct, kw_only=True, forbid_unknown_fields=False):
    enabled: bool | None = None


class ToDeviceToggle(Toggle, kw_only=True, forbid_unknown_fields=False):
    since: Str | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


class ScopedToggle(Toggle, kw_only=True, forbid_unknown_fields=False):
    """An extension about rooms: those of the named lists and subscriptions (`*`: all of them)."""

    lists: Names | None = None
    rooms: RoomIds | None = None


class ExtensionsRequest(Struct, kw_only=True, forbid_unknown_fields=False):
    to_device: ToDeviceToggle | None = None
    e2ee: Toggle | None = None
    account_data: ScopedToggle | None = None
    receipts: ScopedToggle | None = None
    typing: ScopedToggle | None = None


class SlidingRequest(Struct, kw_only=True, forbid_unknown_fields=False):
    conn_id: Annotated[str, Meta(max_length=64)] | None = None
    txn_id: Str | None = None
    lists: Annotated[dict[Str, ListConfig], Meta(max_length=100)] = {}
    room_subscriptions: Annotated[dict[Str, RoomConfig], Meta(max_length=1000)] = {}
    extensions: ExtensionsRequest = field(default_factory=ExtensionsRequest)


# -- the response -----------------------------------------------------------------------------------
class Hero(Struct, kw_only=True, omit_defaults=True, gc=False):
    user_id: str
    displayname: str | UnsetType = UNSET
    avatar_url: str | UnsetType = UNSET


class SlidingRoom(Struct, kw_only=True, omit_defaults=True, gc=False):
    name: str | UnsetType = UNSET
    avatar: str | UnsetType = UNSET
    heroes: list[Hero] | UnsetType = UNSET
    is_dm: bool | UnsetType = UNSET
    initial: bool | UnsetType = UNSET
    unstable_expanded_timeline: bool | UnsetType = UNSET
    required_state: list[JsonDict] | UnsetType = UNSET
    invite_state: list[JsonDict] | UnsetType = UNSET
    timeline: list[JsonDict] | UnsetType = UNSET
    prev_batch: str | UnsetType = UNSET
    limited: bool | UnsetType = UNSET
    num_live: int | UnsetType = UNSET
    bump_stamp: int | UnsetType = UNSET
    joined_count: int | UnsetType = UNSET
    invited_count: int | UnsetType = UNSET
    notification_count: int | UnsetType = UNSET
    highlight_count: int | UnsetType = UNSET


class ListCount(Struct, gc=False):
    count: int


class ToDeviceResponse(Struct, gc=False):
    next_batch: str
    events: list[JsonDict]


class DeviceListsResponse(Struct, gc=False):
    changed: list[str]
    left: list[str]


class E2eeResponse(Struct, kw_only=True, omit_defaults=True, gc=False):
    device_one_time_keys_count: dict[str, int]
    device_unused_fallback_key_types: list[str]
    device_lists: DeviceListsResponse | UnsetType = UNSET


class AccountDataResponse(Struct, gc=False):
    global_: list[JsonDict] = field(name="global")
    rooms: dict[str, list[JsonDict]]


class RoomEventsResponse(Struct, gc=False):
    """receipts and typing: one ephemeral event per room."""

    rooms: dict[str, JsonDict]


class ExtensionsResponse(Struct, kw_only=True, omit_defaults=True, gc=False):
    to_device: ToDeviceResponse | UnsetType = UNSET
    e2ee: E2eeResponse | UnsetType = UNSET
    account_data: AccountDataResponse | UnsetType = UNSET
    receipts: RoomEventsResponse | UnsetType = UNSET
    typing: RoomEventsResponse | UnsetType = UNSET

    def has_news(self) -> bool:
        """Whether these end a long-poll: anything but the key counts (sent in every response)."""
        lists = self.e2ee.device_lists if self.e2ee else UNSET
        return bool(
            (self.to_device and self.to_device.events)
            or (lists and (lists.changed or lists.left))
            or (self.account_data and (self.account_data.global_ or self.account_data.rooms))
            or (self.receipts and self.receipts.rooms)
            or (self.typing and self.typing.rooms)
        )


class SlidingResponse(Struct, kw_only=True, gc=False):
    pos: str
    txn_id: str | UnsetType = UNSET
    lists: dict[str, ListCount] = {}
    rooms: dict[str, SlidingRoom] = {}
    extensions: ExtensionsResponse = field(default_factory=ExtensionsResponse)


# -- pos --------------------------------------------------------------------------------------------
def make_pos(generation: int, stream: int) -> str:
    return f"{generation}/{stream}"


def parse_pos(pos: str) -> tuple[int, int]:
    """(generation, stream) of a `pos`; anything unparsable is M_UNKNOWN_POS, the one error on which
    the apps drop their position and start over (an M_INVALID_PARAM would stop their sync loop)."""
    gen, _, stream = pos.partition("/")
    if not (gen.isascii() and gen.isdigit() and stream.isascii() and stream.isdigit()) or len(pos) > 40:
        raise unknown_pos()
    return int(gen), int(stream)


def unknown_pos() -> MatrixError:
    return MatrixError(400, Codes.UNKNOWN_POS, "Unknown or expired position; start again without pos")
