"""TURN credentials for calls (spec: GET /voip/turnServer; domain/turn.py has the schemes).

The shared secret comes from `turn_shared_secret` or, kept out of the config file, from the file named
by `turn_shared_secret_path` (read once, at start-up; setting both, or a missing or empty file, stops
the start, as in Synapse for the first two). Paigham has no guest accounts, so
`turn_allow_guests` (Synapse: a guest gets 403 M_GUEST_ACCESS_FORBIDDEN when it is off) changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from paigham.clock import now_ms
from paigham.config import Config
from paigham.domain.rtc import CALLS_REFUSED
from paigham.domain.turn import TurnCredentials, turn_credentials
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester


def shared_secret(config: Config) -> str:
    """The secret, from the setting or its file; an unreadable or empty file stops the start."""
    path = config.turn_shared_secret_path
    if not path:
        return config.turn_shared_secret
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"turn_shared_secret_path: cannot read {path}: {exc}") from exc
    if not secret:
        raise ValueError(f"turn_shared_secret_path: {path} is empty")
    return secret


class TurnService:
    def __init__(
        self,
        config: Config,
        calls_allowed: Callable[[str], Awaitable[bool]],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._calls_allowed = calls_allowed
        self._uris = list(config.turn_uris)
        self._lifetime_ms = config.turn_user_lifetime_ms
        self._secret = shared_secret(config)
        self._username = config.turn_username
        self._password = config.turn_password
        self._clock = clock

    async def credentials(self, requester: Requester) -> TurnCredentials | None:
        """What `requester` may use now; None when TURN is not configured. A user whose unit's policy
        does not allow calls (org/policy.py `calls_allowed`) is refused: 403 M_FORBIDDEN."""
        if self._uris and not await self._calls_allowed(requester.user_id):
            raise MatrixError(403, Codes.FORBIDDEN, CALLS_REFUSED)
        return turn_credentials(
            user_id=requester.user_id,
            now_ms=self._clock(),
            uris=self._uris,
            lifetime_ms=self._lifetime_ms,
            shared_secret=self._secret,
            username=self._username,
            password=self._password,
        )
