"""Tables of the core homeserver (SQLAlchemy Core). Other areas add theirs to the same `metadata`.

Every stream (events, account data, receipts, typing, presence, to-device, device lists) takes its
positions from one global counter (`stream_counter`), so a sync token is a single integer. The
counter row is bumped inside each writing transaction: on PostgreSQL its row lock makes commits
happen in position order, so a reader that sees position N has seen everything at or below N.
Rows 2 to 17 are the flush barriers' rows; readers read the highest (storage/watermark.py).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

stream_counter = Table(
    "stream_counter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("pos", BigInteger, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("password_hash", Text, nullable=True),
    Column("admin", Boolean, nullable=False, default=False),
    Column("deactivated", Boolean, nullable=False, default=False),
    Column("suspended", Boolean, nullable=False, default=False),
    Column("locked", Boolean, nullable=False, default=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("displayname", Text, nullable=True),
    Column("avatar_url", Text, nullable=True),
    Column("user_type", String(64), nullable=True),
)

devices = Table(
    "devices",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("display_name", Text, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("last_seen_ts", BigInteger, nullable=True),
    Column("last_seen_ip", String(64), nullable=True),
    PrimaryKeyConstraint("user_id", "device_id"),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    # SHA-256 of the token: a stolen database does not yield usable tokens.
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("expires_ts", BigInteger, nullable=True),
    Column("refresh_hash", String(64), nullable=True, unique=True),
    Column("refresh_expires_ts", BigInteger, nullable=True),
    Index("access_tokens_device", "user_id", "device_id"),
)

registration_tokens = Table(
    "registration_tokens",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("uses_allowed", Integer, nullable=True),
    Column("pending", Integer, nullable=False, default=0),
    Column("completed", Integer, nullable=False, default=0),
    Column("expiry_time", BigInteger, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
)

uia_sessions = Table(
    "uia_sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("user_id", String(255), nullable=True),
    Column("completed", Text, nullable=False, default="[]"),
    Column("data", Text, nullable=False, default="{}"),
)

rooms = Table(
    "rooms",
    metadata,
    Column("room_id", String(255), primary_key=True),
    Column("room_version", String(16), nullable=False),
    Column("creator", String(255), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("is_public", Boolean, nullable=False, default=False),
    # How many members are joined and invited now, kept by every membership write
    # (EventWriteStore): a room's size is read in O(1), never counted over its members.
    Column("joined_members", Integer, nullable=False, server_default="0"),
    Column("invited_members", Integer, nullable=False, server_default="0"),
    # The stream of the room's newest membership write (any kind: a display-name change too): what
    # a copy of its member list is checked against (services/timeline.py, /joined_members).
    Column("members_stream", BigInteger, nullable=False, server_default="0"),
)

events = Table(
    "events",
    metadata,
    # On SQLite an INTEGER primary key is the rowid itself: the table is keyed by stream with no
    # separate primary-key index to write on every insert (BIGINT would make one).
    Column("stream", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("event_id", String(255), nullable=False, unique=True),
    Column("room_id", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("state_key", String(255), nullable=True),
    Column("sender", String(255), nullable=False),
    Column("origin_server_ts", BigInteger, nullable=False),
    Column("depth", BigInteger, nullable=False),
    Column("json", Text, nullable=False),
    # Server-computed unsigned data fixed at persist time (prev_content, replaces_state).
    Column("unsigned", Text, nullable=True),
    Column("redacted_by", String(255), nullable=True),
    Column("relates_to", String(255), nullable=True),
    Column("rel_type", String(255), nullable=True),
    Column("txn_id", String(255), nullable=True),
    Column("device_id", String(255), nullable=True),
    Index("events_room_stream", "room_id", "stream"),
    # Partial: a message (no state key, no relation) adds no entry to these, one B-tree page less
    # to write per send. A query must imply the column IS NOT NULL to use them (SQLite does not
    # infer it from `IN (SELECT …)`, the form `= ANY(…)` takes there; say it explicitly).
    Index(
        "events_room_state",
        "room_id",
        "type",
        "state_key",
        "stream",
        sqlite_where=text("state_key IS NOT NULL"),
        postgresql_where=text("state_key IS NOT NULL"),
    ),
    Index(
        "events_relates",
        "relates_to",
        "rel_type",
        sqlite_where=text("relates_to IS NOT NULL"),
        postgresql_where=text("relates_to IS NOT NULL"),
    ),
)

event_txns = Table(
    "event_txns",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("scope", String(32), nullable=False),
    Column("txn_id", String(255), nullable=False),
    Column("result", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id", "scope", "txn_id"),
)

current_state = Table(
    "current_state",
    metadata,
    Column("room_id", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("state_key", String(255), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("stream", BigInteger, nullable=False),
    PrimaryKeyConstraint("room_id", "type", "state_key"),
)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("room_id", String(255), nullable=False),
    Column("membership", String(32), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("stream", BigInteger, nullable=False),
    # The stream of the event that made the membership "join" (kept through later join → join
    # events such as a display-name change): unread counts start there.
    Column("joined_stream", BigInteger, nullable=False, server_default="0"),
    Column("forgotten", Boolean, nullable=False, default=False),
    # Whether the member has push rules of their own (a `push_rules` row), set with each membership
    # write and by PushRuleStore.put: a write into a room reads only these members' rules, the others
    # share the server defaults (services/push.py), so a send or a join costs the same in any room size.
    Column("own_push_rules", Boolean, nullable=False, server_default=text("FALSE")),
    PrimaryKeyConstraint("user_id", "room_id"),
    Index("memberships_room", "room_id", "membership"),
    # Partial: only the joined members with rules of their own, so the planners pick it whatever their
    # statistics say (a plain (room_id, own_push_rules, membership) index lost to memberships_room on
    # PostgreSQL with stale statistics, and on SQLite always: every write read the room's members).
    Index(
        "memberships_room_rules",
        "room_id",
        sqlite_where=text("own_push_rules AND membership = 'join'"),
        postgresql_where=text("own_push_rules AND membership = 'join'"),
    ),
    Index("memberships_stream", "stream"),  # membership changes in a sync's range (device lists)
    # a user's membership changes past a position (the sync probe's remembered rooms: sync_rooms.py)
    Index("memberships_user_stream", "user_id", "stream"),
)

account_data = Table(
    "account_data",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("room_id", String(255), nullable=False),  # "" for global account data
    Column("type", String(255), nullable=False),
    Column("content", Text, nullable=False),
    Column("stream", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "room_id", "type"),
    Index("account_data_stream", "user_id", "stream"),
)

receipts = Table(
    "receipts",
    metadata,
    Column("room_id", String(255), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("receipt_type", String(64), nullable=False),
    Column("thread_id", String(255), nullable=False),  # "" for an unthreaded receipt
    Column("event_id", String(255), nullable=False),
    Column("event_stream", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("stream", BigInteger, nullable=False),
    PrimaryKeyConstraint("room_id", "user_id", "receipt_type", "thread_id"),
    Index("receipts_stream", "room_id", "stream"),
    Index("receipts_position", "stream"),  # the receipts past a sync's `since`, in any room (sync_probe.py)
)

typing = Table(
    "typing",
    metadata,
    Column("room_id", String(255), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("expires_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("room_id", "user_id"),
)

# The position of the last typing change of each room; sync sends the full list when it moved.
typing_stream = Table(
    "typing_stream",
    metadata,
    Column("room_id", String(255), primary_key=True),
    Column("stream", BigInteger, nullable=False),
    Index("typing_stream_position", "stream"),  # the rooms whose typing moved past a sync's `since`
)

presence = Table(
    "presence",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("state", String(32), nullable=False),
    Column("status_msg", Text, nullable=True),
    Column("last_active_ts", BigInteger, nullable=False),
    Column("stream", BigInteger, nullable=False),
    Index("presence_stream", "stream"),
)

filters = Table(
    "filters",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("filter_id", Integer, nullable=False),
    Column("json", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "filter_id"),
)

push_rules = Table(
    "push_rules",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("json", Text, nullable=False),
    Column("stream", BigInteger, nullable=False),
)

# Push actions, the source of /sync's unread counts, are stored per event, not per recipient: in
# a room most members get the same result for an event (under default rules every member but the
# sender is notified), so one `room_push_actions` row holds that common result for everyone joined
# when the event was sent, and `event_push_actions` holds only the members whose result differs
# (a muted room, a mention, rules of their own). A message into a room of 500 writes one row, not
# 499. Counting for a user: room rows past their read position (and join) not sent by them and
# without a row of their own, plus their own rows that notify.
room_push_actions = Table(
    "room_push_actions",
    metadata,
    Column("room_id", String(255), nullable=False),
    Column("stream", BigInteger, nullable=False),
    Column("sender", String(255), nullable=False),
    Column("thread_id", String(255), nullable=False),
    Column("highlight", Boolean, nullable=False),  # stored only for events that notify by default
    PrimaryKeyConstraint("room_id", "stream"),
    sqlite_with_rowid=False,
)

event_push_actions = Table(
    "event_push_actions",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("room_id", String(255), nullable=False),
    Column("stream", BigInteger, nullable=False),
    Column("thread_id", String(255), nullable=False),
    Column("notify", Boolean, nullable=False),
    Column("highlight", Boolean, nullable=False),
    PrimaryKeyConstraint("user_id", "room_id", "stream"),
    # SQLite: the table is its primary key's B-tree (one structure to insert into per row, and the
    # unread count of /sync is a range count over it without a second lookup).
    sqlite_with_rowid=False,
)

room_aliases = Table(
    "room_aliases",
    metadata,
    Column("alias", String(255), primary_key=True),
    Column("room_id", String(255), nullable=False),
    Column("creator", String(255), nullable=False),
    Index("room_aliases_room", "room_id"),
)

server_keys = Table(
    "server_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
