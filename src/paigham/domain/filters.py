"""Matrix event filters (Client-Server API "Filtering", POST /user/{userId}/filter).

Pure domain code: parsing and validation of filter definitions, matching of events against
them, and `event_fields` projection.

Parsing rules (documented limits):
  * wrong JSON types (an object where a list is expected, a number as a string, ...)
    -> 400 M_BAD_JSON;
  * values of the right type that we refuse -> 400 M_INVALID_PARAM: more than
    MAX_LIST_ENTRIES entries in a list, a string longer than MAX_STRING_LENGTH characters,
    an `event_format` other than "client"/"federation", a room ID not starting with "!" or a
    user ID not starting with "@", a negative `limit`;
  * `limit` above MAX_LIMIT (1000) is clamped to MAX_LIMIT; 0 is accepted (no events);
  * unknown keys are ignored (and not returned by `to_json`).

`rel_types` / `not_rel_types` are not in spec v1.19 (MSC3874); they are accepted under
those names and the unstable `org.matrix.msc3874.*` names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from paigham.domain.matching import MISSING, compile_glob, lookup_path, split_dotted_path
from paigham.errors import Codes, MatrixError

MAX_LIST_ENTRIES = 1000
MAX_STRING_LENGTH = 255
MAX_LIMIT = 1000
EVENT_FORMATS = ("client", "federation")

_E = TypeVar("_E", bound=Mapping[str, Any])


@lru_cache(maxsize=4096)
def _types_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    exact = frozenset(p for p in patterns if "*" not in p)
    globs = tuple(compile_glob(p) for p in patterns if "*" in p)
    return lambda value: value in exact or any(g(value) for g in globs)


def _matches_types(patterns: tuple[str, ...], value: Any) -> bool:
    return isinstance(value, str) and _types_matcher(patterns)(value)


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFilter:
    """`None` lists mean "no restriction"; `not_*` always win over their inclusive lists."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] | None = None
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        sender = event.get("sender")
        if self.not_senders is not None and sender in self.not_senders:
            return False
        if self.senders is not None and sender not in self.senders:
            return False
        event_type = event.get("type")
        if self.not_types and _matches_types(self.not_types, event_type):
            return False
        return self.types is None or _matches_types(self.types, event_type)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.limit is not None:
            out["limit"] = self.limit
        for name in ("types", "not_types", "senders", "not_senders"):
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value)
        return out


@dataclass(frozen=True, slots=True)
class RoomEventFilter(EventFilter):
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] | None = None
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False
    rel_types: tuple[str, ...] | None = None
    not_rel_types: tuple[str, ...] | None = None

    def room_allowed(self, room_id: str) -> bool:
        if self.not_rooms is not None and room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def matches(self, event: Mapping[str, Any], room_id: str | None = None) -> bool:
        """Match `event`; the room checks use `room_id`, else `event["room_id"]`, if known."""
        if not EventFilter.matches(self, event):
            return False
        room = room_id if room_id is not None else event.get("room_id")
        if isinstance(room, str) and not self.room_allowed(room):
            return False
        content = event.get("content")
        if not isinstance(content, Mapping):
            content = {}
        if self.contains_url is not None and isinstance(content.get("url"), str) != self.contains_url:
            return False
        if self.rel_types is not None or self.not_rel_types is not None:
            relates = content.get("m.relates_to")
            rel_type = relates.get("rel_type") if isinstance(relates, Mapping) else None
            if self.not_rel_types is not None and rel_type in self.not_rel_types:
                return False
            if self.rel_types is not None and rel_type not in self.rel_types:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        out = EventFilter.to_json(self)
        for name in ("rooms", "not_rooms", "rel_types", "not_rel_types"):
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value)
        if self.contains_url is not None:
            out["contains_url"] = self.contains_url
        for name in ("lazy_load_members", "include_redundant_members", "unread_thread_notifications"):
            if getattr(self, name):
                out[name] = True
        return out


@dataclass(frozen=True, slots=True)
class RoomFilter:
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] | None = None
    include_leave: bool = False
    timeline: RoomEventFilter = field(default_factory=RoomEventFilter)
    state: RoomEventFilter = field(default_factory=RoomEventFilter)
    ephemeral: RoomEventFilter = field(default_factory=RoomEventFilter)
    account_data: RoomEventFilter = field(default_factory=RoomEventFilter)

    def room_allowed(self, room_id: str) -> bool:
        """The top-level room filter, applied before the per-section filters."""
        if self.not_rooms is not None and room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.rooms is not None:
            out["rooms"] = list(self.rooms)
        if self.not_rooms is not None:
            out["not_rooms"] = list(self.not_rooms)
        if self.include_leave:
            out["include_leave"] = True
        for name in ("timeline", "state", "ephemeral", "account_data"):
            sub = getattr(self, name).to_json()
            if sub:
                out[name] = sub
        return out


@dataclass(frozen=True, slots=True)
class Filter:
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)
    room: RoomFilter = field(default_factory=RoomFilter)

    def to_json(self) -> dict[str, Any]:
        """The stored definition, as returned by GET /user/{userId}/filter/{filterId}."""
        out: dict[str, Any] = {}
        if self.event_fields is not None:
            out["event_fields"] = list(self.event_fields)
        if self.event_format != "client":
            out["event_format"] = self.event_format
        for name in ("presence", "account_data", "room"):
            sub = getattr(self, name).to_json()
            if sub:
                out[name] = sub
        return out


DEFAULT_FILTER = Filter()


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _bad_json(where: str, expected: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, f"Invalid filter: '{where}' must be {expected}")


def _invalid(message: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, f"Invalid filter: {message}")


def _object(obj: object, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise _bad_json(where, "an object")
    return obj


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise _bad_json(f"{where}{key}", "a boolean")
    return value


def _strings(obj: Mapping[str, Any], keys: tuple[str, ...], where: str, sigil: str = "") -> tuple[str, ...] | None:
    key = next((k for k in keys if k in obj), None)
    if key is None or obj[key] is None:
        return None
    value = obj[key]
    name = f"{where}{key}"
    if not isinstance(value, list):
        raise _bad_json(name, "a list of strings")
    if len(value) > MAX_LIST_ENTRIES:
        raise _invalid(f"'{name}' has more than {MAX_LIST_ENTRIES} entries")
    for item in value:
        if not isinstance(item, str):
            raise _bad_json(name, "a list of strings")
        if len(item) > MAX_STRING_LENGTH:
            raise _invalid(f"an entry of '{name}' is longer than {MAX_STRING_LENGTH} characters")
        if sigil and not item.startswith(sigil):
            raise _invalid(f"entries of '{name}' must start with {sigil!r}")
    return tuple(value)


def _limit(obj: Mapping[str, Any], where: str) -> int | None:
    value = obj.get("limit")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_json(f"{where}limit", "an integer")
    if value < 0:
        raise _invalid(f"'{where}limit' must not be negative")
    return min(value, MAX_LIMIT)


def _event_filter_fields(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        "limit": _limit(obj, where),
        "types": _strings(obj, ("types",), where),
        "not_types": _strings(obj, ("not_types",), where),
        "senders": _strings(obj, ("senders",), where, "@"),
        "not_senders": _strings(obj, ("not_senders",), where, "@"),
    }


def parse_event_filter(obj: object, where: str = "") -> EventFilter:
    """Parse an EventFilter (top-level `presence` and `account_data`)."""
    if obj is None:
        return EventFilter()
    return EventFilter(**_event_filter_fields(_object(obj, where.rstrip(".") or "filter"), where))


def parse_room_event_filter(obj: object, where: str = "") -> RoomEventFilter:
    """Parse a RoomEventFilter (also the `filter` parameter of /messages and /context)."""
    if obj is None:
        return RoomEventFilter()
    body = _object(obj, where.rstrip(".") or "filter")
    return RoomEventFilter(
        **_event_filter_fields(body, where),
        rooms=_strings(body, ("rooms",), where, "!"),
        not_rooms=_strings(body, ("not_rooms",), where, "!"),
        contains_url=_bool(body, "contains_url", where),
        lazy_load_members=bool(_bool(body, "lazy_load_members", where)),
        include_redundant_members=bool(_bool(body, "include_redundant_members", where)),
        unread_thread_notifications=bool(_bool(body, "unread_thread_notifications", where)),
        rel_types=_strings(body, ("rel_types", "org.matrix.msc3874.rel_types"), where),
        not_rel_types=_strings(body, ("not_rel_types", "org.matrix.msc3874.not_rel_types"), where),
    )


def parse_room_filter(obj: object) -> RoomFilter:
    if obj is None:
        return RoomFilter()
    body = _object(obj, "room")
    return RoomFilter(
        rooms=_strings(body, ("rooms",), "room.", "!"),
        not_rooms=_strings(body, ("not_rooms",), "room.", "!"),
        include_leave=bool(_bool(body, "include_leave", "room.")),
        timeline=parse_room_event_filter(body.get("timeline"), "room.timeline."),
        state=parse_room_event_filter(body.get("state"), "room.state."),
        ephemeral=parse_room_event_filter(body.get("ephemeral"), "room.ephemeral."),
        account_data=parse_room_event_filter(body.get("account_data"), "room.account_data."),
    )


def parse_filter(obj: object) -> Filter:
    """Validate a FilterDefinition body; raise MatrixError(400) if it is not acceptable."""
    body = _object(obj, "filter")
    event_format = body.get("event_format", "client")
    if not isinstance(event_format, str):
        raise _bad_json("event_format", "a string")
    if event_format not in EVENT_FORMATS:
        raise _invalid("'event_format' must be 'client' or 'federation'")
    return Filter(
        event_fields=_strings(body, ("event_fields",), ""),
        event_format=event_format,
        presence=parse_event_filter(body.get("presence"), "presence."),
        account_data=parse_event_filter(body.get("account_data"), "account_data."),
        room=parse_room_filter(body.get("room")),
    )


# ---------------------------------------------------------------------------------------------
# Applying filters
# ---------------------------------------------------------------------------------------------


def filter_events(flt: EventFilter, events: Iterable[_E], room_id: str | None = None) -> list[_E]:
    """The events `flt` lets through, in order. `limit` is not applied (callers pick the end)."""
    if isinstance(flt, RoomEventFilter):
        return [e for e in events if flt.matches(e, room_id)]
    return [e for e in events if flt.matches(e)]


def apply_event_fields(event: Mapping[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    """Project `event` onto the dot-separated `fields` paths; `None` keeps the whole event."""
    if fields is None:
        return dict(event)
    out: dict[str, Any] = {}
    ours = {id(out)}  # dicts built here, safe to add keys to (never mutate the event's own)
    for path in fields:
        keys = split_dotted_path(path)
        value = lookup_path(event, keys)
        if value is MISSING:
            continue
        target = out
        for key in keys[:-1]:
            nested = target.get(key)
            if not isinstance(nested, dict) or id(nested) not in ours:
                nested = dict(nested) if isinstance(nested, Mapping) else {}
                target[key] = nested
                ours.add(id(nested))
            target = nested
        target[keys[-1]] = value
    return out
