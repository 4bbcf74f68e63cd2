"""How an incremental /sync where one room changed costs at 10 and at 1,000 rooms (issue #18), in
process on SQLite: a measurement to run by hand, not a test (timings on a shared machine are noise;
compare the ratio between the two sizes, before and after a change).

    PYTHONPATH=src nice -n 19 .venv/bin/python scripts/measure_sync_rooms.py [ROOMS ...]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.api.conftest import Harness, User, serve

from paigham.services.rooms import CreateRoomRequest

RUNS = 200


async def add_rooms(hs: Harness, user: User, count: int) -> list[str]:
    """`count` public rooms created by `user` through the room service (as tests/api/test_sync_many_rooms.py)."""
    gate = asyncio.Semaphore(4)

    async def one(i: int) -> str:
        async with gate:
            return await hs.server.rooms.create_room(
                CreateRoomRequest(user.user_id, preset="public_chat", name=f"r{i}")
            )

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def measure(rooms: int) -> tuple[float, float]:
    """Median and p90 (ms) of alice's incremental sync after bob's one message, alice in `rooms` rooms."""
    with tempfile.TemporaryDirectory() as tmp:
        async with serve(f"sqlite:///{tmp}/paigham.db", Path(tmp)) as hs:
            alice, bob = await hs.register("alice"), await hs.register("bob")
            ids = await add_rooms(hs, alice, rooms)
            await hs.ok("POST", f"/_matrix/client/v3/join/{ids[0]}", bob)
            since = (await hs.sync(alice))["next_batch"]
            times = []
            for i in range(RUNS):
                await hs.send(bob, ids[0], f"news {i}")
                t0 = time.perf_counter()
                body = await hs.sync(alice, since=since)
                times.append((time.perf_counter() - t0) * 1000)
                assert list(body["rooms"]["join"]) == [ids[0]]
                since = body["next_batch"]
            times.sort()
            return statistics.median(times), times[int(0.9 * (RUNS - 1))]


async def main(sizes: list[int]) -> None:
    results = {n: await measure(n) for n in sizes}
    for n, (p50, p90) in results.items():
        print(f"{n:>6} rooms: incremental sync p50 {p50:.2f} ms, p90 {p90:.2f} ms")
    if len(sizes) == 2:
        (a, b) = (results[n][0] for n in sizes)
        print(f"p50 ratio {sizes[1]} / {sizes[0]} rooms: {b / a:.2f}")


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [10, 1000]))
