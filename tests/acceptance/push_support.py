"""A push gateway stand-in for the acceptance tests: tests/push's ntfy-like gateway (its Matrix
gateway at /_matrix/push/v1/notify: only devices[0] is read, a pushkey outside its base URL is
rejected, 413 over 4,096 bytes), served by uvicorn from a thread of its own with its own event loop,
so that it answers while a test's loop drives nio clients or a node script runs, and lives as long
as the session's servers.

Its address is fixed before the first server starts (the servers' `push_gateway_allowlist` names it);
the gateway itself starts with the first test that asks for it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from typing import Any

from acc_support import find_free_port
from tests.push.support import NOTIFY_PATH, NtfyGateway

START_TIMEOUT_S = 10.0


class GatewayThread:
    def __init__(self, port: int) -> None:
        self.gateway = NtfyGateway()
        self.gateway.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"

    @property
    def url(self) -> str:
        """What a pusher's data.url names: the gateway's notify endpoint."""
        return self.base_url + NOTIFY_PATH

    def new_pushkey(self) -> str:
        """A UnifiedPush endpoint on this ntfy, as the ntfy app hands it to Element X (`<base>/up…?up=1`)."""
        return self.gateway.topic("up" + secrets.token_hex(6))

    def ensure_started(self) -> GatewayThread:
        with self._lock:
            if self._thread is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="push-gateway", daemon=True)
                thread.start()
                asyncio.run_coroutine_threadsafe(self.gateway.start(), loop).result(START_TIMEOUT_S)
                self._loop, self._thread = loop, thread
        return self

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                asyncio.run_coroutine_threadsafe(self.gateway.stop(), loop).result(START_TIMEOUT_S)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(START_TIMEOUT_S)
                loop.close()
                self._loop = self._thread = None

    # -- what arrived (the lists are appended to by the gateway's thread; copies are read) --------
    def requests_for(self, event_id: str) -> list[dict[str, Any]]:
        """Every notify request that arrived for this event (retries included)."""
        return [n for n in list(self.gateway.requests) if n.get("event_id") == event_id]

    def accepted_for(self, event_id: str) -> list[dict[str, Any]]:
        return [n for n in list(self.gateway.accepted) if n.get("event_id") == event_id]

    def requests_to(self, pushkey: str) -> list[dict[str, Any]]:
        return [n for n in list(self.gateway.requests) if n["devices"][0]["pushkey"] == pushkey]

    async def wait_for(self, event_id: str, timeout: float = 20.0, settle: float = 1.0) -> list[dict[str, Any]]:
        """The requests for `event_id` once one has arrived and `settle` seconds passed without
        another (so a duplicate or a retry would be seen)."""
        deadline = time.monotonic() + timeout
        while not self.requests_for(event_id):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the push gateway received no notify for {event_id} within {timeout}s; "
                    f"it received {len(self.gateway.requests)} request(s): {list(self.gateway.requests)[-5:]}"
                )
            await asyncio.sleep(0.05)
        await asyncio.sleep(settle)
        return self.requests_for(event_id)

    def wait_for_sync(self, event_id: str, timeout: float = 20.0, settle: float = 1.0) -> list[dict[str, Any]]:
        return asyncio.run(self.wait_for(event_id, timeout, settle))


_gateway: GatewayThread | None = None


def session_gateway() -> GatewayThread:
    """The session's gateway (not started yet): on PAIGHAM_ACCEPTANCE_PUSH_PORT if set (so that an
    external server's allowlist can name it), else on a free port."""
    global _gateway
    if _gateway is None:
        port = os.environ.get("PAIGHAM_ACCEPTANCE_PUSH_PORT")
        _gateway = GatewayThread(int(port) if port else find_free_port())
    return _gateway


def stop_session_gateway() -> None:
    if _gateway is not None:
        _gateway.stop()


def server_push_env(environ: dict[str, str]) -> dict[str, str]:
    """The push settings a started server gets: the gateway's notify URL added to
    PAIGHAM_PUSH_GATEWAY_ALLOWLIST and 127.0.0.0/8 to PAIGHAM_IP_RANGE_WHITELIST (the gateway is on
    loopback, which the outbound policy otherwise refuses), both comma-separated and kept with whatever
    the environment already sets."""

    def joined(name: str, value: str) -> str:
        present = [p.strip() for p in environ.get(name, "").split(",") if p.strip()]
        return ",".join(present if value in present else [*present, value])

    return {
        "PAIGHAM_PUSH_GATEWAY_ALLOWLIST": joined("PAIGHAM_PUSH_GATEWAY_ALLOWLIST", session_gateway().url),
        "PAIGHAM_IP_RANGE_WHITELIST": joined("PAIGHAM_IP_RANGE_WHITELIST", "127.0.0.0/8"),
    }
