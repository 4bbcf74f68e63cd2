"""The two row mappers agree on everything a client is shown."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest

from paigham.domain.stored_event import StoredEvent
from paigham.services.serializer import EventSerializer
from paigham.storage.event_rows import EVENT_COLUMNS, ClientStateEvents, client_event_from_row, event_from_row

PDU: dict[str, Any] = {
    "type": "m.room.member",
    "sender": "@alice:test.local",
    "content": {"membership": "join", "displayname": "Alice", "nested": {"a": [1, 2]}},
    "origin_server_ts": 1_700_000_000_000,
    "depth": 12,
    "prev_events": ["$p1", "$p2"],
    "auth_events": ["$a1", "$a2", "$a3"],
    "room_id": "!room:test.local",
    "state_key": "@alice:test.local",
    "hashes": {"sha256": "abc"},
    "signatures": {"test.local": {"ed25519:k": "sig"}},
}


def row(pdu: dict[str, Any], *, redacted_by: str | None = None, unsigned: str | None = None) -> tuple[Any, ...]:
    return (
        7,
        "$ev",
        "!room:test.local",
        pdu["type"],
        pdu.get("state_key"),
        pdu["sender"],
        pdu["origin_server_ts"],
        msgspec.json.encode(pdu).decode(),
        unsigned,
        redacted_by,
        "txn",
        "DEV",
    )


class _NoStore:
    async def get_room(self, room_id: str) -> Any:
        return type("Room", (), {"room_version": "11"})()


@pytest.mark.parametrize("redacted", [False, True])
async def test_the_client_mapper_serializes_exactly_as_the_whole_pdu_does(redacted: bool) -> None:
    r = row(PDU, redacted_by="$red" if redacted else None, unsigned='{"prev_content": {"membership": "invite"}}')
    whole, client = event_from_row(r), client_event_from_row(r)
    assert {f: getattr(client, f) for f in ("stream", "event_id", "type", "state_key", "unsigned", "txn_id")} == {
        f: getattr(whole, f) for f in ("stream", "event_id", "type", "state_key", "unsigned", "txn_id")
    }
    assert not {"hashes", "signatures", "auth_events", "prev_events", "depth"} & client.pdu.keys()
    serializer = EventSerializer(_NoStore())  # type: ignore[arg-type]
    assert await serializer.one(client, None, 1_700_000_001_000) == await serializer.one(whole, None, 1_700_000_001_000)


async def test_a_redaction_keeps_its_redacts() -> None:
    pdu = {**PDU, "type": "m.room.redaction", "redacts": "$target", "content": {"reason": "spam"}}
    del pdu["state_key"]
    r = row(pdu)
    serializer = EventSerializer(_NoStore())  # type: ignore[arg-type]
    got = await serializer.one(client_event_from_row(r), None, 1_700_000_001_000)
    assert got == await serializer.one(event_from_row(r), None, 1_700_000_001_000)
    assert got["redacts"] == "$target"


def test_a_pdu_off_the_usual_shape_is_decoded_whole() -> None:
    odd = {**PDU, "content": ["not", "an", "object"], "origin_server_ts": 1.5}
    assert client_event_from_row(row(odd)).pdu == event_from_row(row(odd)).pdu


def test_a_row_maps_to_the_fields_it_names() -> None:
    """`_stored` builds a StoredEvent positionally: the fields must stay in the columns' order."""
    names = [f.name for f in dataclasses.fields(StoredEvent)]
    assert names == [c if c != "json" else "pdu" for c in EVENT_COLUMNS]


def test_client_state_events_are_decoded_once_until_redacted_and_bounded() -> None:
    cache = ClientStateEvents(size=2)
    first = cache.from_row(row(PDU))
    assert cache.from_row(row(PDU)) is first  # read again: the same decoding
    redacted = cache.from_row(row(PDU, redacted_by="$red"))  # its row now names a redaction
    assert redacted is not first and redacted.redacted_by == "$red"
    assert cache.from_row(row(PDU, redacted_by="$red")) is redacted
    other = {**PDU, "state_key": "@bob:test.local"}
    cache.from_row((*row(other)[:1], "$other", *row(other)[2:]))
    third = {**PDU, "state_key": "@cara:test.local"}
    cache.from_row((*row(third)[:1], "$third", *row(third)[2:]))  # full: started afresh
    assert cache.from_row(row(PDU, redacted_by="$red")) is not redacted
