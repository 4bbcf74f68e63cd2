"""Policies: what the server enforces for an official, set globally and per unit. Pure code.

The effective policy of an official is the global policy with the overrides of each unit on the
path from the top of the tree down to the official's own unit applied in turn: the nearest unit
wins. Accounts that are not officials get the global policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from paigham.domain.media import type_allowed
from paigham.messages import N_

MAX_DAYS = 36_500
_TYPE_RE = re.compile(r"^(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,63})/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,63})$")


class InvalidPolicy(ValueError):
    """A policy value that cannot be accepted; the message says why."""


@dataclass(frozen=True, slots=True)
class Policy:
    require_encryption: bool = True  # private rooms and DMs are end-to-end encrypted
    retention_days: int = 0  # events older than this are purged from the server; 0 keeps them
    media_allowed_types: tuple[str, ...] = ("*/*",)
    media_max_bytes: int = 0  # 0: only the server's limit
    invite_outside_ministry: bool = True  # may invite people who are not in the same ministry
    account_validity_days: int = 0  # accounts must be renewed this often; 0: never expire
    access_token_lifetime_s: int = 0  # 0: access tokens do not expire
    max_devices: int = 0  # 0: no limit
    calls_allowed: bool = True  # voice and video calls (LiveKit tokens, TURN credentials, call events)

    def to_json(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    def allows_media(self, content_type: str, size: int | None) -> str | None:
        """None if allowed, else why not."""
        if not type_allowed(content_type, list(self.media_allowed_types)):
            return N_(
                "Files of type {type} are not allowed by your organisation's policy",
                type=content_type.split(";")[0].strip()[:100],
            )
        if self.media_max_bytes and size is not None and size > self.media_max_bytes:
            return N_(
                "Files larger than {size} bytes are not allowed by your organisation's policy",
                size=self.media_max_bytes,
            )
        return None


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise InvalidPolicy(f"{name} must be true or false")
    return v


def _int(hi: int) -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
            raise InvalidPolicy(f"{name} must be a whole number from 0 to {hi}")
        return v

    return check


def _types(name: str, v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [p.strip() for p in v.split(",") if p.strip()]
    if not isinstance(v, list) or not v or len(v) > 100:
        raise InvalidPolicy(f"{name} must be a non-empty list of media types such as image/* (at most 100)")
    out = []
    for p in v:
        if not isinstance(p, str) or not _TYPE_RE.match(p.strip().lower()):
            raise InvalidPolicy(f"{name}: {str(p)[:80]!r} is not a media type pattern (image/png, image/*, */*)")
        out.append(p.strip().lower())
    return tuple(out)


CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "require_encryption": _bool,
    "retention_days": _int(MAX_DAYS),
    "media_allowed_types": _types,
    "media_max_bytes": _int(2**40),
    "invite_outside_ministry": _bool,
    "account_validity_days": _int(MAX_DAYS),
    "access_token_lifetime_s": _int(10 * 365 * 86400),
    "max_devices": _int(10_000),
    "calls_allowed": _bool,
}


def parse_overrides(data: Any) -> dict[str, Any]:
    """Validate a (partial) policy given by an admin; returns the normalised overrides."""
    if not isinstance(data, Mapping):
        raise InvalidPolicy("a policy must be an object of setting to value")
    unknown = sorted(str(k) for k in data if k not in CHECKS)
    if unknown:
        raise InvalidPolicy(f"unknown policy setting(s) {', '.join(unknown)[:200]}; known: {', '.join(CHECKS)}")
    return {k: CHECKS[k](k, v) for k, v in data.items() if v is not None}


def apply(base: Policy, overrides: Iterable[Mapping[str, Any]]) -> Policy:
    out = base
    for o in overrides:
        if o:
            out = replace(out, **o)
    return out


def overrides_json(o: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in o.items()}
