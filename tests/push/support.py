"""Push gateway stand-ins and test helpers for push delivery.

The stand-ins are small ASGI apps served by uvicorn on 127.0.0.1 (a random port) in the test's own
event loop, behaving as the real gateways do in what the homeserver can observe (push.md §5, §6):

- `NtfyGateway`, like ntfy's Matrix gateway (server/server_matrix.go): reads only `devices[0]`; a
  pushkey that does not start with its base URL + "/" is answered 200 `{"rejected": [pushkey]}`;
  a body over 4,096 bytes is answered 413; it also answers the UnifiedPush discovery GET.
- `SygnalGateway`, like Sygnal: every device is looked up by app_id; an unknown one's pushkey is
  returned in `rejected`.

Both can be told to fail the next requests (`fail_next`, e.g. [503, 503]) and can be stopped and
started again on the same port (an unreachable gateway that comes back).

`add_pusher` inserts a pusher row directly, as POST /pushers/set will once it exists on main
(branch pushapi): the cursor starts at the current stream position (no backlog). After that branch
is merged, the tests can register through the API instead (same columns, same starting cursor).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from paigham.app import Server
from paigham.clock import now_ms
from paigham.storage.pushers_schema import pushers

NOTIFY_PATH = "/_matrix/push/v1/notify"
ASGIScope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class Gateway:
    """Common part: serve, record, scripted failures."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[dict[str, Any]] = []  # every notify body that arrived, in order
        self.accepted: list[dict[str, Any]] = []  # the notifications answered 200 and not rejected
        self.times: list[float] = []  # monotonic arrival time of each request
        self.fail_next: list[int] = []
        self.delay = 0.0  # seconds each notify request is held before its answer
        self.active = self.max_active = 0  # requests being answered now / at most at once
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + NOTIFY_PATH

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False, interface="asgi3")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    async def app(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            status, answer = self.answer(scope["method"], scope["path"], body)
        finally:
            self.active -= 1
        raw = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if path != NOTIFY_PATH:
            return 404, {"errcode": "M_UNRECOGNIZED"}
        if method == "GET":
            return 200, {"unifiedpush": {"gateway": "matrix"}}
        self.times.append(time.monotonic())
        try:
            notification = json.loads(body)["notification"]
        except (ValueError, KeyError, TypeError):
            return 400, {"errcode": "M_NOT_JSON"}
        self.requests.append(notification)
        if self.fail_next:
            return self.fail_next.pop(0), {"error": "scripted failure"}
        rejected = self.rejects(notification, len(body))
        if isinstance(rejected, int):
            return rejected, {"error": "refused"}
        if not rejected:
            self.accepted.append(notification)
        return 200, {"rejected": rejected}

    def rejects(self, notification: dict[str, Any], size: int) -> list[str] | int:
        raise NotImplementedError


class NtfyGateway(Gateway):
    """ntfy's Matrix gateway: one device (the first), pushkeys under its own base URL, ≤ 4,096 bytes."""

    def rejects(self, notification: dict[str, Any], size: int) -> list[str] | int:
        if size > 4096:
            return 413
        pushkey = notification["devices"][0]["pushkey"]
        return [] if pushkey.startswith(self.base_url + "/") else [pushkey]

    def topic(self, name: str) -> str:
        """A UnifiedPush endpoint on this ntfy (what the ntfy app hands Element X as pushkey)."""
        return f"{self.base_url}/{name}?up=1"


class SygnalGateway(Gateway):
    """Sygnal: apps configured by app_id; unknown app_id → rejected."""

    def __init__(self, app_ids: set[str]) -> None:
        super().__init__()
        self.app_ids = app_ids

    def rejects(self, notification: dict[str, Any], size: int) -> list[str] | int:
        return [d["pushkey"] for d in notification["devices"] if d["app_id"] not in self.app_ids]


async def add_pusher(
    server: Server,
    user_id: str,
    *,
    app_id: str,
    pushkey: str,
    url: str,
    device_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """A pusher as POST /pushers/set stores it (cursor at the current position); returns its id."""
    db = server.db
    pos = await db.current_position()
    async with db.write() as conn:
        result = await conn.execute(
            pushers.insert().values(
                user_id=user_id,
                device_id=device_id,
                kind="http",
                app_id=app_id,
                pushkey=pushkey,
                pushkey_ts=now_ms(),
                app_display_name="Element X",
                device_display_name="Phone",
                profile_tag=None,
                lang="en",
                data=json.dumps({**(data or {}), "url": url}),
                last_stream=pos,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])


async def pusher_rows(server: Server) -> dict[int, dict[str, Any]]:
    rows = await server.db.fetch("SELECT id, pushkey, last_stream, attempts, failing_since, last_badge FROM pushers")
    return {
        int(r[0]): {"pushkey": r[1], "last_stream": r[2], "attempts": r[3], "failing_since": r[4], "last_badge": r[5]}
        for r in rows
    }


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
