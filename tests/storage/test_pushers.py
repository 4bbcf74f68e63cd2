"""PusherStore and NotificationStore on both engines: pushers created at the current position and
updated in place, the per-user limit, other users' pushers replaced, removal by device and user;
a user's notifications from the shared and own push-action rows (the rule /sync's unread counts use)."""

from __future__ import annotations

from paigham.storage.database import Database
from paigham.storage.notifications import NotificationRow, NotificationStore, is_read
from paigham.storage.push_actions import PushRoomRow, PushUserRow
from paigham.storage.pushers import NewPusher, PusherStore
from tests.storage.support import ALICE, BOB, CARA, ROOM, add_messages, add_state, member, message, new_room

URL = "https://ntfy.gov.example/_matrix/push/v1/notify"


def pusher(user_id: str, pushkey: str, device_id: str | None = "PHONE", **changes: object) -> NewPusher:
    fields: dict[str, object] = {
        "user_id": user_id,
        "device_id": device_id,
        "kind": "http",
        "app_id": "im.vector.app.android",
        "pushkey": pushkey,
        "app_display_name": "Element X",
        "device_display_name": "Pixel",
        "profile_tag": None,
        "lang": "en",
        "data": {"url": URL, "format": "event_id_only"},
        **changes,
    }
    return NewPusher(**fields)  # type: ignore[arg-type]


async def test_create_update_limit_and_remove(db: Database) -> None:
    store = PusherStore(db)

    async def put(p: NewPusher, now: int = 1, limit: int = 2, others: bool = True) -> bool | None:
        return await store.set(p, now, max_per_user=limit, replace_others=others)

    await new_room(db)
    await add_state(db, member(ALICE, "join", "$a"))
    position = await db.current_position()
    assert await put(pusher(ALICE, "k1"), 1000) is True
    [p] = await store.of_user(ALICE)
    assert (p.last_stream, p.pushkey_ts, p.device_id, p.data["url"], p.attempts, p.failing_since) == (
        position, 1000, "PHONE", URL, 0, None,
    )  # fmt: skip
    # Delivery state as the delivery side would leave it after failures.
    await db_exec(db, "UPDATE pushers SET failing_since = 5, attempts = 3, next_attempt_ts = 9, last_stream = 77")
    # The same key again: updated in place, position, pushkey_ts and (same data) backoff kept.
    assert await put(pusher(ALICE, "k1", device_display_name="Pixel 9"), 2000) is False
    [q] = await store.of_user(ALICE)
    assert (q.id, q.device_display_name, q.pushkey_ts, q.last_stream, q.attempts, q.failing_since) == (
        p.id, "Pixel 9", 1000, 77, 3, 5,
    )  # fmt: skip
    # New data (another gateway URL): the backoff starts afresh, the position stays.
    other = {"url": "https://ntfy.gov.example:8443/_matrix/push/v1/notify"}
    assert await put(pusher(ALICE, "k1", data=other), 3000) is False
    [r] = await store.of_user(ALICE)
    assert (r.data, r.last_stream, r.attempts, r.failing_since, r.next_attempt_ts) == (other, 77, 0, None, 0)
    # The limit counts the user's pushers; an update at the limit still works.
    assert await put(pusher(ALICE, "k2", device_id="TABLET"), 1)
    assert await put(pusher(BOB, "k3"), 1, others=False)
    assert await put(pusher(ALICE, "k3"), 1) is None
    assert [x.pushkey for x in await store.of_user(BOB)] == ["k3"]  # a refusal replaces nobody's
    assert await put(pusher(ALICE, "k2", device_id="TABLET", lang="hi"), 1) is False
    assert await store.count(ALICE) == 2
    # Another user's pusher with the same app_id and pushkey: replaced unless appended.
    assert await put(pusher(BOB, "k1"), 1, others=False)
    assert [x.pushkey for x in await store.of_user(ALICE)] == ["k1", "k2"]
    assert await store.delete(BOB, "im.vector.app.android", "k3")
    assert await put(pusher(CARA, "k1"), 1)
    assert [x.pushkey for x in await store.of_user(ALICE)] == ["k2"] and await store.of_user(BOB) == []
    # Removal: by key, by device, by user, by ID.
    assert await store.delete(CARA, "im.vector.app.android", "k1") and not await store.delete(CARA, "x", "k1")
    await put(pusher(ALICE, "k4", device_id=None), 1, limit=5)
    assert await store.delete_for_devices(ALICE, ["TABLET", "NONE"]) == 1
    assert [x.pushkey for x in await store.of_user(ALICE)] == ["k4"]
    [k4] = await store.of_user(ALICE)
    assert await store.get(k4.id) == k4 and not await store.delete_by_id(BOB, k4.id)
    assert await store.delete_for_user(ALICE) == 1 and await store.get(k4.id) is None


async def db_exec(db: Database, sql: str) -> None:
    async with db.write() as conn:
        await db.run(sql, conn=conn)


async def test_notifications_from_shared_and_own_rows(db: Database) -> None:
    store = NotificationStore(db)
    await new_room(db)
    await add_state(db, member(ALICE, "join", "$ja"), member(BOB, "join", "$jb"))

    def shared(sender: str, highlight: bool = False, thread: str = "") -> PushRoomRow:
        return PushRoomRow(ROOM, 0, sender, thread, highlight)

    def own(user: str, notify: bool, highlight: bool) -> PushUserRow:
        return PushUserRow(user, ROOM, 0, "", notify, highlight)

    m1, m2, m3, m4, m5 = await add_messages(
        db,
        message("$m1", ALICE, "hello", push_room=shared(ALICE)),  # notifies bob
        message("$m2", BOB, "hi", push_room=shared(BOB)),  # bob's own: never his notification
        message("$m3", ALICE, "bob!", push_room=shared(ALICE), push_own=[own(BOB, True, True)]),  # highlight
        message("$m4", ALICE, "muted", push_room=shared(ALICE), push_own=[own(BOB, False, False)]),
        message("$m5", ALICE, "quiet", push_own=[own(BOB, True, False)]),  # only bob's row notifies
    )
    # Cara joins now: what came before is not hers.
    await add_state(db, member(CARA, "join", "$jc"))
    [m6] = await add_messages(db, message("$m6", ALICE, "in thread", push_room=shared(ALICE, thread="$m1")))

    got = await store.notifications(BOB, 0, None, 10)
    assert [(n.event_id, n.highlight) for n in got] == [("$m6", False), ("$m5", False), ("$m3", True), ("$m1", False)]
    assert got[0] == NotificationRow("$m6", ROOM, m6.stream, m6.origin_server_ts, False, "$m1")
    assert [n.event_id for n in await store.notifications(BOB, 0, None, 10, newest_first=False)] == [
        "$m1", "$m3", "$m5", "$m6",
    ]  # fmt: skip
    assert [n.event_id for n in await store.notifications(BOB, 0, None, 10, only_highlight=True)] == ["$m3"]
    # Bounds: past a stream (as delivery asks), up to one (as pagination asks), and a limit.
    assert [n.event_id for n in await store.notifications(BOB, m3.stream, None, 10)] == ["$m6", "$m5"]
    assert [n.event_id for n in await store.notifications(BOB, 0, m3.stream, 10)] == ["$m3", "$m1"]
    assert [n.event_id for n in await store.notifications(BOB, 0, None, 1)] == ["$m6"]
    assert [n.event_id for n in await store.notifications(CARA, 0, None, 10)] == ["$m6"]
    assert [n.event_id for n in await store.notifications(ALICE, 0, None, 10)] == ["$m2"]
    # Bob leaves: nothing of the room is his any more.
    await add_state(db, member(BOB, "leave", "$lb"))
    assert await store.notifications(BOB, 0, None, 10) == []
    del m1, m2, m4, m5


async def test_read_state_from_receipts(db: Database) -> None:
    store = NotificationStore(db)
    assert await store.read_upto(BOB, []) == {}
    async with db.write() as conn:
        for thread, stream in (("", 5), ("main", 8), ("$root", 12)):
            await db.run(
                "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_stream, ts, stream) "
                "VALUES ($1, $2, $3, $4, $5, $6, 0, 1)",
                ROOM, BOB, "m.read" if thread != "main" else "m.read.private", thread, "$x", stream,
                conn=conn,
            )  # fmt: skip
        await db.run(
            "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_stream, ts, stream) "
            "VALUES ($1, $2, 'm.fully_read', '', '$y', 50, 0, 1)",
            ROOM, BOB, conn=conn,
        )  # fmt: skip
    read = await store.read_upto(BOB, [ROOM, ROOM])
    assert read == {(ROOM, ""): 5, (ROOM, "main"): 8, (ROOM, "$root"): 12}

    def n(stream: int, thread: str = "") -> NotificationRow:
        return NotificationRow("$e", ROOM, stream, 0, False, thread)

    assert is_read(n(5), read) and is_read(n(8), read) and not is_read(n(9), read)
    assert is_read(n(12, "$root"), read) and not is_read(n(13, "$root"), read)
    assert is_read(n(5, "$other"), read) and not is_read(n(8, "$other"), read)  # only the unthreaded covers it
    assert not is_read(n(1), {})
