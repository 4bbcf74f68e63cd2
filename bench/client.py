"""A minimal Matrix Client-Server API client for load generation (aiohttp). It speaks only the
public C-S API (plus the shared-secret registration both servers offer), so the same code drives
Paigham and Synapse."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 500}}})
# Simplified Sliding Sync (MSC4186) in the unstable shape Element X and Synapse 1.163 speak.
SS_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


class MatrixError(Exception):
    def __init__(self, status: int, body: Any, what: str) -> None:
        super().__init__(f"{what} -> {status} {str(body)[:300]}")
        self.status = status
        self.body = body


@dataclass
class Counters:
    requests: int = 0
    rate_limited: int = 0
    errors: int = 0
    reconnects: int = 0


COUNTERS = Counters()


def new_session(limit: int = 0) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


class Client:
    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str = "", user_id: str = "") -> None:
        self.http = http
        self.base = base_url
        self.token = token
        self.user_id = user_id
        self.device_id = ""
        self._txn = 0

    async def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
                      timeout: float = 120) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        for attempt in range(50):
            COUNTERS.requests += 1
            try:
                async with self.http.request(method, self.base + path, json=body, params=params, headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    data = await r.read()
                    status = r.status
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError, aiohttp.ClientOSError):
                # A keep-alive connection the server closed as it was reused (as any HTTP client does).
                COUNTERS.reconnects += 1
                if attempt >= 3:
                    raise
                continue
            out = json.loads(data) if data else {}
            if status == 429:  # should not happen: rate limits are raised on both servers
                COUNTERS.rate_limited += 1
                await asyncio.sleep(out.get("retry_after_ms", 100) / 1000)
                continue
            if status >= 400:
                COUNTERS.errors += 1
                raise MatrixError(status, out, f"{method} {path}")
            return out
        raise MatrixError(429, {}, f"{method} {path} (rate limited 50 times)")

    async def register(self, secret: str, username: str, password: str) -> None:
        """Shared-secret registration (GET a nonce, POST the HMAC) — offered by Paigham and Synapse."""
        nonce = (await self.request("GET", "/_synapse/admin/v1/register"))["nonce"]
        mac = hmac.new(secret.encode(), b"\x00".join(x.encode() for x in (nonce, username, password, "notadmin")),
                       hashlib.sha1).hexdigest()
        out = await self.request("POST", "/_synapse/admin/v1/register",
                                 {"nonce": nonce, "username": username, "password": password, "admin": False,
                                  "mac": mac})
        self.token, self.user_id, self.device_id = out["access_token"], out["user_id"], out.get("device_id", "")

    async def login(self, username: str, password: str) -> Client:
        """A new device of the same user (its own access token)."""
        out = await self.request("POST", "/_matrix/client/v3/login",
                                 {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": username},
                                  "password": password})
        c = Client(self.http, self.base, out["access_token"], out["user_id"])
        c.device_id = out.get("device_id", "")
        return c

    async def create_room(self, name: str | None = None) -> str:
        body: dict[str, Any] = {"preset": "public_chat"}
        if name:
            body["name"] = name
        return str((await self.request("POST", "/_matrix/client/v3/createRoom", body))["room_id"])

    async def join(self, room_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {})

    async def send(self, room_id: str, text: str) -> str:
        self._txn += 1
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/b{time.time_ns()}.{self._txn}"
        return str((await self.request("PUT", path, {"msgtype": "m.text", "body": text}))["event_id"])

    async def set_pusher(self, app_id: str, pushkey: str, url: str | None, fmt: str = "event_id_only") -> None:
        """POST /pushers/set: an HTTP pusher at `url` (format event_id_only), or with `url` None its deletion."""
        body: dict[str, Any] = {"kind": None, "app_id": app_id, "pushkey": pushkey}
        if url is not None:
            body.update(kind="http", app_display_name="bench", device_display_name="bench", lang="en",
                        data={"url": url, "format": fmt})
        await self.request("POST", "/_matrix/client/v3/pushers/set", body)

    async def sync(self, since: str | None = None, timeout_ms: int = 0, flt: str | None = SYNC_FILTER,
                   set_presence: str | None = None, full_state: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {"timeout": str(timeout_ms)}
        if full_state:
            params["full_state"] = "true"
        if flt is not None:
            params["filter"] = flt
        if since:
            params["since"] = since
        if set_presence:
            params["set_presence"] = set_presence
        out: dict[str, Any] = await self.request("GET", "/_matrix/client/v3/sync", params=params,
                                                 timeout=timeout_ms / 1000 + 120)
        return out

    async def ss_sync(self, body: dict[str, Any], pos: str | None = None, timeout_ms: int = 0) -> dict[str, Any]:
        """One sliding-sync request: `pos` and `timeout` in the query string, the rest in the JSON body."""
        params: dict[str, Any] = {"timeout": str(timeout_ms)}
        if pos:
            params["pos"] = pos
        out: dict[str, Any] = await self.request("POST", SS_PATH, body, params=params,
                                                 timeout=timeout_ms / 1000 + 120)
        return out


def timeline_events(body: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(room_id, event, limited) for each timeline event of joined rooms in a /sync response."""
    out = []
    for room_id, room in body.get("rooms", {}).get("join", {}).items():
        tl = room.get("timeline", {})
        for ev in tl.get("events", []):
            out.append((room_id, ev, bool(tl.get("limited"))))
    return out


def ss_timeline_events(body: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(room_id, event, limited) for each timeline event of the rooms in a sliding-sync response."""
    out = []
    for room_id, room in body.get("rooms", {}).items():
        for ev in room.get("timeline", []):
            out.append((room_id, ev, bool(room.get("limited"))))
    return out


async def bounded_gather(limit: int, coros: list[Any]) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))
