"""storage/turn_batch.py: calls of one turn go together, each gets its own answer, and the batch costs
no more passes of the event loop than it must (under load a pass is every ready task's step)."""

from __future__ import annotations

import asyncio

import pytest

from paigham.storage.turn_batch import TurnBatcher


async def test_calls_of_one_turn_go_together_per_key_and_in_order() -> None:
    runs: list[tuple[str, list[int]]] = []

    async def run(key: str, calls: list[int]) -> list[int]:
        runs.append((key, calls))
        await asyncio.sleep(0)
        return [c * 10 for c in calls]

    batcher: TurnBatcher[str, int, int] = TurnBatcher(run, most=3)
    answers = await asyncio.gather(*(batcher.ask("a" if i % 2 else "b", i) for i in range(8)))
    assert answers == [i * 10 for i in range(8)]
    assert sorted(runs) == [("a", [1, 3, 5]), ("a", [7]), ("b", [0, 2, 4]), ("b", [6])]
    assert batcher.batches == 4
    assert await batcher.ask("a", 9) == 90 and batcher.batches == 5  # a later turn: a batch of its own


async def test_an_answer_comes_two_passes_after_the_call() -> None:
    """The call's turn ends, the batch starts and answers in the next pass (its statement here does
    not suspend), and the caller resumes in the one after: no pass spent starting another task."""
    passes = 0
    stop = False

    async def tick() -> None:
        nonlocal passes
        while not stop:
            passes += 1
            await asyncio.sleep(0)

    async def run(key: str, calls: list[int]) -> list[int]:
        return calls

    batcher: TurnBatcher[str, int, int] = TurnBatcher(run, most=10)
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    before = passes
    assert await batcher.ask("k", 1) == 1
    took = passes - before
    stop = True
    await ticker
    assert took <= 2, took


async def test_a_failing_batch_fails_each_of_its_callers_only() -> None:
    async def run(key: str, calls: list[int]) -> list[int]:
        if key == "bad":
            raise RuntimeError("the statement failed")
        return calls

    batcher: TurnBatcher[str, int, int] = TurnBatcher(run, most=10)
    results = await asyncio.gather(batcher.ask("bad", 1), batcher.ask("good", 2), return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] == 2
    with pytest.raises(RuntimeError):
        await batcher.ask("bad", 3)
