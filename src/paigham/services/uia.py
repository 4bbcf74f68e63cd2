"""User-Interactive Authentication (spec: "User-Interactive Authentication API")."""

from __future__ import annotations

from typing import Any

from paigham.clock import now_ms
from paigham.errors import Codes, MatrixError
from paigham.ids import random_string
from paigham.services.auth import password_matches, user_id_for
from paigham.storage.accounts import AccountStore

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"
SESSION_LIFETIME_MS = 30 * 60 * 1000


class UIARequired(MatrixError):
    """HTTP 401 carrying the flows; errcode only when a stage just failed."""

    def __init__(self, body: dict[str, Any], errcode: str | None = None, error: str | None = None) -> None:
        super().__init__(401, errcode or "", error or "Additional authentication is required")
        self.body = body
        self.failed = errcode is not None

    def to_dict(self) -> dict[str, Any]:
        if self.failed:
            return {**self.body, "errcode": self.errcode, "error": self.error}
        return self.body


class UIAService:
    # Built from the account store, not from AuthService: E2EE (cross-signing uploads) needs it and is
    # built before AuthService, which calls E2EE when devices change.
    def __init__(self, server_name: str, store: AccountStore) -> None:
        self.server_name = server_name
        self.store = store

    async def check(
        self, auth: Any, *, kind: str, flows: list[list[str]], user_id: str | None = None
    ) -> dict[str, Any]:
        """Advance the UIA session in `auth`; return its data once a flow is complete, else raise 401."""
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, Codes.BAD_JSON, "auth must be an object")
        auth = auth or {}
        given = auth.get("session")
        if given is not None and not isinstance(given, str):
            raise MatrixError(400, Codes.BAD_JSON, "auth.session must be a string")
        session = await self.store.get_uia_session(given) if given else None
        if session is not None and (
            session["kind"] != kind
            or session["user_id"] != user_id
            or session["created_ts"] + SESSION_LIFETIME_MS < now_ms()
        ):
            session = None
        if session is None:
            if given:
                raise MatrixError(400, Codes.UNKNOWN, "Unknown or expired UIA session")
            session = {"completed": [], "data": {}}
        session_id: str = given or random_string(24)
        completed: list[str] = list(session["completed"])
        data: dict[str, Any] = dict(session["data"])
        stage = auth.get("type")
        body = self._body(flows, session_id, completed)
        if stage is not None:
            if not any(stage in flow for flow in flows):
                raise UIARequired(body, Codes.UNRECOGNIZED, f"Unsupported auth stage {stage!r}")
            await self._complete_stage(stage, auth, user_id, data, body)
            if stage not in completed:
                completed.append(stage)
        if any(all(s in completed for s in flow) for flow in flows):
            await self.store.delete_uia_session(session_id)
            return data
        await self.store.save_uia_session(session_id, kind, user_id, completed, data, now_ms())
        raise UIARequired(self._body(flows, session_id, completed))

    async def _complete_stage(
        self, stage: str, auth: dict[str, Any], user_id: str | None, data: dict[str, Any], body: dict[str, Any]
    ) -> None:
        if stage == DUMMY:
            return
        if stage == PASSWORD:
            who = _password_user(auth)
            if user_id is None or who is None or user_id_for(who, self.server_name) != user_id:
                raise UIARequired(body, Codes.FORBIDDEN, "Invalid user for password authentication")
            password = auth.get("password")
            if not isinstance(password, str) or not await password_matches(
                await self.store.get_user(user_id), password
            ):
                raise UIARequired(body, Codes.FORBIDDEN, "Invalid password")
            return
        if stage == REGISTRATION_TOKEN:
            token = auth.get("token")
            if not isinstance(token, str) or not await self.store.registration_token_valid(token, now_ms()):
                raise UIARequired(body, Codes.UNAUTHORIZED, "Invalid registration token")
            data["registration_token"] = token
            return
        raise UIARequired(body, Codes.UNRECOGNIZED, f"Unsupported auth stage {stage!r}")

    async def purge_expired(self) -> int:
        """Forget sessions past their lifetime (a job): abandoned sign-ups would otherwise stay for ever."""
        return await self.store.delete_uia_sessions_before(now_ms() - SESSION_LIFETIME_MS)

    @staticmethod
    def _body(flows: list[list[str]], session_id: str, completed: list[str]) -> dict[str, Any]:
        return {
            "flows": [{"stages": f} for f in flows],
            "params": {},
            "session": session_id,
            "completed": completed,
        }


def _password_user(auth: dict[str, Any]) -> str | None:
    ident = auth.get("identifier")
    if isinstance(ident, dict) and ident.get("type") == "m.id.user" and isinstance(ident.get("user"), str):
        return str(ident["user"])
    legacy = auth.get("user")
    return legacy if isinstance(legacy, str) else None
