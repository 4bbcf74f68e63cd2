"""Tables of the organisation (the unit tree, the officials keyed on employee ID) and of admin actions."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from paigham.storage.schema import metadata

org_units = Table(
    "org_units",
    metadata,
    Column("unit_id", String(64), primary_key=True),
    Column("parent_id", String(64), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("names", Text, nullable=False),  # JSON {language: name}
    Column("search_key", Text, nullable=False, default=""),  # folded, transliterated names (directory)
    Column("space_id", String(255), nullable=True),  # the unit's m.space
    Column("announcements_id", String(255), nullable=True),  # its announcements room
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Index("org_units_parent", "parent_id"),
)

officials = Table(
    "officials",
    metadata,
    Column("employee_id", String(64), primary_key=True),
    Column("user_id", String(255), nullable=False, unique=True),
    Column("names", Text, nullable=False),  # JSON {language: name}
    Column("designation", Text, nullable=False),  # JSON {language: designation}
    Column("unit_id", String(64), nullable=False),
    Column("email", String(320), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("status", String(16), nullable=False),
    Column("expires", String(40), nullable=True),
    Column("expires_ts", BigInteger, nullable=True),
    Column("language", String(16), nullable=True),
    # The unit whose space and rooms the official's memberships currently reflect (None: not yet joined).
    Column("joined_unit", String(64), nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Index("officials_unit", "unit_id"),
    Index("officials_status", "status"),
)

# Rooms an admin deleted with block=true: nobody may join them again.
blocked_rooms = Table(
    "blocked_rooms",
    metadata,
    Column("room_id", String(255), primary_key=True),
    Column("blocked_by", String(255), nullable=True),
    Column("ts", BigInteger, nullable=False),
)

# Accounts deactivated with erase=true (their profile and contact details were removed).
erased_users = Table(
    "erased_users",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("ts", BigInteger, nullable=False),
)

# Failed sign-ins per account ("u:<user id>") and per address ("ip:<address>"), for throttling and lockout.
login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(320), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("first_ts", BigInteger, nullable=False),  # start of the counting window
    Column("last_ts", BigInteger, nullable=False),
    Column("locked_until", BigInteger, nullable=True),
)

# Policy overrides set through the admin API: scope "global" or "unit:<unit id>" → JSON object.
policies = Table(
    "policies",
    metadata,
    Column("scope", String(80), primary_key=True),
    Column("json", Text, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=True),
)

# When each account must next be renewed (account validity policy, or an admin's renewal).
account_validity = Table(
    "account_validity",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("expires_ts", BigInteger, nullable=False),
    Column("renewed_ts", BigInteger, nullable=False),
)

# Each user's server notices room (messages from the server, in the user's language).
server_notice_rooms = Table(
    "server_notice_rooms",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("room_id", String(255), nullable=False),
)
