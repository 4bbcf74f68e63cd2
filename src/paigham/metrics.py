"""Prometheus metrics: request latency per route template, waiting /sync requests, events persisted.

One process: `/metrics` renders this process's registry. Several workers sharing one socket
(`paigham serve --workers N`): the supervisor sets PROMETHEUS_MULTIPROC_DIR before the workers
start, every worker writes its samples to files there, and `/metrics` (whichever worker answers)
adds up all workers. Separate processes on their own ports each serve their own `/metrics`.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import os
import re
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_LATENCY = Histogram(
    "paigham_http_request_duration_seconds",
    "Time from request start to the end of the response, by route template (long-polls included).",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SYNC_WAITERS = Gauge(
    "paigham_sync_waiters",
    "/sync requests currently long-polling for news.",
    multiprocess_mode="livesum",
)
SYNC_HELD = Counter(
    "paigham_sync_held",
    "Long-polls (/sync, sliding sync) whose news, only a big room's membership changes, was held.",
)
EVENTS_PERSISTED = Counter("paigham_events_persisted", "Room events committed to the database.")
GC_PAUSE = Histogram(
    "paigham_gc_pause_seconds",
    "Time the process stood still in Python's cyclic garbage collector.",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
# Push delivery (services/push_delivery.py): one request per (notification or badge update, pusher).
HTTP_COMPRESSED = Counter(
    "paigham_http_compressed_bytes",
    "Bytes of compressed answers (api/compression.py): before (`raw`) and after (`sent`), per coding.",
    ["coding", "size"],
)
PUSH_SENT = Counter("paigham_push_sent", "Requests a push gateway accepted (200), badge-only updates included.")
PUSH_FAILED = Counter(
    "paigham_push_failed",
    "Requests to push gateways that failed and will be retried: an HTTP error status, or no answer.",
    ["reason"],  # "http_<status>", "unreachable", or "held" (not sent: the gateway is down, see push_breaker)
)
PUSH_REJECTED = Counter("paigham_push_rejected", "Pushkeys a gateway rejected (their pusher was removed).")
PUSH_REFUSED = Counter(
    "paigham_push_refused", "Notifications not sent because the pusher's URL is no longer in push_gateway_allowlist."
)
PUSH_GIVEN_UP = Counter("paigham_push_given_up", "Notifications skipped after their gateway failed for 24 hours.")
# Delayed events (services/delayed_events.py), counted by the worker that sent or refused them.
DELAYED_SENT = Counter("paigham_delayed_events_sent", "Delayed events sent (at their time or by the send action).")
DELAYED_FAILED = Counter("paigham_delayed_events_failed", "Delayed events refused when they came due.")
PUSH_QUEUE_DEPTH = Gauge(
    "paigham_push_queue_depth",
    "Pushers with work waiting for (or held by) a delivery worker of this process.",
    multiprocess_mode="livesum",
)
PUSH_FAILING = Gauge(
    "paigham_push_pushers_failing", "Pushers in backoff after a failed request (all workers).", multiprocess_mode="max"
)
PUSH_GATEWAYS_DOWN = Gauge(
    "paigham_push_gateways_down",
    "Push gateways this process takes as down: their pushers wait for one probe to get an answer.",
    multiprocess_mode="livesum",
)
PUSH_LATENCY = Histogram(
    "paigham_push_delivery_seconds",
    "From the event's origin_server_ts to the gateway's 200.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)


# The collector's thresholds after start-up: young collections as CPython's default (every 700 net
# allocations), the middle generation every 50 of them (default 10) and the oldest after 100 of those
# (default 10). Under load the objects of the requests in flight survive the young collections and
# filled the older generations: 16-17 full collections of 50-80 ms each and ~180 middle ones of ~4 ms
# in a 20 s throughput run, collecting nothing (docs/decisions.md).
GC_THRESHOLDS = (700, 50, 100)


def settle_garbage_collector() -> None:
    """After start-up: move everything allocated so far (modules, routes, compiled rules) out of the
    collector's reach. Left in, each full collection walked them all — 70-90 ms with the whole
    server loaded, during which no request moved (measured; docs/decisions.md). Then the thresholds
    (`GC_THRESHOLDS`). Also times every collection into `paigham_gc_pause_seconds`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    if _time_collection not in gc.callbacks:
        gc.callbacks.append(_time_collection)


_collection_started = 0.0


def _time_collection(phase: str, info: dict[str, Any]) -> None:
    global _collection_started
    if phase == "start":
        _collection_started = time.perf_counter()
    else:
        GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - _collection_started)


def events_committed(count: int) -> None:
    EVENTS_PERSISTED.inc(count)


class MetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request and labels it with the matched route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_LATENCY.labels(scope["method"], template, str(status)).observe(time.perf_counter() - start)


_PID_FILE = re.compile(r"_(\d+)\.db$")


def _forget_dead_workers(path: str) -> None:
    """Drop live-gauge files of workers that died without cleaning up (kill -9, OOM)."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        m = _PID_FILE.search(name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
        except PermissionError:
            pass


def render() -> tuple[bytes, str]:
    path = os.environ.get(MULTIPROC_ENV)
    registry: Any = REGISTRY
    if path:
        from prometheus_client import multiprocess

        _forget_dead_workers(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def metrics_endpoint(_: Request) -> Response:
    body, content_type = render()
    return Response(body, media_type=content_type)
