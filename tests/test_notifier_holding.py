"""A big room's membership news is held (sync/notifier.py): a device answered moments ago gets a join
storm's news once per hold, not once per join, while anything else for it still wakes it at once."""

from __future__ import annotations

import asyncio

from paigham.bus.base import StreamUpdate
from paigham.sync.notifier import Holding, Notifier

ME = {"u:@me:x", "r:!big:x", "r:!small:x"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def joins(pos: int, room: str = "!big:x", who: str = "@new:x") -> StreamUpdate:
    return StreamUpdate(pos, rooms=[room], users=[who], member_only=[room])


async def big_room(n: Notifier, pos: int) -> None:
    """Two long-polls (the test's `watchers`) woken at once by news of the room make it big."""
    polls = [asyncio.ensure_future(n.wait(["r:!big:x"], pos - 1, 5)) for _ in range(2)]
    await asyncio.sleep(0)
    n.on_update(StreamUpdate(pos, rooms=["!big:x"]))
    assert all(await asyncio.gather(*polls))


async def test_only_a_big_rooms_membership_news_is_held() -> None:
    clock, draw = Clock(), [1.0]
    n = Notifier(Holding(hold_s=2.0, watchers=2), clock=clock, random=lambda: draw[0])
    n.on_update(joins(1))
    assert not n.holds_news and n.hold_for(ME, 0) == 0  # not big yet: sent at once
    await big_room(n, 2)
    clock.now = 100.5
    n.on_update(joins(3))
    assert n.holds_news
    # Answered at 2 (at 100 s): the rest of the hold, let go somewhere in its second half.
    assert n.hold_for(ME, 2) == 1.5
    draw[0] = 0.0
    assert n.hold_for(ME, 2) == 0.5
    # Answered longer ago than the hold (or the position is not known): somewhere in its first half.
    clock.now = 103.0
    n.on_update(joins(4))
    draw[0] = 1.0
    assert n.hold_for(ME, 3) == 1.0
    # Anything else past `since` for this device: sent at once.
    for other in (
        StreamUpdate(5, rooms=["!big:x"]),  # a message in the big room
        StreamUpdate(5, users=["@me:x"]),  # its own news (to-device, its own membership)
        joins(5, room="!small:x"),  # a join in a room that is not big
        joins(5, who="@me:x"),  # its own join
    ):
        m = Notifier(Holding(hold_s=2.0, watchers=2), clock=clock, random=lambda: 1.0)
        await big_room(m, 2)
        m.on_update(joins(4))
        assert m.hold_for(ME, 3) > 0
        m.on_update(other)
        assert m.hold_for(ME, 3) == 0, other
    # News of other users' rooms only: nothing to hold for this device.
    assert n.hold_for({"u:@me:x", "r:!elsewhere:x"}, 3) == 0
    # Past the hold after the last held news, nobody is held.
    clock.now = 106.0
    assert not n.holds_news and n.hold_for(ME, 3) == 0


async def test_a_holding_long_poll_wakes_for_other_news_only() -> None:
    clock = Clock()
    n = Notifier(Holding(hold_s=2.0, watchers=2), clock=clock, random=lambda: 1.0)
    await big_room(n, 2)
    holding = asyncio.ensure_future(n.wait(ME, 2, 5, holding=True))
    plain = asyncio.ensure_future(n.wait(ME, 2, 5))
    await asyncio.sleep(0)
    n.on_update(joins(3))
    await asyncio.sleep(0)
    assert plain.done() and not holding.done()  # a long-poll not holding wakes as before
    n.on_update(StreamUpdate(4, rooms=["!big:x"]))  # a message
    assert await holding
    # One registering after held news alone waits (and times out); after other news it returns at once.
    n.on_update(joins(5))
    assert not await n.wait(ME, 4, 0.01, holding=True)
    n.on_update(StreamUpdate(6, users=["@me:x"]))
    assert await n.wait(ME, 4, 5, holding=True)
    assert n.waiting == 0


async def test_holding_off() -> None:
    n = Notifier(Holding(hold_s=0, watchers=2))
    await big_room(n, 2)
    n.on_update(joins(3))
    assert not n.holds_news and n.hold_for(ME, 2) == 0


async def test_a_room_stays_big_while_its_followers_hold_its_news() -> None:
    """During a storm longer than `remember_s`, most long-polls of the room are holding (not woken by
    its joins): they still count, so the room stays big and its news held."""
    clock = Clock()
    n = Notifier(Holding(hold_s=2.0, watchers=2, remember_s=60.0), clock=clock, random=lambda: 1.0)
    await big_room(n, 2)
    clock.now = 150.0
    holding = [asyncio.ensure_future(n.wait(ME, 2, 5, holding=True)) for _ in range(2)]
    await asyncio.sleep(0)
    n.on_update(joins(3))  # two holding: counted, not woken
    assert not any(h.done() for h in holding)
    clock.now = 200.0  # 100 s after the room last woke two long-polls, 50 s after it last held two
    n.on_update(joins(4))
    assert n.hold_for(ME, 3) > 0
    for h in holding:
        h.cancel()
    await asyncio.gather(*holding, return_exceptions=True)
    assert n.waiting == 0
