"""Server memory: the resident memory of each workload (peak and steady), and the `memory` workload — what one
more open connection and one more queued message cost. Measured from outside, as everything else
(`VmRSS` and `VmHWM` of /proc/<pid>/status)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.client import Client, bounded_gather
from bench.servers import Server

if TYPE_CHECKING:
    from bench.workloads import Run

SAMPLE_EVERY_S = 0.25


@dataclass
class Sizes:
    """The `memory` workload's sizes (kept here, not in workloads.Scale)."""

    connections: int = 2000  # idle TCP connections held at once
    devices: int = 10  # the recipient's devices, none syncing
    queued: int = 10_000  # to-device messages queued for them in all


def sizes(run: Run) -> Sizes:
    """Smoke sizes when the run is at `--quick` scale."""
    return Sizes(connections=200, devices=3, queued=300) if run.scale == type(run.scale).quick() else Sizes()


def reset_peak(server: Server) -> bool:
    """Set each process's peak (`VmHWM`) back to its current RSS (Linux ≥ 4.0, our own children): a
    workload's peak is then exact, however briefly it lasted (an Argon2id hash holds 64 MiB for ~50 ms,
    less than a sampling interval)."""
    try:
        for pid in server.pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Watch:
    """RSS sampled every `SAMPLE_EVERY_S` during one workload."""

    server: Server
    measuring: Callable[[], bool] = lambda: False
    samples: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)  # those taken in the workload's measured window
    exact_peak: bool = False

    def sample(self) -> None:
        with contextlib.suppress(OSError):  # (the server may be restarting)
            rss = self.server.rss_mb()
            self.samples.append(rss)
            if self.measuring():
                self.measured.append(rss)

    def figures(self) -> dict[str, Any]:
        xs = self.samples or [float("nan")]
        peak = max(xs)
        if self.exact_peak:
            with contextlib.suppress(OSError):
                peak = max(peak, self.server.peak_rss_mb())
        # "steady": the median sample of the measured window (sending and draining, not the set-up's
        # password hashing), or of the whole workload where it has none.
        return {"rss_start_mb": xs[0], "rss_steady_mb": statistics.median(self.measured or xs),
                "rss_peak_measured_mb": max(self.measured or xs), "rss_peak_mb": peak, "rss_end_mb": xs[-1],
                "rss_steady_all_mb": statistics.median(xs), "samples": len(self.samples),
                "measured_samples": len(self.measured), "peak_exact": self.exact_peak}


@contextlib.asynccontextmanager
async def watch(server: Server, measuring: Callable[[], bool] = lambda: False) -> AsyncIterator[Watch]:
    """`async with watch(server, run_is_measuring) as w: ...` then `w.figures()`: RSS at the start, steady,
    peak, end."""
    w = Watch(server, measuring, exact_peak=reset_peak(server))
    w.sample()

    async def loop() -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            w.sample()

    task = asyncio.create_task(loop())
    try:
        yield w
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        w.sample()


def run_peak(out: dict[str, Any], server: Server) -> float:
    """The run's peak RSS: the highest of every workload's peak and the process's own high-water mark
    (which `reset_peak` moves at each workload's start)."""
    peaks = [v["memory"]["rss_peak_mb"] for v in out.values() if isinstance(v, dict) and "memory" in v]
    return max([server.peak_rss_mb(), out.get("rss_setup_peak_mb", 0.0), *peaks])


# -- the `memory` workload -----------------------------------------------------------------------------------------
async def _settled_rss(server: Server, seconds: float = 2.0) -> float:
    await asyncio.sleep(seconds)
    return server.rss_mb()


async def _idle_connections(run: Run) -> dict[str, Any]:
    """`Sizes.connections` TCP connections opened and held without a request (as a client between requests,
    or a slow one): server RSS and sockets before and with them open. Both servers keep such a connection
    for at least 30 s (Paigham's header deadline, `http_header_timeout_s`)."""
    n = sizes(run).connections
    host, port = "127.0.0.1", run.server.port
    rss_before = await _settled_rss(run.server)
    sockets_before = run.server.sockets()
    writers: list[asyncio.StreamWriter] = []
    t0 = time.perf_counter()
    try:
        for batch in range(0, n, 100):
            opened = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(min(100, n - batch))))
            writers.extend(w for _, w in opened)
        deadline = time.monotonic() + 20  # until the server has accepted them all
        while time.monotonic() < deadline and run.server.sockets() - sockets_before < len(writers):
            await asyncio.sleep(0.1)
        open_s = time.perf_counter() - t0
        rss_held = await _settled_rss(run.server, 1.0)
        held = run.server.sockets() - sockets_before
    finally:
        for w in writers:
            w.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    return {"connections": len(writers), "held": held, "open_s": open_s, "rss_before_mb": rss_before,
            "rss_held_mb": rss_held, "kb_per_connection": (rss_held - rss_before) * 1024 / max(1, held)}


def _olm_like(i: int) -> dict[str, Any]:
    """A to-device payload of the size an Olm-encrypted room key has (~700 bytes)."""
    body = secrets.token_urlsafe(480)
    return {"algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": secrets.token_urlsafe(32),
            "ciphertext": {f"recipientkey{i % 7}": {"type": 0, "body": body}}}


async def _queued_to_device(run: Run) -> dict[str, Any]:
    """Messages a server holds for a device that is not syncing: one sender sends to-device messages to
    all `Sizes.devices` devices of a recipient (`"*"`), `Sizes.queued` in all, while no device syncs; server
    RSS before and after (memory per queued message), then every device drains its queue by /sync."""
    size = sizes(run)
    sender, recipient = await run.users("mq_", 2)
    devices = [recipient, *[await recipient.login("mq_1", "pw-mq_1") for _ in range(size.devices - 1)]]
    sinces = await bounded_gather(8, [d.sync() for d in devices])
    rss_before = await _settled_rss(run.server)
    requests = size.queued // len(devices)

    async def send(i: int) -> None:
        path = f"/_matrix/client/v3/sendToDevice/m.room.encrypted/mq{time.time_ns()}.{i}"
        await sender.request("PUT", path, {"messages": {recipient.user_id: {"*": _olm_like(i)}}})

    t0 = time.perf_counter()
    await bounded_gather(16, [send(i) for i in range(requests)])
    send_s = time.perf_counter() - t0
    rss_queued = await _settled_rss(run.server)
    queued = requests * len(devices)

    async def drain(d: Client, since: str) -> int:
        got = 0
        for _ in range(requests // 50 + 10):  # ≥ 100 per /sync on both servers
            body = await d.sync(since)
            since = body["next_batch"]
            events = body.get("to_device", {}).get("events", [])
            got += len(events)
            if not events:
                break
        return got

    t0 = time.perf_counter()
    received = await bounded_gather(8, [drain(d, b["next_batch"]) for d, b in zip(devices, sinces, strict=True)])
    drain_s = time.perf_counter() - t0
    rss_drained = await _settled_rss(run.server)
    return {"devices": len(devices), "queued": queued, "received": sum(received), "send_s": send_s,
            "send_per_s": requests / send_s, "drain_s": drain_s, "rss_before_mb": rss_before,
            "rss_queued_mb": rss_queued, "rss_drained_mb": rss_drained,
            "bytes_per_message": (rss_queued - rss_before) * 2**20 / max(1, queued)}


async def w_memory(run: Run) -> dict[str, Any]:
    """What one more connection and one more queued message cost in server memory (long-polls and sliding-sync
    connections are measured by `idle_syncs` and `sliding_sync`)."""
    out: dict[str, Any] = {}
    for part, fn in (("connections", _idle_connections), ("to_device", _queued_to_device)):
        run.log(f"  {run.server.name}: memory {part} ...")
        out[part] = await fn(run)
    return out
