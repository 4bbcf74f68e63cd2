"""TURN credentials for GET /voip/turnServer, as pure code.

Two schemes, as in Synapse (so its `turn_*` settings carry over):
- the shared-secret "TURN REST API" scheme that coturn (`use-auth-secret`, `static-auth-secret`) and
  eturnal check without asking the homeserver: the username is `<expiry in Unix seconds>:<user ID>`
  and the password is base64(HMAC-SHA1(secret, username)). The TURN server recomputes the HMAC and
  refuses the allocation once the expiry has passed, so nothing has to be stored or revoked;
- one static username and password shared by everyone (a TURN server with a fixed user).

The shared secret wins when both are configured; with neither (or no URIs, or a zero lifetime) there is
nothing to offer and the answer is `{}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec


class TurnCredentials(msgspec.Struct, frozen=True):
    """The body of a 200 answer (spec: username, password, uris, ttl in seconds)."""

    username: str
    password: str
    uris: list[str]
    ttl: int


def rest_api_username(user_id: str, expires_s: int) -> str:
    # coturn reads the digits before the first ':' as the expiry, so the user ID's own colons are harmless.
    return f"{expires_s}:{user_id}"


def rest_api_password(shared_secret: str, username: str) -> str:
    mac = hmac.new(shared_secret.encode(), username.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def turn_credentials(
    *,
    user_id: str,
    now_ms: int,
    uris: list[str],
    lifetime_ms: int,
    shared_secret: str = "",
    username: str = "",
    password: str = "",
) -> TurnCredentials | None:
    """The credentials to hand `user_id` at `now_ms`, or None when TURN is not configured."""
    if not uris or lifetime_ms <= 0:
        return None
    ttl = lifetime_ms // 1000
    if shared_secret:
        name = rest_api_username(user_id, (now_ms + lifetime_ms) // 1000)
        return TurnCredentials(name, rest_api_password(shared_secret, name), list(uris), ttl)
    if username and password:
        return TurnCredentials(username, password, list(uris), ttl)
    return None
