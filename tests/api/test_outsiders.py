"""What someone who may not see a room learns about it (issue 14 #9, #10): nothing that depends on
who is in it or which events it holds; an invitation shows the invite's stripped state, not the room.
On 81fc255 `/kick` answered differently depending on whether the target was in the private room,
`/event/{id}` answered 403 for an existing event and 404 for a missing one, and an invitee could read
`/state` and `/members` before joining."""

from __future__ import annotations

from tests.api.conftest import Harness

V3 = "/_matrix/client/v3"


async def test_kick_and_unban_tell_an_outsider_nothing_about_the_members(hs: Harness) -> None:
    owner, member, outsider = await hs.register("owner"), await hs.register("member"), await hs.register("eve")
    room = await hs.create_room(owner, preset="private_chat", invite=[member.user_id])
    await hs.ok("POST", f"{V3}/rooms/{room}/join", member, json={})
    answers = []
    for target in (member.user_id, "@nobody:test.local", owner.user_id):
        for action in ("kick", "unban"):
            body = await hs.err(403, "M_FORBIDDEN", "POST", f"{V3}/rooms/{room}/{action}", outsider,
                                json={"user_id": target})  # fmt: skip
            answers.append(body["error"])
    assert len(set(answers)) == 1, answers


async def test_an_outsider_gets_the_same_answer_for_an_existing_and_a_missing_event(hs: Harness) -> None:
    owner, outsider = await hs.register("owner"), await hs.register("eve")
    room = await hs.create_room(owner, preset="private_chat")
    real = await hs.send(owner, room, "secret")
    existing = await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/rooms/{room}/event/{real}", outsider)
    missing = await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/rooms/{room}/event/$nothing-here", outsider)
    assert existing == missing
    ctx_existing = await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/rooms/{room}/context/{real}", outsider)
    ctx_missing = await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/rooms/{room}/context/$nothing", outsider)
    assert ctx_existing == ctx_missing
    assert (await hs.ok("GET", f"{V3}/rooms/{room}/event/{real}", owner))["content"]["body"] == "secret"


async def test_an_invitee_reads_the_room_only_after_joining(hs: Harness) -> None:
    owner, guest = await hs.register("owner"), await hs.register("guest")
    room = await hs.create_room(owner, preset="private_chat", name="Budget 2027", invite=[guest.user_id])
    await hs.send(owner, room, "draft figures")
    for path in ("state", "members", "joined_members", "messages", "state/m.room.name"):
        await hs.err(403, "M_FORBIDDEN", "GET", f"{V3}/rooms/{room}/{path}", guest)
    invite = (await hs.sync(guest))["rooms"]["invite"][room]["invite_state"]["events"]
    assert any(e["type"] == "m.room.name" for e in invite)  # what an invitation shows
    await hs.ok("POST", f"{V3}/rooms/{room}/join", guest, json={})
    for path in ("state", "members", "joined_members", "messages", "state/m.room.name"):
        await hs.ok("GET", f"{V3}/rooms/{room}/{path}", guest)
