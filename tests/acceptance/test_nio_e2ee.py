"""End-to-end encrypted DM between matrix-nio clients (vodozemac crypto) against a real server.

Needs the server's /keys/upload, /keys/query, /keys/claim, /sendToDevice, to-device delivery in
/sync, device_lists.changed and device_one_time_keys_count. Finally checks that no plaintext
reached the server's storage.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from acc_support import ServerInfo
from nio import (
    InviteMemberEvent,
    JoinResponse,
    MegolmEvent,
    ProfileSetDisplayNameResponse,
    RoomCreateResponse,
    RoomEncryptionEvent,
    RoomMemberEvent,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
)
from nio_support import Tracked, login_tracked, register_with_token

pytestmark = pytest.mark.acceptance

PASSWORD = "e2ee acceptance password 7"
MEGOLM = "m.megolm.v1.aes-sha2"


async def send_encrypted(t: Tracked, room_id: str, body: str) -> str:
    resp = await t.client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": body},
        ignore_unverified_devices=True,
    )
    assert isinstance(resp, RoomSendResponse), f"{t.user_id} encrypted send: {resp!r}"
    event_id: str = resp.event_id
    return event_id


async def wait_decrypted(t: Tracked, room_id: str, event_id: str, body: str) -> None:
    def is_it(e: object) -> bool:
        return getattr(e, "event_id", None) == event_id

    try:
        ev = await t.wait_timeline(
            room_id, lambda e: is_it(e) and isinstance(e, RoomMessageText), f"decrypted {event_id}"
        )
    except AssertionError as exc:
        undecrypted = [e for e in t.timeline.get(room_id, []) if is_it(e)]
        if undecrypted and isinstance(undecrypted[0], MegolmEvent):
            raise AssertionError(
                f"{t.user_id} ({t.account.device_id}) received {event_id} but could not decrypt it "
                f"(room key never arrived via to-device?): {undecrypted[0]!r}"
            ) from exc
        raise
    assert ev.body == body, (ev.body, body)
    assert ev.decrypted, "event was not an m.room.encrypted event on the wire"


async def test_encrypted_dm_two_users_second_device_and_no_plaintext_at_rest(
    server: ServerInfo, unique: str, tmp_path: Path, e2ee_endpoints: None
) -> None:
    acct_a = await register_with_token(server.base_url, f"ealice{unique}", PASSWORD, server.registration_token)
    acct_b = await register_with_token(server.base_url, f"ebob{unique}", PASSWORD, server.registration_token)
    made: list[Tracked] = []
    try:
        a = await login_tracked(server.base_url, acct_a, store_path=tmp_path / "a", e2ee=True)
        made.append(a)
        b = await login_tracked(server.base_url, acct_b, store_path=tmp_path / "b", e2ee=True)
        made.append(b)
        for t in (a, b):
            await t.sync_once(timeout_ms=0)  # initial sync + device keys / one-time keys upload
            assert not t.client.should_upload_keys, f"{t.user_id}: keys still need uploading"

        # positive control for the storage search at the end: this value is not encrypted
        control = f"Control{unique}{secrets.token_hex(4)}"
        sd = await a.client.set_displayname(control)
        assert isinstance(sd, ProfileSetDisplayNameResponse), sd

        # --- encrypted DM ----------------------------------------------------------------------
        created = await a.client.room_create(
            is_direct=True,
            invite=[b.user_id],
            preset=RoomPreset.trusted_private_chat,
            initial_state=[
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}},
            ],
        )
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id

        def invited(r) -> bool:
            room = r.rooms.invite.get(room_id)
            if room is None:
                return False
            return any(
                isinstance(e, InviteMemberEvent)
                and e.state_key == b.user_id
                and e.membership == "invite"
                and e.content.get("is_direct") is True
                for e in room.invite_state
            )

        await b.sync_until(invited, "is_direct invite at B")
        joined = await b.client.join(room_id)
        assert isinstance(joined, JoinResponse), joined
        await a.wait_timeline(
            room_id,
            lambda e: isinstance(e, RoomMemberEvent) and e.state_key == b.user_id and e.membership == "join",
            "B's join at A",
        )
        await b.sync_until(lambda r: room_id in r.rooms.join, "joined DM in B's sync")
        for t in (a, b):
            assert t.client.rooms[room_id].encrypted, f"{t.user_id} does not see the room as encrypted"
        assert any(isinstance(e, RoomEncryptionEvent) for e in a.timeline[room_id]) or a.client.rooms[room_id].encrypted

        # --- A -> B and B -> A, each decrypts ---------------------------------------------------
        secret_a = f"attack at dawn {unique} {secrets.token_hex(8)}"
        ev_a = await send_encrypted(a, room_id, secret_a)
        await wait_decrypted(b, room_id, ev_a, secret_a)

        secret_b = f"retreat at dusk {unique} {secrets.token_hex(8)}"
        ev_b = await send_encrypted(b, room_id, secret_b)
        await wait_decrypted(a, room_id, ev_b, secret_b)

        # --- B logs in on a second device; it can read NEW messages -----------------------------
        b2 = await login_tracked(server.base_url, acct_b, store_path=tmp_path / "b2", e2ee=True, device_name="second")
        made.append(b2)
        assert b2.account.device_id != b.account.device_id
        await b2.sync_once(timeout_ms=0)
        assert not b2.client.should_upload_keys
        assert room_id in b2.client.rooms and b2.client.rooms[room_id].encrypted

        # A must learn about the new device (device_lists.changed) and query its keys
        await a.sync_until(
            lambda r: b.user_id in r.device_list.changed, "B in device_lists.changed at A after new login"
        )
        await a.crypto_housekeeping()
        devices = {d.id for d in a.client.device_store.active_user_devices(b.user_id)}
        assert b2.account.device_id in devices, f"A's view of B's devices: {devices}"

        secret_c = f"the eagle has landed {unique} {secrets.token_hex(8)}"
        ev_c = await send_encrypted(a, room_id, secret_c)
        await wait_decrypted(b2, room_id, ev_c, secret_c)
        await wait_decrypted(b, room_id, ev_c, secret_c)

        secret_d = f"reply from the second device {unique} {secrets.token_hex(8)}"
        ev_d = await send_encrypted(b2, room_id, secret_d)
        await wait_decrypted(a, room_id, ev_d, secret_d)

        # --- nothing of the plaintext is stored by the server -----------------------------------
        if not server.storage_searchable():
            pytest.skip("no data dir / database to search")
        control_hits = server.search_storage(control)
        assert control_hits, "storage search is broken: the unencrypted display name was not found"
        for secret in (secret_a, secret_b, secret_c, secret_d):
            hits = server.search_storage(secret)
            assert hits == [], f"plaintext {secret!r} found in server storage: {hits}"
    finally:
        for t in made:
            await t.client.close()
