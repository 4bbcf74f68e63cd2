"""Pushers (spec: Push module, POST /pushers/set, GET /pushers) and the notification list
(GET /notifications), plus the admin's view of a user's pushers.

Registration is where the outbound policy starts: a pusher's `data.url` must lie under one of the
operator's `push_gateway_allowlist` prefixes (sovereign by default: the list is empty), compared as
parsed URLs — scheme, host, port and a path-segment boundary — never as raw string prefixes, so an
allowlisted `https://ntfy.gov.example` admits neither `https://ntfy.gov.example.evil.com/…` nor
`https://ntfy.gov.example@evil.com/…`. Validation otherwise follows Synapse where the apps rely on
it (push.md §3): the same M_MISSING_PARAM answers; its quirks (unknown kinds stored, `ftp://` URLs
accepted, e-mail pushers failing with a 500) are refused with a 400 instead.

Pushers belong to the device that registered them: logging out, deleting the device or deactivating
the account removes them (this service is one of AuthService's device and account hooks).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, urlsplit

import msgspec
import structlog

from paigham.clock import now_ms
from paigham.config import Config
from paigham.errors import Codes, MatrixError
from paigham.ids import parse_user_id
from paigham.requester import Requester
from paigham.services.admin import Actor
from paigham.services.outbound import DEFAULT_PORTS, parse_allowlist, url_port
from paigham.services.ports import AuditLog
from paigham.services.serializer import EventSerializer
from paigham.storage.accounts import AccountStore
from paigham.storage.events import EventStore
from paigham.storage.notifications import NotificationStore, is_read
from paigham.storage.pushers import NewPusher, PusherRow, PusherStore
from paigham.types import JsonDict

log = structlog.get_logger(__name__)

NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_APP_ID_CHARS = 64
MAX_PUSHKEY_BYTES = 512
MAX_NAME_CHARS = 255  # app_display_name, device_display_name, profile_tag (the columns' size)
MAX_LANG_CHARS = 64
MAX_URL_CHARS = 2048
MAX_DATA_BYTES = 8192  # the whole `data` object as JSON (it is forwarded to the gateway with each push)
_REQUIRED = ("kind", "app_id", "pushkey")
_REQUIRED_TO_SET = ("app_display_name", "device_display_name", "lang", "data")
# Characters a gateway URL may hold: printable ASCII without spaces or backslashes, so that this
# check and the HTTP client that later sends to the URL cannot read it differently.
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")


class PusherService:
    def __init__(
        self,
        config: Config,
        store: PusherStore,
        accounts: AccountStore,
        audit: AuditLog,
        on_added: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.store = store
        self.accounts = accounts
        self.audit = audit
        self.on_added = on_added  # delivery learns at once that a pusher exists (PushWakeups.pusher_added)
        self.allowlist = parse_allowlist(config.push_gateway_allowlist)

    # -- POST /pushers/set, GET /pushers -------------------------------------------------------
    async def set_pusher(self, requester: Requester, body: JsonDict) -> None:
        """Create, update or (kind: null) delete one of the requester's pushers."""
        missing = [k for k in _REQUIRED if k not in body]
        if missing:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameters: {', '.join(missing)}")
        app_id, pushkey = _key(body)
        if body["kind"] is None:
            await self.store.delete(requester.user_id, app_id, pushkey)
            return
        new = self._checked(requester, body, app_id, pushkey)
        append = body.get("append")
        if append is not None and not isinstance(append, bool):
            raise MatrixError(400, Codes.INVALID_PARAM, "append must be a boolean")
        created = await self.store.set(
            new, now_ms(), max_per_user=self.config.push_max_pushers_per_user, replace_others=not append
        )
        if created is None:
            raise MatrixError(
                400,
                Codes.LIMIT_EXCEEDED,
                f"You have too many pushers (at most {self.config.push_max_pushers_per_user}, the server's "
                "push_max_pushers_per_user); remove one first",
            )
        self.on_added()

    def _checked(self, requester: Requester, body: JsonDict, app_id: str, pushkey: str) -> NewPusher:
        kind = body["kind"]
        if kind != "http":
            what = "E-mail pushers are" if kind == "email" else f"Pusher kind {_shown(kind)} is"
            raise MatrixError(400, Codes.INVALID_PARAM, f'{what} not supported here; kind must be "http" or null')
        missing = [k for k in _REQUIRED_TO_SET if body.get(k) is None]
        if missing:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameters: {', '.join(missing)}")
        data = body["data"]
        if not isinstance(data, dict):
            raise MatrixError(400, Codes.INVALID_PARAM, "data must be an object")
        self._check_url(data)
        if len(msgspec.json.encode(data)) > MAX_DATA_BYTES:
            raise MatrixError(400, Codes.INVALID_PARAM, f"data must be at most {MAX_DATA_BYTES} bytes as JSON")
        if "format" in data and not isinstance(data["format"], str):
            raise MatrixError(400, Codes.INVALID_PARAM, "data.format must be a string")
        profile_tag = body.get("profile_tag")
        return NewPusher(
            user_id=requester.user_id,
            device_id=requester.device_id or None,
            kind=kind,
            app_id=app_id,
            pushkey=pushkey,
            app_display_name=_text(body, "app_display_name", MAX_NAME_CHARS),
            device_display_name=_text(body, "device_display_name", MAX_NAME_CHARS),
            profile_tag=None if profile_tag is None else _text(body, "profile_tag", MAX_NAME_CHARS),
            lang=_text(body, "lang", MAX_LANG_CHARS),
            data=data,
        )

    def _check_url(self, data: JsonDict) -> None:
        """data.url: present, a string, an http(s) URL with the notify path (Synapse's checks and
        answers), then the operator's policy: push enabled and the URL under an allowlisted prefix."""
        url = data.get("url")
        if url is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "'url' required in data for HTTP pushers")
        if not isinstance(url, str):
            raise MatrixError(400, Codes.MISSING_PARAM, "'url' in data must be a string")
        parsed = _parse_url(url)
        if parsed.path != NOTIFY_PATH:
            raise MatrixError(400, Codes.MISSING_PARAM, f"'url' must have a path of {NOTIFY_PATH}")
        if not self.config.push_enabled:
            raise MatrixError(
                403, Codes.FORBIDDEN, "Push notifications are turned off on this server (push_enabled is false)"
            )
        if not any(prefix.admits(parsed) for prefix in self.allowlist):
            raise MatrixError(
                403,
                Codes.FORBIDDEN,
                "This server does not send notifications to that push gateway: its URL is not under any prefix "
                "in the server's push_gateway_allowlist setting",
            )

    async def pushers(self, user_id: str) -> list[JsonDict]:
        """GET /pushers: the user's pushers in the spec's shape."""
        return [pusher_json(p) for p in await self.store.of_user(user_id)]

    # -- hooks: logout, device deletion, deactivation --------------------------------------------
    async def device_added(self, user_id: str, device_id: str) -> None:
        return None

    async def devices_removed(self, user_id: str, device_ids: list[str]) -> None:
        await self.store.delete_for_devices(user_id, device_ids)

    async def user_deactivated(self, user_id: str) -> None:
        await self.store.delete_for_user(user_id)

    # -- the admin API ----------------------------------------------------------------------------
    async def admin_list(self, user_id: str) -> list[JsonDict]:
        """A user's pushers with their ID and delivery state (Synapse's admin list, extended)."""
        await self._existing_local_user(user_id)
        return [admin_pusher_json(p) for p in await self.store.of_user(user_id)]

    async def admin_delete(self, user_id: str, pusher_id: int, actor: Actor) -> None:
        await self._existing_local_user(user_id)
        found = await self.store.get(pusher_id)
        if found is None or found.user_id != user_id or not await self.store.delete_by_id(user_id, pusher_id):
            raise MatrixError(404, Codes.NOT_FOUND, "The user has no pusher with that ID")
        # The pushkey is a device's routing token: the log keeps which pusher, not the token itself.
        details = {"pusher_id": pusher_id, "app_id": found.app_id, "device_id": found.device_id}
        await self.audit.record("admin.pusher_deleted", actor.user_id, user_id, actor.ip, actor.device, details)

    async def _existing_local_user(self, user_id: str) -> None:
        _, server = parse_user_id(user_id)
        if server != self.config.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Only local users can be administered here")
        if await self.accounts.get_user(user_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "User not found")


class NotificationService:
    """GET /notifications: the events that notified the user, newest first, with their read state."""

    MAX_LIMIT = 1000

    def __init__(self, store: NotificationStore, events: EventStore, serializer: EventSerializer) -> None:
        self.store = store
        self.events = events
        self.serializer = serializer

    async def page(self, requester: Requester, from_token: str | None, limit: int, only: str | None) -> JsonDict:
        if only not in (None, "", "highlight"):
            raise MatrixError(400, Codes.INVALID_PARAM, 'only must be "highlight" if given')
        upto = _from_token(from_token)
        limit = max(1, min(limit, self.MAX_LIMIT))
        rows = await self.store.notifications(
            requester.user_id, 0, upto, limit + 1, only_highlight=only == "highlight", newest_first=True
        )
        more, rows = len(rows) > limit, rows[:limit]
        found = await self.events.get_events([r.event_id for r in rows])
        evs = [found[r.event_id] for r in rows if r.event_id in found]
        shaped = {e["event_id"]: e for e in await self.serializer.serialize(evs, requester)}
        read = await self.store.read_upto(requester.user_id, [r.room_id for r in rows])
        out = []
        for r in rows:
            ev = shaped.get(r.event_id)
            if ev is None:
                continue
            ev.pop("room_id", None)
            actions: list[Any] = ["notify", {"set_tweak": "highlight"}] if r.highlight else ["notify"]
            out.append({"actions": actions, "event": ev, "read": is_read(r, read), "room_id": r.room_id, "ts": r.ts})
        body: JsonDict = {"notifications": out}
        if more and rows:
            body["next_token"] = str(rows[-1].stream)
        return body


def pusher_json(p: PusherRow) -> JsonDict:
    """A pusher as GET /pushers gives it (spec: `data` with its `url`)."""
    out: JsonDict = {
        "pushkey": p.pushkey,
        "kind": p.kind,
        "app_id": p.app_id,
        "app_display_name": p.app_display_name,
        "device_display_name": p.device_display_name,
        "lang": p.lang,
        "data": p.data,
    }
    if p.profile_tag is not None:
        out["profile_tag"] = p.profile_tag
    return out


def admin_pusher_json(p: PusherRow) -> JsonDict:
    """Synapse's admin fields plus what an operator needs to see a pusher's delivery state."""
    return {
        **pusher_json(p),
        "profile_tag": p.profile_tag,
        "id": p.id,
        "device_id": p.device_id,
        "pushkey_ts": p.pushkey_ts,
        "last_stream_ordering": p.last_stream,
        "failing_since": p.failing_since,
        "attempts": p.attempts,
        "next_attempt_ts": p.next_attempt_ts,
    }


def _key(body: JsonDict) -> tuple[str, str]:
    app_id, pushkey = body["app_id"], body["pushkey"]
    if not isinstance(app_id, str) or not isinstance(pushkey, str):
        raise MatrixError(400, Codes.INVALID_PARAM, "app_id and pushkey must be strings")
    if not app_id or len(app_id) > MAX_APP_ID_CHARS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"app_id must be 1 to {MAX_APP_ID_CHARS} characters")
    if not pushkey or len(pushkey.encode()) > MAX_PUSHKEY_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, f"pushkey must be 1 to {MAX_PUSHKEY_BYTES} bytes")
    return app_id, pushkey


def _text(body: JsonDict, name: str, max_chars: int) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be a string")
    if len(value) > max_chars:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be at most {max_chars} characters")
    return value


def _parse_url(url: str) -> SplitResult:
    """An absolute http(s) URL with a host and no user info, of unambiguous characters."""
    if len(url) > MAX_URL_CHARS or not set(url) <= _URL_CHARS:
        raise MatrixError(400, Codes.INVALID_PARAM, "'url' in data is not a valid URL")
    try:
        parsed = urlsplit(url)
        port = url_port(parsed)
    except ValueError:
        raise MatrixError(400, Codes.INVALID_PARAM, "'url' in data is not a valid URL") from None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname or port is None:
        raise MatrixError(400, Codes.INVALID_PARAM, "'url' in data must be an https (or http) URL with a host")
    if parsed.username is not None or "@" in parsed.netloc:
        raise MatrixError(400, Codes.INVALID_PARAM, "'url' in data must not contain user information")
    return parsed


def _from_token(token: str | None) -> int | None:
    """The `from` of GET /notifications: the stream position of the last entry of the previous page
    (the next page lists older ones)."""
    if token is None or token == "":
        return None
    if not (token.isascii() and token.isdigit() and len(token) <= 18):
        raise MatrixError(400, Codes.INVALID_PARAM, "from is not a token this server gave")
    return int(token) - 1


def _shown(kind: Any) -> str:
    return f'"{kind[:32]}"' if isinstance(kind, str) else "of that type"
