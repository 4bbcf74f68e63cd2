"""Plain (unencrypted) chat between two matrix-nio clients against a real running server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from acc_support import ServerInfo
from nio import (
    AsyncClient,
    Event,
    JoinResponse,
    LoginError,
    MessageDirection,
    ProfileGetDisplayNameResponse,
    ProfileSetDisplayNameResponse,
    ReceiptEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessagesError,
    RoomMessagesResponse,
    RoomMessageText,
    RoomPreset,
    RoomSendError,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    TypingNoticeEvent,
    UpdateReceiptMarkerResponse,
)
from nio_support import Account, Tracked, login_tracked, make_client, register_with_token

pytestmark = pytest.mark.acceptance

PASSWORD = "correct horse battery staple 42"


@pytest.fixture
async def clients(server: ServerInfo, unique: str) -> AsyncIterator[Callable[[str], Awaitable[Tracked]]]:
    made: list[Tracked] = []

    async def new(name: str) -> Tracked:
        acct = await register_with_token(server.base_url, f"{name}{unique}", PASSWORD, server.registration_token)
        assert acct.user_id == f"@{name}{unique}:{server.server_name}"
        t = await login_tracked(server.base_url, acct)
        made.append(t)
        await t.sync_once(timeout_ms=0)  # initial sync, as every client does after login
        return t

    yield new
    for t in made:
        await t.client.close()


def text_body(ev: object) -> str | None:
    return ev.body if isinstance(ev, RoomMessageText) else None


async def send_text(t: Tracked, room_id: str, body: str) -> str:
    resp = await t.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), f"{t.user_id} send {body!r}: {resp!r}"
    event_id: str = resp.event_id
    assert event_id.startswith("$"), event_id
    return event_id


async def test_two_users_chat_end_to_end(server: ServerInfo, clients) -> None:
    a: Tracked = await clients("alice")
    b: Tracked = await clients("bob")

    # --- A creates a room and invites B; B sees the invite in sync and joins -------------------
    # public_chat: private_chat rooms are encrypted by default (Paigham), and these clients have
    # no crypto. Unlisted (visibility private), and B is still invited explicitly.
    created = await a.client.room_create(name="Acceptance chat", topic="nio", preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    assert room_id.startswith("!"), room_id

    inv = await a.client.room_invite(room_id, b.user_id)
    assert isinstance(inv, RoomInviteResponse), inv

    await b.sync_until(lambda r: room_id in r.rooms.invite, f"invite to {room_id}")
    assert room_id in b.client.invited_rooms
    # the stripped state of the invite names the inviter and the room
    invite_state = b.client.invited_rooms[room_id]
    assert invite_state.inviter == a.user_id, invite_state.inviter
    assert invite_state.name == "Acceptance chat", invite_state.name

    joined = await b.client.join(room_id)
    assert isinstance(joined, JoinResponse), joined
    assert joined.room_id == room_id

    await a.wait_timeline(
        room_id,
        lambda e: isinstance(e, RoomMemberEvent) and e.state_key == b.user_id and e.membership == "join",
        "B's join in A's timeline",
    )
    await b.sync_until(lambda r: room_id in r.rooms.join, "joined room in B's sync")

    # --- messages in both directions, each sees the other's, in order, no duplicates ---------
    m1 = await send_text(a, room_id, "hello from A")
    await b.wait_timeline(room_id, lambda e: e.event_id == m1, "A's first message at B")
    m2 = await send_text(b, room_id, "hello from B")
    m3 = await send_text(a, room_id, "how are you, B?")
    for who in (a, b):
        await who.wait_timeline(room_id, lambda e: e.event_id == m3, f"m3 at {who.user_id}")
        await who.wait_timeline(room_id, lambda e: e.event_id == m2, f"m2 at {who.user_id}")
        ids = who.event_ids(room_id)
        assert ids.index(m1) < ids.index(m2) < ids.index(m3), f"order at {who.user_id}: {ids}"
        bodies = {e.event_id: text_body(e) for e in who.timeline[room_id]}
        assert bodies[m1] == "hello from A" and bodies[m2] == "hello from B", bodies
        senders = {e.event_id: e.sender for e in who.timeline[room_id]}
        assert senders[m1] == a.user_id and senders[m2] == b.user_id and senders[m3] == a.user_id
        assert not who.duplicates, f"duplicate events delivered to {who.user_id}: {who.duplicates}"

    # --- history pagination: 30 messages, pages of 10, both directions -------------------------
    sent = [await send_text(a, room_id, f"history {i:02d}") for i in range(30)]
    await b.wait_timeline(room_id, lambda e: e.event_id == sent[-1], "last history message at B")
    from_token = b.client.next_batch
    assert from_token

    async def page(token: str, direction: MessageDirection) -> RoomMessagesResponse:
        resp = await b.client.room_messages(room_id, start=token, direction=direction, limit=10)
        assert isinstance(resp, RoomMessagesResponse), resp
        assert len(resp.chunk) <= 10, f"limit=10 but got {len(resp.chunk)} events"
        return resp

    # backwards from "now" (a sync next_batch token) in pages of 10: exactly 29..20, 19..10, 09..00
    back_pages: list[RoomMessagesResponse] = []
    token = from_token
    for n in range(3):
        p = await page(token, MessageDirection.back)
        assert p.end, f"backwards page {n + 1} has no end token although history continues"
        back_pages.append(p)
        token = p.end
    for n, p in enumerate(back_pages):
        expect = list(reversed(sent[20 - 10 * n : 30 - 10 * n]))
        got = [e.event_id for e in p.chunk]
        assert got == expect, f"backwards page {n + 1}: got {[text_body(e) for e in p.chunk]}"
    assert [text_body(e) for p in back_pages for e in p.chunk] == [f"history {i:02d}" for i in reversed(range(30))]

    # ... and on, down to the very start of the room, with no duplicates
    older: list[Event] = []
    for _ in range(20):
        p = await page(token, MessageDirection.back)
        older.extend(p.chunk)
        if not p.chunk or not p.end or p.end == token:
            break
        token = p.end
    else:
        raise AssertionError("backwards pagination never reached the start of the room")
    back_ids = [e.event_id for p in back_pages for e in p.chunk] + [e.event_id for e in older]
    assert len(back_ids) == len(set(back_ids)), f"duplicates in backwards pagination: {back_ids}"
    assert back_ids.index(m3) < back_ids.index(m2) < back_ids.index(m1)
    assert older and older[-1].source.get("type") == "m.room.create", "oldest event is not m.room.create"

    # forwards from where the third backwards page ended (just before "history 00"):
    # exactly 00..09, 10..19, 20..29, then nothing more
    token = back_pages[2].end
    fwd_pages: list[RoomMessagesResponse] = []
    for n in range(3):
        p = await page(token, MessageDirection.front)
        fwd_pages.append(p)
        assert [e.event_id for e in p.chunk] == sent[10 * n : 10 * n + 10], (
            f"forwards page {n + 1}: got {[text_body(e) for e in p.chunk]}"
        )
        assert p.end, f"forwards page {n + 1} has no end token"
        token = p.end
    tail = await page(token, MessageDirection.front)
    assert tail.chunk == [], f"forward pagination past the newest event returned {tail.chunk}"
    # forwards from the end of the first backwards page: exactly 20..29
    p = await page(back_pages[0].end, MessageDirection.front)
    assert [e.event_id for e in p.chunk] == sent[20:]

    # --- read receipt: B reads A's last message; A sees it in sync ephemeral ------------------
    rr = await b.client.update_receipt_marker(room_id, sent[-1])
    assert isinstance(rr, UpdateReceiptMarkerResponse), rr

    def receipt_seen(r: SyncResponse):
        room = r.rooms.join.get(room_id)
        if not room:
            return None
        for ev in room.ephemeral:
            if isinstance(ev, ReceiptEvent):
                for rc in ev.receipts:
                    if rc.user_id == b.user_id and rc.event_id == sent[-1] and rc.receipt_type == "m.read":
                        return rc
        return None

    rc = await a.sync_until(receipt_seen, "B's read receipt in A's ephemeral")
    assert rc.timestamp and rc.timestamp > 0

    # --- typing: A types, B sees it; A stops, B sees the empty list ----------------------------
    ty = await a.client.room_typing(room_id, typing_state=True, timeout=30000)
    assert isinstance(ty, RoomTypingResponse), ty

    def typing_users(r: SyncResponse):
        room = r.rooms.join.get(room_id)
        if not room:
            return None
        evs = [e for e in room.ephemeral if isinstance(e, TypingNoticeEvent)]
        return evs[-1].users if evs else None

    users = await b.sync_until(lambda r: typing_users(r) or None, "A typing at B")
    assert users == [a.user_id], users
    ty = await a.client.room_typing(room_id, typing_state=False)
    assert isinstance(ty, RoomTypingResponse), ty
    await b.sync_until(lambda r: typing_users(r) == [], "A stopped typing at B")

    # --- display name --------------------------------------------------------------------------
    sd = await a.client.set_displayname("Alice Acceptance")
    assert isinstance(sd, ProfileSetDisplayNameResponse), sd
    gd = await b.client.get_displayname(a.user_id)
    assert isinstance(gd, ProfileGetDisplayNameResponse), gd
    assert gd.displayname == "Alice Acceptance"
    await b.wait_timeline(
        room_id,
        lambda e: (
            isinstance(e, RoomMemberEvent)
            and e.state_key == a.user_id
            and e.membership == "join"
            and e.content.get("displayname") == "Alice Acceptance"
        ),
        "A's new display name as a member event at B",
    )
    assert b.client.rooms[room_id].user_name(a.user_id) == "Alice Acceptance"

    # --- errors come back as Matrix errors through nio's response types ------------------------
    private = await a.client.room_create(name="A only")
    assert isinstance(private, RoomCreateResponse), private
    bad = await b.client.room_send(private.room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    assert isinstance(bad, RoomSendError), bad
    assert bad.status_code == "M_FORBIDDEN", (bad.status_code, bad.message)
    bad_hist = await b.client.room_messages(private.room_id, limit=5)
    assert isinstance(bad_hist, RoomMessagesError), bad_hist
    assert bad_hist.status_code == "M_FORBIDDEN", (bad_hist.status_code, bad_hist.message)

    # --- B leaves; A sees the leave; B's sync moves the room to "leave" ------------------------
    left = await b.client.room_leave(room_id)
    assert isinstance(left, RoomLeaveResponse), left
    await a.wait_timeline(
        room_id,
        lambda e: isinstance(e, RoomMemberEvent) and e.state_key == b.user_id and e.membership == "leave",
        "B's leave at A",
    )
    await b.sync_until(lambda r: room_id in r.rooms.leave, "room under rooms.leave in B's sync")
    assert not a.duplicates, "events delivered twice to A:\n" + "\n".join(a.duplicates)
    assert not b.duplicates, "events delivered twice to B:\n" + "\n".join(b.duplicates)


async def test_wrong_password_is_m_forbidden(server: ServerInfo, unique: str) -> None:
    acct: Account = await register_with_token(server.base_url, f"carol{unique}", PASSWORD, server.registration_token)
    client: AsyncClient = make_client(server.base_url, acct.user_id)
    try:
        resp = await client.login("not the password")
        assert isinstance(resp, LoginError), resp
        assert resp.status_code == "M_FORBIDDEN", (resp.status_code, resp.message)
    finally:
        await client.close()


async def test_registration_requires_valid_token(server: ServerInfo, unique: str) -> None:
    """Registration is closed except with a token: a wrong token is refused."""
    from nio_support import RegistrationFailed

    with pytest.raises(RegistrationFailed):
        await register_with_token(server.base_url, f"mallory{unique}", PASSWORD, "not-a-real-token")


async def test_nio_builtin_register_with_token(server: ServerInfo, unique: str) -> None:
    """nio's own ``AsyncClient.register_with_token`` (what nio bots use) must work too.

    nio sends three requests: (1) ``auth`` without type/session -> expects 401 + session,
    (2) ``m.login.registration_token`` with that session -> expects 401 (stage completed),
    (3) ``m.login.dummy`` with the same session -> expects 200 with user_id/access_token.
    So the server must offer the flow [m.login.registration_token, m.login.dummy].
    """
    client = make_client(server.base_url, "")
    try:
        resp = await client.register_with_token(f"dave{unique}", PASSWORD, server.registration_token)
        assert isinstance(resp, RegisterResponse), resp
        assert resp.user_id == f"@dave{unique}:{server.server_name}"
        assert resp.access_token and resp.device_id
        who = await client.whoami()
        assert getattr(who, "user_id", None) == resp.user_id, who
    finally:
        await client.close()


async def test_a_user_in_sixty_rooms_gets_them_all_in_one_compressed_initial_sync(server: ServerInfo, clients) -> None:
    """Over 50 joined rooms the server sends /sync room by room, compressed as it goes (api/http.py
    JSONInParts): nio (aiohttp accepts gzip, deflate, br) reads it as any answer."""
    a: Tracked = await clients("many")
    names = {}
    for i in range(60):
        created = await a.client.room_create(name=f"Section {i}", preset=RoomPreset.public_chat)
        assert isinstance(created, RoomCreateResponse), created
        names[created.room_id] = f"Section {i}"
    phone = await login_tracked(server.base_url, a.account, device_name="second phone")
    try:
        first = await phone.client.sync(timeout=0, full_state=True)
        assert isinstance(first, SyncResponse), first
        assert set(first.rooms.join) == set(names)
        assert {r: phone.client.rooms[r].name for r in names} == names
        # The same answer as bytes on the wire: compressed, with its length.
        assert phone.client.client_session is not None
        async with phone.client.client_session.get(
            f"{server.base_url}/_matrix/client/v3/sync",
            headers={"Authorization": f"Bearer {phone.client.access_token}", "Accept-Encoding": "br"},
        ) as r:
            assert r.status == 200 and r.headers["Content-Encoding"] == "br"
            assert int(r.headers["Content-Length"]) > 0  # one piece, its length known
            assert set((await r.json())["rooms"]["join"]) == set(names)
    finally:
        await phone.client.close()
