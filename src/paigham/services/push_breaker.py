"""Gateways that are down: one probe at a time instead of every pusher retrying on its own (issue 16,
"no retry storms").

Each pusher backs off on its own (1 s doubling to 1 h), so without more, 10,000 pushers of one dead
gateway still send it ~7 requests each in the first minute — 10,000 schedules of retries, each a claim,
a request and a write. A gateway whose requests fail `FAILURES_TO_OPEN` times in a row (no answer, a
5xx or a 429; any other answer shows it is up) is taken as down: its pushers are no longer tried. A
pusher that comes due meanwhile is *parked* — its failure recorded and its next attempt an hour away —
and one parked pusher at a time is let through as a probe, after 1 s, 2 s, 4 s … up to 1 h. When a probe
gets an answer the gateway is up again and every parked pusher is due at once.

Pure bookkeeping (times in ms are passed in); `PushDelivery` does the I/O. Per process: in a cluster
each worker probes on its own, and a pusher parked by a worker that stops is retried by the sweep when
its own next attempt comes, as it would be without the breaker.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

FAILURES_TO_OPEN = 3
FIRST_PROBE_MS = 1_000
MAX_PROBE_MS = 3_600_000
STUCK_MS = 120_000  # a probe neither answered nor failed this long after it started (deleted, refused…)
MAX_TRACKED = 1_000  # gateways with failures counted (the allowlist keeps them few)


def gateway_of(url: str) -> str:
    """The gateway a pusher URL names: scheme, host and port."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


@dataclass(slots=True)
class _Down:
    interval_ms: int
    probe_at_ms: int  # when the next probe may go (while probing: when it went)
    probe: int | None = None  # the pusher chosen as the probe (None: the first to ask)
    probing: bool = False
    parked: dict[int, None] = field(default_factory=dict)  # insertion-ordered set


class GatewayBreaker:
    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._down: dict[str, _Down] = {}

    @property
    def down(self) -> int:
        return len(self._down)

    def is_down(self, gateway: str) -> bool:
        return gateway in self._down

    def admits(self, gateway: str, pusher_id: int, now_ms: int) -> bool:
        """Whether `pusher_id` may send to `gateway` now: always while it is up; while it is down only the
        probe, once its time has come (the chosen one, or the first to ask if none was chosen)."""
        d = self._down.get(gateway)
        if d is None:
            return True
        if d.probing:
            return pusher_id == d.probe
        if now_ms >= d.probe_at_ms and d.probe in (None, pusher_id):
            d.probe, d.probing, d.probe_at_ms = pusher_id, True, now_ms
            d.parked.pop(pusher_id, None)
            return True
        return False

    def park(self, gateway: str, pusher_id: int) -> None:
        """`pusher_id` was held back: it waits for the gateway to answer a probe."""
        d = self._down.get(gateway)
        if d is not None and pusher_id != d.probe:
            d.parked[pusher_id] = None

    def answered(self, gateway: str) -> list[int]:
        """The gateway answered a request: it is up. Returns the pushers parked meanwhile, to wake."""
        self._failures.pop(gateway, None)
        d = self._down.pop(gateway, None)
        return list(d.parked) if d is not None else []

    def failed(self, gateway: str, pusher_id: int, now_ms: int) -> int | None:
        """A request to `gateway` got no usable answer. Returns when the next probe may go if this
        failure took the gateway down or was the probe's; None otherwise."""
        d = self._down.get(gateway)
        if d is None:
            if len(self._failures) >= MAX_TRACKED and gateway not in self._failures:
                self._failures.clear()
            n = self._failures[gateway] = self._failures.get(gateway, 0) + 1
            if n < FAILURES_TO_OPEN:
                return None
            del self._failures[gateway]
            d = self._down[gateway] = _Down(FIRST_PROBE_MS, now_ms + FIRST_PROBE_MS)
            return d.probe_at_ms
        if d.probing and pusher_id == d.probe:
            d.interval_ms = min(2 * d.interval_ms, MAX_PROBE_MS)
            d.probe, d.probing = None, False
            d.probe_at_ms = now_ms + d.interval_ms
            return d.probe_at_ms
        return None  # a request sent before the gateway was taken as down

    def choose_probe(self, gateway: str, now_ms: int) -> int | None:
        """At probe time: the parked pusher to wake as the probe. None if there is nothing to wake: the
        gateway is up, a probe is in flight (not yet `STUCK_MS`), or none is parked (then the first
        pusher to ask becomes the probe)."""
        d = self._down.get(gateway)
        if d is None or (d.probing and now_ms < d.probe_at_ms + STUCK_MS):
            return None
        d.probing = False
        d.probe = next(iter(d.parked), None)
        if d.probe is not None:
            del d.parked[d.probe]
        return d.probe
