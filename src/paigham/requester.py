"""Who is making a request: the identity value every layer may take (a leaf module, imports nothing)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requester:
    user_id: str
    device_id: str
    access_token: str
    is_admin: bool = False
