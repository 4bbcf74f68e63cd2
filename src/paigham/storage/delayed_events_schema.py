"""Delayed events (MSC4140): an event a user scheduled to be sent later, until it is finalised.

A row is `scheduled` until it is sent (`sent`), cancelled (`cancelled`: by the user, or by another
user's update of the same state), or refused when it fired (`failed`, `error` holds the Matrix
error). While scheduled it fires at `fire_at`; "restart" moves `fire_at` to now + `delay`. A worker
about to send it holds a lease (`lease_owner` until `lease_until`), so in a cluster one worker sends
it; the send itself is idempotent (the writer's transaction ID `delayed`/`delay_id`), so a worker
that died between sending and marking the row does not make the next one send it twice.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from paigham.storage.schema import metadata

delayed_events = Table(
    "delayed_events",
    metadata,
    Column("delay_id", String(64), primary_key=True),  # random, unguessable: it is a capability
    Column("user_id", String(255), nullable=False),
    Column("device_id", String(255), nullable=True),
    Column("txn_id", String(255), nullable=True),  # the PUT /send transaction ID (a retry gets the same delay_id)
    Column("room_id", String(255), nullable=False),
    Column("event_type", String(255), nullable=False),
    Column("state_key", String(255), nullable=True),  # None: a message
    Column("content", Text, nullable=False),  # JSON object, as the client sent it
    Column("delay_ms", BigInteger, nullable=False),
    Column("running_since", BigInteger, nullable=False),  # ms: scheduled or last restarted
    Column("fire_at", BigInteger, nullable=False),  # ms: running_since + delay_ms
    Column("state", String(16), nullable=False),  # scheduled | sent | cancelled | failed
    Column("reason", String(16), nullable=True),  # how it was finalised: delay | action | error
    Column("error", Text, nullable=True),  # JSON Matrix error of a failed or state-cancelled one
    Column("event_id", String(255), nullable=True),  # of the event sent
    Column("finalised_ts", BigInteger, nullable=True),  # ms
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", BigInteger, nullable=False, server_default="0"),  # ms
    Index("delayed_events_due", "state", "fire_at"),
    Index("delayed_events_user", "user_id", "state"),
    Index("delayed_events_slot", "room_id", "event_type", "state_key"),
)
