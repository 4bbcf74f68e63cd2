"""Operations endpoints beside /health: readiness (database and bus reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import ok
from paigham.domain.stored_event import StoredEvent
from paigham.metrics import events_committed, metrics_endpoint

READY_TIMEOUT_S = 2.0


def routes(ping_database: Callable[[], Awaitable[None]], bus_ready: Callable[[], bool]) -> list[Route]:
    """`ping_database` raises when the database does not answer; `bus_ready` says whether the bus is connected."""

    async def ready(_: Request) -> Response:
        """GET /ready: 200 when this worker can serve (database answers, bus connected), else 503."""
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await ping_database()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["bus"] = "ok" if bus_ready() else "unavailable"
        healthy = all(v == "ok" for v in checks.values())
        return ok({"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503)

    return [
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]


async def count_events(evs: list[StoredEvent]) -> None:
    """Commit hook of the event writer: the events-persisted counter."""
    events_committed(len(evs))
