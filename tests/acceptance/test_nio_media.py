"""Attachments with matrix-nio against a real server: an encrypted file sent in an E2EE room is
downloaded and decrypted by the other user; the server keeps neither the file nor (thanks to
encryption at rest) even a plain upload in readable form; downloads need a token."""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path

import aiohttp
import pytest
from acc_support import ServerInfo
from nio import (
    DownloadResponse,
    InviteMemberEvent,
    JoinResponse,
    ResizingMethod,
    RoomCreateResponse,
    RoomEncryptedFile,
    RoomMemberEvent,
    RoomPreset,
    RoomSendResponse,
    ThumbnailResponse,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment
from nio_support import Tracked, login_tracked, register_with_token
from PIL import Image

pytestmark = pytest.mark.acceptance

PASSWORD = "media acceptance password 9"
MEGOLM = "m.megolm.v1.aes-sha2"


async def _encrypted_room(a: Tracked, b: Tracked) -> str:
    created = await a.client.room_create(
        invite=[b.user_id],
        preset=RoomPreset.private_chat,
        initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}],
    )
    assert isinstance(created, RoomCreateResponse), created
    room_id: str = created.room_id

    def invited(r: object) -> bool:
        room = r.rooms.invite.get(room_id)  # type: ignore[attr-defined]
        return room is not None and any(
            isinstance(e, InviteMemberEvent) and e.state_key == b.user_id for e in room.invite_state
        )

    await b.sync_until(invited, "invite at B")
    assert isinstance(await b.client.join(room_id), JoinResponse)
    await a.wait_timeline(
        room_id,
        lambda e: isinstance(e, RoomMemberEvent) and e.state_key == b.user_id and e.membership == "join",
        "B's join at A",
    )
    await b.sync_until(lambda r: room_id in r.rooms.join, "joined room in B's sync")
    return room_id


async def test_encrypted_attachment_round_trip_and_nothing_readable_at_rest(
    server: ServerInfo, unique: str, tmp_path: Path
) -> None:
    acct_a = await register_with_token(server.base_url, f"malice{unique}", PASSWORD, server.registration_token)
    acct_b = await register_with_token(server.base_url, f"mbob{unique}", PASSWORD, server.registration_token)
    made: list[Tracked] = []
    try:
        a = await login_tracked(server.base_url, acct_a, store_path=tmp_path / "a", e2ee=True)
        made.append(a)
        b = await login_tracked(server.base_url, acct_b, store_path=tmp_path / "b", e2ee=True)
        made.append(b)
        for t in (a, b):
            await t.sync_once(timeout_ms=0)
        room_id = await _encrypted_room(a, b)
        await a.crypto_housekeeping()

        marker = f"CONFIDENTIAL-ORDER-{unique}-{secrets.token_hex(6)}".encode()
        document = b"%PDF-1.7\n" + marker + os.urandom(300_000) + marker
        up, keys = await a.client.upload(
            lambda *_: document,
            content_type="application/pdf",
            filename="order.pdf",
            encrypt=True,
            filesize=len(document),
        )
        assert isinstance(up, UploadResponse), up
        assert keys and {"key", "iv", "hashes"} <= set(keys)
        sent = await a.client.room_send(
            room_id,
            "m.room.message",
            {
                "msgtype": "m.file",
                "body": "order.pdf",
                "file": {"url": up.content_uri, **keys},
                "info": {"mimetype": "application/pdf", "size": len(document)},
            },
            ignore_unverified_devices=True,
        )
        assert isinstance(sent, RoomSendResponse), sent

        ev = await b.wait_timeline(
            room_id,
            lambda e: isinstance(e, RoomEncryptedFile) and e.event_id == sent.event_id,
            "the encrypted file event at B",
        )
        got = await b.client.download(mxc=ev.url)
        assert isinstance(got, DownloadResponse), got
        assert got.body != document  # the server only ever had ciphertext
        plain = decrypt_attachment(got.body, ev.key["k"], ev.hashes["sha256"], ev.iv)
        assert plain == document

        # A plain (unencrypted) upload: the server's encryption at rest still hides it on disk.
        plain_marker = f"PLAIN-UPLOAD-{unique}-{secrets.token_hex(6)}".encode()
        up2, _ = await a.client.upload(
            lambda *_: plain_marker * 50,
            content_type="text/plain",
            filename=f"note-{unique}.txt",
            filesize=len(plain_marker) * 50,
        )
        assert isinstance(up2, UploadResponse), up2
        got2 = await b.client.download(mxc=up2.content_uri)
        assert isinstance(got2, DownloadResponse) and got2.body == plain_marker * 50

        # A thumbnail made by the server's worker process, fetched by the other user.
        picture = io.BytesIO()
        Image.new("RGB", (640, 480), (10, 120, 200)).save(picture, "JPEG")
        up3, _ = await a.client.upload(
            lambda *_: picture.getvalue(),
            content_type="image/jpeg",
            filename="photo.jpg",
            filesize=len(picture.getvalue()),
        )
        assert isinstance(up3, UploadResponse), up3
        srv, mid = up3.content_uri[len("mxc://") :].split("/")
        thumb = await b.client.thumbnail(srv, mid, 96, 96, ResizingMethod.crop)
        assert isinstance(thumb, ThumbnailResponse), thumb
        assert Image.open(io.BytesIO(thumb.body)).size == (96, 96)

        # Downloads need a token.
        server_name, media_id = up2.content_uri[len("mxc://") :].split("/")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.base_url}/_matrix/client/v1/media/download/{server_name}/{media_id}") as resp,
        ):
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_MISSING_TOKEN"

        if not server.storage_searchable():
            pytest.skip("no data dir / database to search")
        # Positive control: file names are metadata the server keeps readable, so the search must see it.
        assert server.search_storage(f"note-{unique}.txt"), "storage search is broken: control not found"
        for needle in (marker, plain_marker):
            hits = server.search_storage(needle.decode())
            assert hits == [], f"{needle!r} found readable in server storage: {hits}"
    finally:
        for t in made:
            await t.client.close()
