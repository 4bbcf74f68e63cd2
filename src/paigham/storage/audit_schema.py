"""Tables of the tamper-evident audit log: append-only records chained by SHA-256, and the chain head.

Every record carries the hash of the one before (`prev_hash`) and its own hash over canonical JSON
of (previous hash, record). `audit_head` holds the newest sequence number and hash — appends lock
that row, so the chain never forks across workers — and the anchor: the last record removed by the
retention purge, from which `paigham audit verify` starts.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from paigham.storage.schema import metadata

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("actor", String(255), nullable=True),
    Column("target", String(512), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("device", String(255), nullable=True),
    Column("details", Text, nullable=False),  # canonical JSON object
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("audit_log_ts", "ts"),
    Index("audit_log_kind", "kind", "ts"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("anchor_seq", BigInteger, nullable=False),
    Column("anchor_hash", String(64), nullable=False),
)
