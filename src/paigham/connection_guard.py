"""Connections that never finish a request are cut off, and no address can take every socket.

uvicorn arms its keep-alive timer only after a response, so a client that connects and sends half a
request (or nothing) holds a socket and a file descriptor for ever; about a thousand of them exhaust
the process's file limit and the server stops answering anyone. `GuardedProtocol` is uvicorn's
httptools protocol with, per connection:

- a deadline for the request line and headers (`http_header_timeout_s`, from the connection's start
  or the request's first byte);
- an idle deadline while the body arrives (`http_body_idle_timeout_s` without a byte: slow uploads
  on field links keep going, a stalled one is cut);
- a cap on open connections in total (`http_max_connections`, 503) and per client address
  (`http_max_connections_per_ip`, 429), each refused with a Matrix error before any request is read.
  Addresses in `http_connection_exempt` (a reverse proxy on the same host, which carries many users)
  count only against the total.

The refused and the expired are logged at most once per 10 s with a count, as are the event loop's
own errors (an `accept()` failing with "Too many open files" would otherwise log on every retry).
Start-up raises the soft file limit to the hard one (`raise_file_limit`). The settings come from
`configure(cfg)` in this process, or from the configuration a cluster parent puts in the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import time
from collections import Counter
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from paigham.config import Config

log = logging.getLogger("paigham.connections")
LOG_EVERY_S = 10.0
RESERVED_FDS = 64  # kept free of connections: database, media files, NATS, logs


class Limits(msgspec.Struct, frozen=True):
    header_timeout_s: float = 30.0
    body_idle_timeout_s: float = 60.0
    max_connections: int = 10_000
    max_per_ip: int = 200
    exempt: frozenset[str] = frozenset({"127.0.0.1", "::1"})

    @classmethod
    def of(cls, cfg: Config) -> Limits:
        return cls(
            header_timeout_s=cfg.http_header_timeout_s,
            body_idle_timeout_s=cfg.http_body_idle_timeout_s,
            max_connections=cfg.http_max_connections,
            max_per_ip=cfg.http_max_connections_per_ip,
            exempt=frozenset(a.strip() for a in cfg.http_connection_exempt.split(",") if a.strip()),
        )


_limits: Limits | None = None


def configure(cfg: Config) -> None:
    """The limits for connections accepted by this process (a cluster's workers read the environment)."""
    global _limits
    _limits = _within_file_limit(Limits.of(cfg))


def _within_file_limit(limits: Limits) -> Limits:
    """The total never reaches the file limit: past it, accept() fails and nobody gets in."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return limits
    room = max(1, soft - RESERVED_FDS)
    if limits.max_connections and limits.max_connections <= room:
        return limits
    return msgspec.structs.replace(limits, max_connections=room)


def current_limits() -> Limits:
    global _limits
    if _limits is None:
        from paigham.cluster import CONFIG_ENV  # set by the cluster parent for its workers

        raw = os.environ.get(CONFIG_ENV)
        _limits = _within_file_limit(Limits.of(msgspec.json.decode(raw, type=Config)) if raw else Limits())
    return _limits


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _Throttled:
    """Logs each kind of event at most once per LOG_EVERY_S, with how many happened meanwhile."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._count: Counter[str] = Counter()

    def note(self, kind: str, message: str, **fields: Any) -> None:
        self._count[kind] += 1
        now = time.monotonic()
        if now - self._last.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._last[kind] = now
            count, self._count[kind] = self._count[kind], 0
            log.warning("%s (%d in the last %.0f s) %s", message, count, LOG_EVERY_S, fields or "")


_throttled = _Throttled()
_per_ip: Counter[str] = Counter()
_loops_guarded: set[int] = set()


def _guard_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Once per loop: the loop's own error reports (accept() failing, …) go through the throttle."""
    if id(loop) in _loops_guarded:
        return
    _loops_guarded.add(id(loop))

    def handler(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        kind = f"loop:{context.get('message')}:{type(exc).__name__ if exc else ''}"
        _throttled.note(kind, f"event loop: {context.get('message')}", error=repr(exc) if exc else None)

    loop.set_exception_handler(handler)


def _refusal(status: int, errcode: str, error: str, retry_after_s: int) -> bytes:
    body = json.dumps({"errcode": errcode, "error": error, "retry_after_ms": retry_after_s * 1000}).encode()
    reason = {429: b"Too Many Requests", 503: b"Service Unavailable"}[status]
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"retry-after: %d\r\nconnection: close\r\n\r\n" % (status, reason, len(body), retry_after_s)
    )
    return head + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request deadlines and connection caps (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = current_limits()
        self._timer: asyncio.TimerHandle | None = None
        self._counted_ip: str | None = None
        _guard_loop_errors(self.loop)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ip = self.client[0] if self.client else ""
        refusal = self._refusal_for(ip)
        if refusal is not None:
            transport.write(refusal)
            transport.close()
            return
        if ip not in self.limits.exempt:
            _per_ip[ip] += 1
            self._counted_ip = ip
        self._arm(self.limits.header_timeout_s, "header")

    def _refusal_for(self, ip: str) -> bytes | None:
        total = self.limits.max_connections
        if total and len(self.connections) > total:
            _throttled.note("total", "connection refused: the server holds its maximum", limit=total)
            return _refusal(503, "M_UNKNOWN", "The server has too many open connections; try again shortly", 5)
        if self.limits.max_per_ip and ip not in self.limits.exempt and _per_ip[ip] >= self.limits.max_per_ip:
            _throttled.note("per-ip", "connection refused: too many from one address", address=ip)
            return _refusal(429, "M_LIMIT_EXCEEDED", "Too many open connections from your address", 5)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted_ip is not None:
            _per_ip[self._counted_ip] -= 1
            if _per_ip[self._counted_ip] <= 0:
                del _per_ip[self._counted_ip]
            self._counted_ip = None
        super().connection_lost(exc)

    # -- deadlines ---------------------------------------------------------------------------------
    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        if seconds > 0:
            self._timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str) -> None:
        self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            _throttled.note(f"expired:{what}", f"connection closed: the request's {what} did not arrive in time")
            if what == "header":
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # a further request on a kept-alive connection
            self._arm(self.limits.header_timeout_s, "header")

    def on_headers_complete(self) -> None:
        self._arm(self.limits.body_idle_timeout_s, "body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm(self.limits.body_idle_timeout_s, "body")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
