"""Rooms and events written straight through the stores (no writer, no signing): what the store
tests need to set up history. PDUs here are not valid Matrix events, only rows with the fields the
stores read."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine

from paigham.domain.stored_event import StoredEvent
from paigham.storage.database import Database
from paigham.storage.event_writes import EventWriteStore, NewMessage
from paigham.storage.events import RoomRow
from paigham.storage.push_actions import PushRoomRow, PushUserRow

ROOM = "!room:test.local"
ALICE, BOB, CARA = "@alice:test.local", "@bob:test.local", "@cara:test.local"


def event(
    event_id: str,
    type_: str,
    sender: str,
    content: dict[str, Any],
    *,
    state_key: str | None = None,
    stream: int = 0,
    room_id: str = ROOM,
    depth: int = 1,
) -> StoredEvent:
    pdu: dict[str, Any] = {
        "room_id": room_id,
        "type": type_,
        "sender": sender,
        "content": content,
        "origin_server_ts": 1_000 + stream,
        "depth": depth,
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    return StoredEvent(
        stream=stream,
        event_id=event_id,
        room_id=room_id,
        type=type_,
        state_key=state_key,
        sender=sender,
        origin_server_ts=pdu["origin_server_ts"],
        pdu=pdu,
        unsigned=None,
        redacted_by=None,
        txn_id=None,
        device_id=None,
    )


def member(user_id: str, membership: str, event_id: str, room_id: str = ROOM) -> StoredEvent:
    return event(event_id, "m.room.member", user_id, {"membership": membership}, state_key=user_id, room_id=room_id)


async def new_room(db: Database, room_id: str = ROOM, creator: str = ALICE) -> None:
    async with db.write() as conn:
        await EventWriteStore(db).insert_room(conn, RoomRow(room_id, "11", creator, False), 1)


async def add_state(db: Database, *evs: StoredEvent) -> list[StoredEvent]:
    """Write state events at the next positions (as the writer's `persist_many` does)."""
    async with db.write() as conn:
        first = await db.next_position(conn, len(evs)) - len(evs) + 1
        for i, e in enumerate(evs):
            e.stream = first + i
            e.pdu["depth"] = e.stream
        await EventWriteStore(db).insert_state_events(conn, [(e, None, None) for e in evs])
    return list(evs)


def message(
    event_id: str,
    sender: str,
    body: str,
    *,
    room_id: str = ROOM,
    relates_to: tuple[str, str] | None = None,
    txn: tuple[str, str, str, str] | None = None,
    push_room: PushRoomRow | None = None,
    push_own: list[PushUserRow] | None = None,
) -> NewMessage:
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if relates_to is not None:
        content["m.relates_to"] = {"rel_type": relates_to[0], "event_id": relates_to[1]}
    ev = event(event_id, "m.room.message", sender, content, room_id=room_id)
    if txn is not None:
        ev.txn_id, ev.device_id = txn[3], txn[1]
    return NewMessage(
        ev,
        relates_to[1] if relates_to else None,
        relates_to[0] if relates_to else None,
        txn,
        push_room,
        push_own or [],
    )


async def add_messages(db: Database, *messages: NewMessage) -> list[StoredEvent]:
    async with db.write() as conn:
        await EventWriteStore(db).insert_messages(conn, list(messages))
    return [m.event for m in messages]


@contextmanager
def statements(db: Database, *, built: bool = False) -> Iterator[list[str]]:
    """The SQL text statements `db` sends while inside, through its raw-SQL entry points (spied on,
    still run), and "<stream counter>" for each take of stream positions; with `built`, also those
    sent through SQLAlchemy (statements it builds, by any engine: the raw entry points bypass it)."""
    sent: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        sent.append(sql)

    def spy(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        real = getattr(db, name)

        async def counted(sql: str, *args: Any, **kw: Any) -> Any:
            sent.append(sql)
            return await real(sql, *args, **kw)

        return counted

    real_position = db.next_position

    async def next_position(conn: Any, count: int = 1) -> int:
        sent.append("<stream counter>")
        return await real_position(conn, count)

    spies = {name: spy(name) for name in ("fetch", "run", "run_many")} | {"next_position": next_position}
    for name, fn in spies.items():
        setattr(db, name, fn)  # instance attributes over the methods, removed below
    if built:
        sa_event.listen(Engine, "before_cursor_execute", on_execute)
    try:
        yield sent
    finally:
        if built:
            sa_event.remove(Engine, "before_cursor_execute", on_execute)
        for name in spies:
            delattr(db, name)


def rows_read(node: dict[str, Any]) -> int:
    """Rows the scans of an EXPLAIN (ANALYZE, FORMAT JSON) plan read: returned, and removed by filters."""
    own = 0
    if "Scan" in node.get("Node Type", ""):
        loops = node.get("Actual Loops", 1)
        own = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops
    return own + sum(rows_read(child) for child in node.get("Plans", []))


def spy_fetch(db: Database, monkeypatch: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """The (SQL, arguments) of every `db.fetch` from now until `monkeypatch.undo()` (still run)."""
    sent: list[tuple[str, tuple[Any, ...]]] = []
    real = db.fetch

    async def spy(sql: str, *args: Any, **kw: Any) -> Any:
        sent.append((sql, args))
        return await real(sql, *args, **kw)

    monkeypatch.setattr(db, "fetch", spy)
    return sent


def _literal(value: Any) -> str:
    """`value` (None, int, str or a list of str) as a PostgreSQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::text[]"


async def rows_read_by_a_plan_made_small(
    db: Database, sql: str, args: Sequence[Any], grow: Callable[[], Awaitable[None]]
) -> int:
    """Rows `sql` reads with the plan PostgreSQL made for it while its tables were small, after `grow`
    filled them. So it goes for a pooled prepared statement on a fresh database whose tables are never
    analyzed (autovacuum off, as on the benchmark's machines): after five runs it keeps one generic
    plan, made from the statistics of then, and nothing makes it plan again."""
    conn = await asyncpg.connect("postgresql://" + db.url.split("://", 1)[1])
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE probe AS {sql}")
        call = "EXECUTE probe(" + ", ".join(_literal(a) for a in args) + ")"
        await conn.fetch(call)  # the generic plan is made here, and kept
        await grow()
        plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + call)
    finally:
        await conn.close()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return rows_read(plan[0]["Plan"])
