"""Tables of the content repository (media): uploads, their thumbnails, and scanner detections.

File bytes live encrypted on disk (paigham.media.blobs); a row holds the file key wrapped by the
master key, so deleting the row makes the file unreadable.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from paigham.storage.schema import metadata

media = Table(
    "media",
    metadata,
    Column("media_id", String(255), primary_key=True),
    Column("user_id", String(255), nullable=False),
    # pending (created, no content yet) | uploading | ready
    Column("state", String(16), nullable=False),
    Column("content_type", String(255), nullable=True),
    Column("served_type", String(255), nullable=True),
    Column("upload_name", Text, nullable=True),
    Column("length", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("expires_ts", BigInteger, nullable=True),
    Column("last_access_ts", BigInteger, nullable=True),
    Column("quarantined_by", String(255), nullable=True),
    # a thumbnail attempt that failed for good (bomb, malformed): "ERRCODE status message"
    Column("thumb_error", Text, nullable=True),
    Index("media_user_idx", "user_id", "created_ts"),
    Index("media_created_idx", "created_ts"),
)

media_thumbnails = Table(
    "media_thumbnails",
    metadata,
    Column("media_id", String(255), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("method", String(8), nullable=False),
    Column("animated", Boolean, nullable=False),
    Column("content_type", String(64), nullable=False),
    Column("length", BigInteger, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("media_id", "width", "height", "method", "animated"),
)

media_detections = Table(
    "media_detections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", BigInteger, nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("media_id", String(255), nullable=False),
    Column("upload_name", Text, nullable=True),
    Column("content_type", String(255), nullable=True),
    Column("length", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("signature", Text, nullable=False),
    Index("media_detections_user_idx", "user_id", "ts"),
)
