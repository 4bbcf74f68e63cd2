"""Operations endpoints beside /health: readiness (database and bus reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import ok
from paigham.bus.base import Bus
from paigham.domain.stored_event import StoredEvent
from paigham.metrics import events_committed, metrics_endpoint
from paigham.storage.database import Database

READY_TIMEOUT_S = 2.0


def routes(db: Database, bus: Bus) -> list[Route]:
    async def ready(_: Request) -> Response:
        """GET /ready: 200 when this worker can serve (database answers, bus connected), else 503."""
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(READY_TIMEOUT_S), db.read() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["bus"] = "ok" if bus.is_ready() else "unavailable"
        healthy = all(v == "ok" for v in checks.values())
        return ok({"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503)

    return [
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]


async def count_events(evs: list[StoredEvent]) -> None:
    """Commit hook of the event writer: the events-persisted counter."""
    events_committed(len(evs))
