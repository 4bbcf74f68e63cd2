"""Legacy 1:1 calls between matrix-nio clients: the signalling (m.call.invite, m.call.candidates,
m.call.answer, m.call.hangup) travels as ordinary room events, encrypted in an encrypted DM like any
message. The server sees only m.room.encrypted: no SDP, no ICE candidate (with the callers' IP
addresses) reaches its storage. The media then goes peer to peer or through TURN (tests/api/test_voip.py).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from acc_support import ServerInfo
from nio import (
    CallAnswerEvent,
    CallCandidatesEvent,
    CallHangupEvent,
    CallInviteEvent,
    InviteMemberEvent,
    JoinResponse,
    RoomCreateResponse,
    RoomMemberEvent,
    RoomPreset,
    RoomSendResponse,
)
from nio_support import Tracked, login_tracked, register_with_token

pytestmark = pytest.mark.acceptance

PASSWORD = "calls acceptance password 5"
MEGOLM = "m.megolm.v1.aes-sha2"


async def encrypted_dm(a: Tracked, b: Tracked) -> str:
    """A creates an encrypted DM with B; both are joined and see it as encrypted."""
    created = await a.client.room_create(
        is_direct=True,
        invite=[b.user_id],
        preset=RoomPreset.trusted_private_chat,
        initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}],
    )
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id

    def invited(r: Any) -> bool:
        room = r.rooms.invite.get(room_id)
        return room is not None and any(isinstance(e, InviteMemberEvent) for e in room.invite_state)

    await b.sync_until(invited, "the DM invite at B")
    joined = await b.client.join(room_id)
    assert isinstance(joined, JoinResponse), joined
    await a.wait_timeline(
        room_id,
        lambda e: isinstance(e, RoomMemberEvent) and e.state_key == b.user_id and e.membership == "join",
        "B's join at A",
    )
    await b.sync_until(lambda r: room_id in r.rooms.join, "the joined DM in B's sync")
    for t in (a, b):
        assert t.client.rooms[room_id].encrypted, f"{t.user_id} does not see the DM as encrypted"
    return str(room_id)


async def signal(t: Tracked, room_id: str, event_type: str, content: dict[str, Any]) -> str:
    resp = await t.client.room_send(room_id, event_type, content, ignore_unverified_devices=True)
    assert isinstance(resp, RoomSendResponse), f"{t.user_id} {event_type}: {resp!r}"
    event_id: str = resp.event_id
    return event_id


async def received(t: Tracked, room_id: str, event_id: str, kind: type[Any]) -> Any:
    """The decrypted call event at `t`, parsed by nio as `kind`; it was m.room.encrypted on the wire."""
    ev = await t.wait_timeline(
        room_id, lambda e: getattr(e, "event_id", None) == event_id and isinstance(e, kind), f"{kind.__name__}"
    )
    assert ev.decrypted, f"{event_id} was not an m.room.encrypted event on the wire"
    return ev


async def test_legacy_call_signalling_is_encrypted_end_to_end(
    server: ServerInfo, unique: str, tmp_path: Path, e2ee_endpoints: None
) -> None:
    acct_a = await register_with_token(server.base_url, f"calice{unique}", PASSWORD, server.registration_token)
    acct_b = await register_with_token(server.base_url, f"cbob{unique}", PASSWORD, server.registration_token)
    made: list[Tracked] = []
    try:
        a = await login_tracked(server.base_url, acct_a, store_path=tmp_path / "a", e2ee=True)
        made.append(a)
        b = await login_tracked(server.base_url, acct_b, store_path=tmp_path / "b", e2ee=True)
        made.append(b)
        for t in (a, b):
            await t.sync_once(timeout_ms=0)  # device keys and one-time keys uploaded
        room_id = await encrypted_dm(a, b)

        call_id = f"call{unique}{secrets.token_hex(4)}"
        # Markers in the SDPs and the candidate (with an address of the caller's): searched for in the
        # server's storage at the end.
        markers = [f"{what}{secrets.token_hex(8)}" for what in ("Offer", "Answer", "Cand")]
        offer_sdp = f"v=0\r\no=- 4611 2 IN IP4 198.51.100.23\r\ns={markers[0]}\r\nt=0 0\r\n"
        answer_sdp = f"v=0\r\no=- 4612 2 IN IP4 203.0.113.7\r\ns={markers[1]}\r\nt=0 0\r\n"
        candidate = f"candidate:{markers[2]} 1 udp 2122260223 198.51.100.23 50123 typ host"
        a_party, b_party = f"pa{secrets.token_hex(4)}", f"pb{secrets.token_hex(4)}"

        invite_id = await signal(
            a,
            room_id,
            "m.call.invite",
            {
                "call_id": call_id,
                "party_id": a_party,
                "version": "1",
                "lifetime": 60_000,
                "invitee": b.user_id,
                "offer": {"type": "offer", "sdp": offer_sdp},
            },
        )
        invite = await received(b, room_id, invite_id, CallInviteEvent)
        assert (invite.call_id, invite.offer["sdp"], invite.sender) == (call_id, offer_sdp, a.user_id)
        assert not invite.expired, "the server's origin_server_ts makes a fresh invite look expired"

        candidates = [{"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0}]
        cand_id = await signal(
            a,
            room_id,
            "m.call.candidates",
            {"call_id": call_id, "party_id": a_party, "version": "1", "candidates": candidates},
        )
        got = await received(b, room_id, cand_id, CallCandidatesEvent)
        assert got.candidates == candidates

        answer_id = await signal(
            b,
            room_id,
            "m.call.answer",
            {"call_id": call_id, "party_id": b_party, "version": "1", "answer": {"type": "answer", "sdp": answer_sdp}},
        )
        answer = await received(a, room_id, answer_id, CallAnswerEvent)
        assert (answer.call_id, answer.answer["sdp"], answer.sender) == (call_id, answer_sdp, b.user_id)

        hangup_id = await signal(
            b,
            room_id,
            "m.call.hangup",
            {"call_id": call_id, "party_id": b_party, "version": "1", "reason": "user_hangup"},
        )
        hangup = await received(a, room_id, hangup_id, CallHangupEvent)
        assert hangup.call_id == call_id and hangup.source["content"]["reason"] == "user_hangup"

        # The call, in the order sent, in both timelines (nothing lost, nothing duplicated).
        calls = [invite_id, cand_id, answer_id, hangup_id]
        for t in (a, b):
            await t.wait_timeline(room_id, lambda e: getattr(e, "event_id", None) == hangup_id, "the hangup")
            assert [e for e in t.event_ids(room_id) if e in calls] == calls, t.user_id
            assert not t.duplicates, t.duplicates

        if not server.storage_searchable():
            pytest.skip("no data dir / database to search")
        assert server.search_storage(room_id), "storage search is broken: the room ID was not found"
        for marker in [*markers, call_id]:
            hits = server.search_storage(marker)
            assert hits == [], f"call signalling {marker!r} found in server storage: {hits}"
    finally:
        for t in made:
            await t.client.close()
