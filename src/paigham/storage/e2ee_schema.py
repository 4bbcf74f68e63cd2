"""Tables of end-to-end encryption: device and one-time keys, cross-signing, device-list changes,
the to-device inbox and server-side key backups. The server stores public keys and opaque,
client-encrypted blobs only; it never sees a plaintext message or a private key.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, PrimaryKeyConstraint, String, Table, Text

from paigham.storage.schema import metadata

# The signed device-keys object of each device (canonical JSON), as uploaded by /keys/upload.
e2e_device_keys = Table(
    "e2e_device_keys",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("ed25519", String(64), nullable=False),
    Column("key_json", Text, nullable=False),
    Column("stream", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id"),
)

# One row per unclaimed one-time key; a claim deletes the row (DELETE … RETURNING), so a key is
# handed out at most once. `seq` orders keys by upload.
e2e_one_time_keys = Table(
    "e2e_one_time_keys",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("algorithm", String(255), nullable=False),
    Column("key_id", String(255), nullable=False),
    Column("key_json", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id", "algorithm", "key_id"),
    Index("e2e_one_time_keys_order", "user_id", "device_id", "algorithm", "seq"),
)

# At most one fallback key per (device, algorithm); handed out (and marked used) when no one-time
# key is left.
e2e_fallback_keys = Table(
    "e2e_fallback_keys",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("algorithm", String(255), nullable=False),
    Column("key_id", String(255), nullable=False),
    Column("key_json", Text, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("user_id", "device_id", "algorithm"),
)

# The current master / self_signing / user_signing key of each user.
e2e_cross_signing_keys = Table(
    "e2e_cross_signing_keys",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("key_type", String(32), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("key_json", Text, nullable=False),
    Column("stream", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "key_type"),
)

# Signatures added later by /keys/signatures/upload: on `key_id` (a device ID or a master public
# key) of `user_id`, made by `signer_id` with `signer_key_id`.
e2e_signatures = Table(
    "e2e_signatures",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("key_id", String(255), nullable=False),
    Column("signer_id", String(255), nullable=False),
    Column("signer_key_id", String(255), nullable=False),
    Column("signature", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "key_id", "signer_id", "signer_key_id"),
    Index("e2e_signatures_signer", "signer_id", "signer_key_id"),
)

# A user's devices or cross-signing keys changed at `stream` (device_lists.changed, /keys/changes).
e2e_device_list_changes = Table(
    "e2e_device_list_changes",
    metadata,
    Column("stream", BigInteger, nullable=False),
    Column("user_id", String(255), nullable=False),
    PrimaryKeyConstraint("stream", "user_id"),
    Index("e2e_device_list_changes_user", "user_id", "stream"),
)

# To-device messages waiting for their device, delivered in `seq` (arrival) order. `stream` is the
# position a sync must pass to acknowledge the message: first the arrival position; a message that
# did not fit in a /sync response is moved to a fresh position after that response's next_batch, so
# syncing from that token acknowledges exactly what the response delivered.
e2e_device_inbox = Table(
    "e2e_device_inbox",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("device_id", String(255), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("stream", BigInteger, nullable=False),
    Column("sender", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("content", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id", "seq"),
)

# Server-side key backup versions; deleted versions stay (deleted = true) so their numbers are
# never reused and deleting one twice succeeds.
e2e_backup_versions = Table(
    "e2e_backup_versions",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("algorithm", String(255), nullable=False),
    Column("auth_data", Text, nullable=False),
    Column("etag", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("user_id", "version"),
)

# Backed-up room keys: `session_data` is encrypted by the client and opaque to the server.
e2e_backup_keys = Table(
    "e2e_backup_keys",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("room_id", String(255), nullable=False),
    Column("session_id", String(255), nullable=False),
    Column("first_message_index", BigInteger, nullable=False),
    Column("forwarded_count", BigInteger, nullable=False),
    Column("is_verified", Boolean, nullable=False),
    Column("session_data", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "version", "room_id", "session_id"),
)
