"""Periodic background jobs (audit retention, message retention, account expiry) in one process.

Every worker runs them; each job is idempotent, so several workers running one at once is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import structlog

log = structlog.get_logger(__name__)

Job = Callable[[], Awaitable[Any]]


class Every(NamedTuple):
    """Run `job` every `interval_s` seconds (first about a minute after start)."""

    name: str
    interval_s: float
    job: Job


class Jobs:
    def __init__(self, jobs: Sequence[Every]) -> None:
        self._jobs = tuple(jobs)
        self._tasks: list[asyncio.Task[None]] = []

    async def run_all(self) -> None:
        """Run every job once now (the CLI and tests use this)."""
        for name, _, job in self._jobs:
            await self._run(name, job)

    @staticmethod
    async def _run(name: str, job: Job) -> None:
        try:
            await job()
        except Exception:  # a failing job must not stop the others; it runs again later
            log.exception("job.failed", job=name)

    def start(self) -> None:
        for name, interval, job in self._jobs:
            self._tasks.append(asyncio.create_task(self._loop(name, interval, job), name=f"job:{name}"))

    async def _loop(self, name: str, interval: float, job: Job) -> None:
        await asyncio.sleep(min(interval, 60.0))  # let the server finish starting
        while True:
            await self._run(name, job)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
