"""sync/shared_reads.py: one read for callers that want the same answer at once, and what happens when
the caller that reads fails or goes away."""

from __future__ import annotations

import asyncio

import pytest

from paigham.sync.shared_reads import SingleFlight


class Reader:
    def __init__(self, fail: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail  # the first `fail` reads raise
        self.gate = asyncio.Event()

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.calls.append(list(keys))
        await self.gate.wait()
        if len(self.calls) <= self.fail:
            raise RuntimeError("database went away")
        return {k: k.upper() for k in keys}


async def test_callers_at_once_share_one_read_and_later_ones_are_answered_from_what_was_kept() -> None:
    flight: SingleFlight[str, str] = SingleFlight(kept=10)
    read = Reader()
    tasks = [asyncio.create_task(flight.get_many(["a", "b"], read)) for _ in range(5)]
    await asyncio.sleep(0)
    read.gate.set()
    assert [await t for t in tasks] == [{"a": "A", "b": "B"}] * 5
    assert read.calls == [["a", "b"]]
    # Only the key not yet known is read, with the others' answers kept.
    assert await flight.get_many(["b", "c"], read) == {"b": "B", "c": "C"}
    assert read.calls == [["a", "b"], ["c"]]


async def reader_and_waiter(read: Reader) -> tuple[asyncio.Task[dict[str, str]], asyncio.Task[dict[str, str]]]:
    """Two callers for key "a": the first reads (held at `read.gate`), the second waits for its answer."""
    flight: SingleFlight[str, str] = SingleFlight(kept=10)
    first = asyncio.create_task(flight.get_many(["a"], read))
    await asyncio.sleep(0)
    second = asyncio.create_task(flight.get_many(["a"], read))
    await asyncio.sleep(0)
    return first, second


async def test_a_failed_read_fails_its_caller_only_and_the_waiters_read_again() -> None:
    read = Reader(fail=1)
    first, waiter = await reader_and_waiter(read)
    read.gate.set()
    with pytest.raises(RuntimeError):
        await first
    assert await waiter == {"a": "A"}
    assert len(read.calls) == 2


async def test_a_reader_cancelled_with_its_request_leaves_the_waiters_to_read() -> None:
    read = Reader()
    first, waiter = await reader_and_waiter(read)
    first.cancel()
    await asyncio.sleep(0)
    read.gate.set()
    assert await waiter == {"a": "A"}
    assert first.cancelled() and len(read.calls) == 2


async def test_a_waiter_cancelled_does_not_cancel_the_read_the_others_wait_for() -> None:
    read = Reader()
    first, quitter = await reader_and_waiter(read)
    quitter.cancel()
    read.gate.set()
    assert await first == {"a": "A"}
    assert quitter.cancelled() and read.calls == [["a"]]


async def test_only_the_newest_answers_are_kept() -> None:
    flight: SingleFlight[str, str] = SingleFlight(kept=3)
    read = Reader()
    read.gate.set()
    for k in "abcde":
        await flight.get_many([k], read)
    assert len(flight) == 3
    await flight.get_many(["a"], read)  # forgotten: read again
    assert len(read.calls) == 6
