"""A Push Gateway API stand-in (spec: Push Gateway API, POST /_matrix/push/v1/notify), in a process of its own.

It behaves like the real gateways the apps use (ntfy's Matrix gateway, Sygnal) where that matters to a
homeserver: one device per request, read from `devices[0]` (ntfy reads only the first), a body over
4,096 bytes refused with 413 (ntfy's limit), anything unparsable with 400, and otherwise either
`{"rejected": []}` (a working gateway) or a fixed error status such as 503 (a gateway that is down).
Every request is recorded as (receive time, event_id, pushkey, status): the receive time is taken
when the handler starts, before the body is read, with the same clock as the workloads (`perf_counter`,
CLOCK_MONOTONIC: the same in every process of the machine).

Why a process of its own: inside the load generator, the stand-in's handling of a message's 19 pushes
ran on the event loop that also reads the senders' answers, so a server that pushed quickly had its
send answers (and its later pushes' receive times) wait behind its own pushes — a delay the load
generator added, not the server, and one a slower server never paid (its pushes came after the
answer). The process writes each record as a JSON line to its stdout; `Gateway` reads them into
`pushes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_BODY = 4096  # ntfy's Matrix gateway refuses bigger notifications with 413
FLUSH_S = 0.05  # the stand-in's records reach the load generator within this

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
    """The load generator's handle on a stand-in process: `pushes` and `refused` fill as it reports."""

    port: int
    status: int = 200  # the answer to a well-formed request: 200 {"rejected": []}, or an error status
    pushes: list[Push] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # malformed / too large requests, by reason
    _proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return gateway_url(self.port)

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.gateway", str(self.port), str(self.status),
            cwd=str(Path(__file__).resolve().parent.parent), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"the gateway stand-in on port {self.port} did not start: {line!r}")
        self._reader = asyncio.create_task(self._read(self._proc.stdout))

    async def _read(self, out: asyncio.StreamReader) -> None:
        async for line in out:
            rec = json.loads(line)
            if rec[0] == "refused":
                self.refused[rec[1]] += 1
            else:
                self.pushes.append(Push(*rec))

    def cpu_seconds(self) -> float:
        """The stand-in process's CPU so far (user + system)."""
        if self._proc is None:
            return 0.0
        with open(f"/proc/{self._proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            await self._proc.wait()
            self._proc = None
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
            self._reader = None

    def between(self, t0: float, t1: float) -> list[Push]:
        return [p for p in self.pushes if t0 <= p.t < t1]


# -- the stand-in process ------------------------------------------------------------------------------------------------
async def _serve(port: int, status: int) -> None:
    import logging

    from aiohttp import web

    # A request the homeserver gave up on (it closed the connection: its own timeout) is logged by aiohttp
    # as an error of the stand-in, with a traceback each; it is none (nothing is recorded for it).
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    out: list[str] = []

    def record(*rec: object) -> None:
        out.append(json.dumps(rec) + "\n")

    async def notify(request: web.Request) -> web.Response:
        t = now()
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            record("refused", "too_large")
            return web.json_response({"error": "notification too large"}, status=413)
        try:
            notification = json.loads(raw)["notification"]
            device = notification["devices"][0]
            pushkey = device["pushkey"]
            event_id = notification.get("event_id")
            if not isinstance(pushkey, str) or not (event_id is None or isinstance(event_id, str)):
                raise TypeError(pushkey)
        except (ValueError, KeyError, IndexError, TypeError):
            record("refused", "malformed")
            return web.json_response({"error": "malformed notification"}, status=400)
        record(t, event_id, pushkey, status)
        if status != 200:
            return web.json_response({"error": "gateway unavailable"}, status=status)
        return web.json_response({"rejected": []})

    app = web.Application(client_max_size=MAX_BODY * 4)
    app.router.add_post(NOTIFY_PATH, notify)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), FLUSH_S)
        if out:
            sys.stdout.write("".join(out))
            sys.stdout.flush()
            out.clear()
    await runner.cleanup()


def main() -> None:
    port, status = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop

        uvloop.run(_serve(port, status))
    except ImportError:
        asyncio.run(_serve(port, status))


if __name__ == "__main__":
    main()
