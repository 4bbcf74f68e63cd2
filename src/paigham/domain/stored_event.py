"""`StoredEvent`: an event as the server keeps it (its PDU and where it sits in the stream), the value
type every layer passes around. Pure data; storage builds it, everything above reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class StoredEvent:
    stream: int
    event_id: str
    room_id: str
    type: str
    state_key: str | None
    sender: str
    origin_server_ts: int
    pdu: dict[str, Any]
    unsigned: dict[str, Any] | None
    redacted_by: str | None
    txn_id: str | None
    device_id: str | None

    @property
    def content(self) -> dict[str, Any]:
        c = self.pdu.get("content")
        return c if isinstance(c, dict) else {}
