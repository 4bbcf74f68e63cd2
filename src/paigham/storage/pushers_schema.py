"""Pushers (spec: Push module) and their delivery state.

A pusher is keyed by (app_id, pushkey, user_id). Delivery walks the user's notifications (the push
action tables, storage/push_actions.py) past `last_stream`, in stream order; one worker at a time
holds a pusher (`lease_owner` until `lease_until`), so in a cluster exactly one delivers.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from paigham.storage.schema import metadata

pushers = Table(
    "pushers",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("user_id", String(255), nullable=False),
    # The device whose access token registered it: logging out or deleting the device removes it.
    Column("device_id", String(255), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("app_id", String(64), nullable=False),
    Column("pushkey", String(512), nullable=False),
    Column("pushkey_ts", BigInteger, nullable=False),  # when registered (ms; sent to gateways in seconds)
    Column("app_display_name", String(255), nullable=False),
    Column("device_display_name", String(255), nullable=False),
    Column("profile_tag", String(255), nullable=True),
    Column("lang", String(64), nullable=False),
    Column("data", Text, nullable=False),  # JSON object, `url` included
    # Delivery: notifications with stream > last_stream are still to send (a new pusher starts at the
    # position it was registered at: no backlog).
    Column("last_stream", BigInteger, nullable=False),
    Column("last_badge", Integer, nullable=True),  # counts.unread last sent (a receipt may change it)
    Column("failing_since", BigInteger, nullable=True),  # ms; the head notification fails since then
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_ts", BigInteger, nullable=False, server_default="0"),  # ms: retry not before
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", BigInteger, nullable=False, server_default="0"),  # ms
    UniqueConstraint("app_id", "pushkey", "user_id", name="pushers_key"),
    Index("pushers_user", "user_id"),
)
