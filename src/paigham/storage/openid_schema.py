"""OpenID tokens (spec: POST /user/{userId}/openid/request_token): short-lived tokens a user hands to a
third party (the MatrixRTC authorization service) to prove who they are. Kept hashed: a database
reader cannot use them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table

from paigham.storage.schema import metadata

openid_tokens = Table(
    "openid_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex of the token
    Column("user_id", String(255), nullable=False),
    Column("expires_ts", BigInteger, nullable=False),  # ms
    Index("openid_tokens_expiry", "expires_ts"),
    Index("openid_tokens_user", "user_id"),
)
