"""An `events` row, read and written: its columns, named once, and the one mapper to `StoredEvent`.

The hot paths (send, /sync) read events with SQL text (`EVENT_COLUMNS` as `EV`) and the rest with
SQLAlchemy Core (`EVENT_TABLE_COLUMNS`); both select the same columns in the same order, so one
mapper (`event_from_row`) serves both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from paigham.domain.stored_event import StoredEvent
from paigham.storage.schema import events

_decode = msgspec.json.decode
_encode = msgspec.json.encode

# The columns a StoredEvent is read from, in its fields' order.
EVENT_COLUMNS = (
    "stream",
    "event_id",
    "room_id",
    "type",
    "state_key",
    "sender",
    "origin_server_ts",
    "json",
    "unsigned",
    "redacted_by",
    "txn_id",
    "device_id",
)
EV = ", ".join(f"e.{c}" for c in EVENT_COLUMNS)  # for SQL text, with the events table as `e`
NO_EV = ", ".join(["NULL"] * len(EVENT_COLUMNS))  # the same width of NULLs (the other side of a UNION)
EVENT_TABLE_COLUMNS = tuple(events.c[c] for c in EVENT_COLUMNS)  # for SQLAlchemy Core


def event_from_row(r: Sequence[Any]) -> StoredEvent:
    """A StoredEvent from the `EVENT_COLUMNS` of a row (a tuple, an asyncpg record or a SQLAlchemy row)."""
    return _stored(r, _decode(r[7]))


def _stored(r: Sequence[Any], pdu: dict[str, Any]) -> StoredEvent:
    # Positional, in the fields' order (the columns' but `json`, decoded into `pdu`): a room list builds
    # ~200 at a time, and a keyword call of the dataclass costs about four times as much.
    return StoredEvent(
        int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), pdu, _decode(r[8]) if r[8] else None, r[9], r[10], r[11]
    )


class _ClientFields(msgspec.Struct):
    """The keys of a PDU the client format shows (services/serializer.py `_CLIENT_KEYS`, and what the
    redaction rules keep of them); the rest — hashes, signatures, auth and prev events, depth — is
    skipped by the decoder without being built."""

    type: str
    sender: str
    origin_server_ts: int
    content: dict[str, Any] = msgspec.field(default_factory=dict)
    state_key: str | None = None
    redacts: str | None = None


_decode_client = msgspec.json.Decoder(_ClientFields).decode


def client_event_from_row(r: Sequence[Any]) -> StoredEvent:
    """`event_from_row` for events read only to be sent to clients (sliding sync's room list: ~11
    state and timeline events per room): its `pdu` holds only the keys the client format shows, about
    half the decoding and a third of the objects of the whole PDU. Not for anything that checks,
    signs, redacts in storage or relays the event."""
    try:
        f = _decode_client(r[7])
    except msgspec.ValidationError:  # a PDU off the usual shape: decoded whole
        return event_from_row(r)
    pdu: dict[str, Any] = {
        "type": f.type,
        "sender": f.sender,
        "origin_server_ts": f.origin_server_ts,
        "content": f.content,
        "room_id": r[2],
    }
    if f.state_key is not None:
        pdu["state_key"] = f.state_key
    if f.redacts is not None:
        pdu["redacts"] = f.redacts
    return _stored(r, pdu)


class ClientStateEvents:
    """State events decoded for clients (`client_event_from_row`), by event ID, for the whole process:
    a room's state events are read again for each of its members' room lists (sliding sync's new
    rooms), and a stored event never changes but for its redaction, which sets the row's
    `redacted_by` — compared on every use: a redacted event is decoded again. Bounded: started afresh
    when full. The events are shared between requests: nothing may change one (the client format is
    built into new dicts, services/serializer.py; `prune_event` copies)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._by_id: dict[str, StoredEvent] = {}

    def from_row(self, r: Sequence[Any]) -> StoredEvent:
        ev = self._by_id.get(r[1])
        if ev is None or ev.redacted_by != r[9]:
            if len(self._by_id) >= self.size:
                self._by_id.clear()
            ev = self._by_id[r[1]] = client_event_from_row(r)
        return ev


# The columns an event is written with (`redacted_by` is set later, by its redaction).
INSERT_COLUMNS = (
    "stream, event_id, room_id, type, state_key, sender, origin_server_ts, depth, json, unsigned, txn_id, device_id, "
    "relates_to, rel_type"
)
INSERT_EVENT = (
    f"INSERT INTO events ({INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
)


def insert_values(e: StoredEvent, relates_to: str | None, rel_type: str | None) -> tuple[Any, ...]:
    """The `INSERT_EVENT` arguments of an event."""
    return (
        e.stream,
        e.event_id,
        e.room_id,
        e.type,
        e.state_key,
        e.sender,
        e.origin_server_ts,
        e.pdu["depth"],
        _encode(e.pdu).decode(),
        _encode(e.unsigned).decode() if e.unsigned else None,
        e.txn_id,
        e.device_id,
        relates_to,
        rel_type,
    )
