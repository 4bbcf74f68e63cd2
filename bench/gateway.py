"""A Push Gateway API stand-in (spec: Push Gateway API, POST /_matrix/push/v1/notify) in the bench process.

It behaves like the real gateways the apps use (ntfy's Matrix gateway, Sygnal) where that matters to a
homeserver: one device per request, read from `devices[0]` (ntfy reads only the first), a body over
4,096 bytes refused with 413 (ntfy's limit), anything unparsable with 400, and otherwise either
`{"rejected": []}` (a working gateway) or a fixed error status such as 503 (a gateway that is down).
Every request is recorded as (receive time, event_id, pushkey, status): the receive time is taken
when the handler starts, before the body is read, with the same clock as the workloads (`perf_counter`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_BODY = 4096  # ntfy's Matrix gateway refuses bigger notifications with 413

now = time.perf_counter


def gateway_url(port: int) -> str:
    return f"http://127.0.0.1:{port}{NOTIFY_PATH}"


@dataclass
class Push:
    t: float
    event_id: str | None  # None: a counts-only (badge) update
    pushkey: str
    status: int


@dataclass
class Gateway:
    port: int
    status: int = 200  # the answer to a well-formed request: 200 {"rejected": []}, or an error status
    pushes: list[Push] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # malformed / too large requests, by reason
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return gateway_url(self.port)

    async def _notify(self, request: web.Request) -> web.Response:
        t = now()
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            self.refused["too_large"] += 1
            return web.json_response({"error": "notification too large"}, status=413)
        try:
            notification = json.loads(raw)["notification"]
            device = notification["devices"][0]
            pushkey = device["pushkey"]
            event_id = notification.get("event_id")
            if not isinstance(pushkey, str) or not (event_id is None or isinstance(event_id, str)):
                raise TypeError(pushkey)
        except (ValueError, KeyError, IndexError, TypeError):
            self.refused["malformed"] += 1
            return web.json_response({"error": "malformed notification"}, status=400)
        self.pushes.append(Push(t, event_id, pushkey, self.status))
        if self.status != 200:
            return web.json_response({"error": "gateway unavailable"}, status=self.status)
        return web.json_response({"rejected": []})

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY * 4)
        app.router.add_post(NOTIFY_PATH, self._notify)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def between(self, t0: float, t1: float) -> list[Push]:
        return [p for p in self.pushes if t0 <= p.t < t1]
