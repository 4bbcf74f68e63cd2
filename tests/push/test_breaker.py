"""The per-gateway breaker (services/push_breaker.py): when a gateway is taken as down, who may send,
who is parked, when probes go, and what wakes the parked pushers."""

from __future__ import annotations

from paigham.services.push_breaker import (
    FAILURES_TO_OPEN,
    FIRST_PROBE_MS,
    MAX_PROBE_MS,
    STUCK_MS,
    GatewayBreaker,
    gateway_of,
)

GW = "https://ntfy.ministry.example"


def test_gateway_is_scheme_host_and_port() -> None:
    assert gateway_of("https://NTFY.ministry.example/_matrix/push/v1/notify") == GW
    assert gateway_of("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080"


def test_failures_in_a_row_take_it_down_an_answer_resets_the_count() -> None:
    b = GatewayBreaker()
    for _ in range(FAILURES_TO_OPEN - 1):
        assert b.failed(GW, 1, 0) is None
    b.answered(GW)  # an answer in between: the count starts again
    for _ in range(FAILURES_TO_OPEN - 1):
        assert b.failed(GW, 1, 0) is None
    assert b.admits(GW, 1, 0)
    assert b.failed(GW, 1, 1000) == 1000 + FIRST_PROBE_MS
    assert b.is_down(GW) and b.down == 1
    assert not b.admits(GW, 2, 1500)  # down: held
    assert b.admits("https://other.example", 2, 1500)  # other gateways are not affected


def test_one_probe_at_a_time_doubling_to_an_hour() -> None:
    b = GatewayBreaker()
    for _ in range(FAILURES_TO_OPEN):
        at = b.failed(GW, 1, 0)
    assert at == FIRST_PROBE_MS
    for pid in (2, 3, 4):
        assert not b.admits(GW, pid, 10)
        b.park(GW, pid)
    assert b.choose_probe(GW, at) == 2  # the first parked one
    assert not b.admits(GW, 3, at)  # not the chosen probe
    assert b.admits(GW, 2, at)
    assert b.failed(GW, 5, at + 10) is None  # a request from before does not count as the probe's
    nxt = b.failed(GW, 2, at + 10)
    assert nxt == at + 10 + 2 * FIRST_PROBE_MS
    intervals = []
    now = nxt
    for _ in range(20):
        probe = b.choose_probe(GW, now)
        assert b.admits(GW, probe if probe is not None else 99, now)
        nxt2 = b.failed(GW, probe if probe is not None else 99, now)
        assert nxt2 is not None
        intervals.append(nxt2 - now)
        now = nxt2
    assert intervals[0] == 4 * FIRST_PROBE_MS and intervals[-1] == MAX_PROBE_MS


def test_the_first_answer_wakes_every_parked_pusher() -> None:
    b = GatewayBreaker()
    for _ in range(FAILURES_TO_OPEN):
        b.failed(GW, 1, 0)
    for pid in range(10, 20):
        b.park(GW, pid)
    probe = b.choose_probe(GW, FIRST_PROBE_MS)
    assert probe == 10 and b.admits(GW, probe, FIRST_PROBE_MS)
    assert sorted(b.answered(GW)) == list(range(11, 20))  # the probe itself is running already
    assert not b.is_down(GW) and b.admits(GW, 12, FIRST_PROBE_MS)


def test_a_probe_that_never_reports_is_replaced() -> None:
    b = GatewayBreaker()
    for _ in range(FAILURES_TO_OPEN):
        b.failed(GW, 1, 0)
    b.park(GW, 7)
    b.park(GW, 8)
    assert b.choose_probe(GW, FIRST_PROBE_MS) == 7
    assert b.admits(GW, 7, FIRST_PROBE_MS)  # ... and then 7 was deleted mid-request: no outcome
    assert b.choose_probe(GW, FIRST_PROBE_MS + 10) is None  # still in flight
    assert b.choose_probe(GW, FIRST_PROBE_MS + STUCK_MS) == 8
    assert b.admits(GW, 8, FIRST_PROBE_MS + STUCK_MS)


def test_with_nobody_parked_the_first_to_ask_is_the_probe() -> None:
    b = GatewayBreaker()
    for _ in range(FAILURES_TO_OPEN):
        b.failed(GW, 1, 0)
    assert b.choose_probe(GW, FIRST_PROBE_MS) is None
    assert not b.admits(GW, 4, FIRST_PROBE_MS - 1)  # too early
    assert b.admits(GW, 4, FIRST_PROBE_MS)
    assert not b.admits(GW, 5, FIRST_PROBE_MS)
