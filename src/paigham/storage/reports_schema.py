"""The reports users make (spec "Reporting content"): of an event, a room or a user, kept for the
server's admins (the admin API's event, room and user report lists)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from paigham.storage.schema import metadata

REPORT_KINDS = ("event", "room", "user")

reports = Table(
    "reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # one of REPORT_KINDS
    Column("received_ts", BigInteger, nullable=False),
    Column("reporter", String(255), nullable=False),
    Column("room_id", String(255), nullable=True),  # the reported room, or the reported event's room
    Column("event_id", String(255), nullable=True),
    # The reported user, or the reported event's sender (kept: the event may be purged later).
    Column("target_user_id", String(255), nullable=True),
    Column("reason", Text, nullable=True),
    Column("score", Integer, nullable=True),
    Index("reports_kind", "kind", "id"),
)
