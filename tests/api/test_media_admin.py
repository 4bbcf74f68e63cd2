"""Media admin (HTTP and CLI) and the virus-scanner hook against a fake clamd speaking the real protocol."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from paigham.cli.main import app as cli_app
from paigham.clock import now_ms
from paigham.media.scanner import ClamdScanner
from paigham.storage.media_schema import media
from tests.api.conftest import Harness, User
from tests.api.media_support import EICAR, THUMB, UPLOAD, FakeClamd, download, image_bytes, leftovers, upload

ADMIN = "/_synapse/admin/v1"


async def make_admin(hs: Harness) -> User:
    srv = hs.server
    user_id = await srv.auth.create_user("root", "root-password-1", admin=True)
    session = await srv.auth.start_session(user_id, None, None)
    return User(user_id, session.access_token, session.device_id, "root-password-1")


async def test_admin_needs_an_admin(hs: Harness) -> None:
    alice = await hs.register("alice")
    mxc = await upload(hs, alice, b"abc")
    for method, path in [
        ("POST", f"{ADMIN}/media/quarantine/{mxc}"),
        ("DELETE", f"{ADMIN}/media/{mxc}"),
        ("GET", f"{ADMIN}/users/{alice.user_id}/media"),
        ("POST", f"{ADMIN}/media/delete"),
    ]:
        await hs.err(403, "M_FORBIDDEN", method, path, alice)
        await hs.err(401, "M_MISSING_TOKEN", method, path)


async def test_quarantine_list_and_delete(hs: Harness) -> None:
    alice, bob, root = await hs.register("alice"), await hs.register("bob"), await make_admin(hs)
    pic = await upload(hs, alice, image_bytes("PNG", (120, 100)), "image/png", "leak.png")
    doc = await upload(hs, alice, b"%PDF minutes", "application/pdf", "minutes.pdf")
    r = await hs.request("GET", f"{THUMB}/{pic}", bob, params={"width": 32, "height": 32, "method": "crop"})
    assert r.status_code == 200
    assert await hs.ok("POST", f"{ADMIN}/media/quarantine/{pic}", root) == {}
    await hs.err(404, "M_NOT_FOUND", "GET", f"/_matrix/client/v1/media/download/{pic}", bob)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{THUMB}/{pic}", bob, params={"width": 32, "height": 32})
    info = await hs.ok("GET", f"{ADMIN}/media/{pic}", root)
    assert info["media_info"]["quarantined_by"] == root.user_id
    await hs.ok("POST", f"{ADMIN}/media/unquarantine/{pic}", root)
    assert (await download(hs, bob, pic)).status_code == 200
    listed = await hs.ok("GET", f"{ADMIN}/users/{alice.user_id}/media", root, params={"limit": 1})
    assert listed["total"] == 2 and len(listed["media"]) == 1 and listed["next_token"] == 1
    names = {m["upload_name"] for m in (await hs.ok("GET", f"{ADMIN}/users/{alice.user_id}/media", root))["media"]}
    assert names == {"leak.png", "minutes.pdf"}
    media_id = pic.split("/")[1]
    deleted = await hs.ok("DELETE", f"{ADMIN}/media/{pic}", root)
    assert deleted == {"deleted_media": [media_id], "total": 1}
    await hs.err(404, "M_NOT_FOUND", "GET", f"/_matrix/client/v1/media/download/{pic}", bob)
    await hs.err(404, "M_NOT_FOUND", "DELETE", f"{ADMIN}/media/{pic}", root)
    await hs.err(404, "M_NOT_FOUND", "POST", f"{ADMIN}/media/quarantine/test.local/neverWas", root)
    rows, files = await leftovers(hs)
    assert rows == 1 and [f.name for f in files] == [doc.split("/")[1]]  # no file, no thumbnail remains
    await hs.ok("DELETE", f"{ADMIN}/users/{alice.user_id}/media", root)
    assert await leftovers(hs) == (0, [])
    # Each administrator's action is in the audit log: who, on what (a refused one is not).
    done = [(r["kind"], r["actor"], r["target"], r["details"]) async for r in hs.server.audit.export()
            if r["kind"].startswith("admin.media")]  # fmt: skip
    assert done == [
        ("admin.media_quarantine", root.user_id, f"mxc://{pic}", {}),
        ("admin.media_unquarantine", root.user_id, f"mxc://{pic}", {}),
        ("admin.media_delete", root.user_id, f"mxc://{pic}", {"uploader": alice.user_id}),
        ("admin.media_purge", root.user_id, alice.user_id, {"count": 1}),
    ]


async def _age(hs: Harness, mxc: str, days: int) -> None:
    async with hs.server.db.write() as conn:
        await conn.execute(
            update(media).where(media.c.media_id == mxc.split("/")[1]).values(created_ts=now_ms() - days * 86_400_000)
        )


async def test_purge_old_media_over_http(hs: Harness) -> None:
    alice, root = await hs.register("alice"), await make_admin(hs)
    old, new = await upload(hs, alice, b"old"), await upload(hs, alice, b"new")
    await _age(hs, old, 40)
    await hs.err(400, "M_MISSING_PARAM", "POST", f"{ADMIN}/media/delete", root)
    await hs.err(400, "M_INVALID_PARAM", "POST", f"{ADMIN}/media/delete", root, params={"before_ts": "soon"})
    res = await hs.ok("POST", f"{ADMIN}/media/delete", root, params={"before_ts": now_ms() - 30 * 86_400_000})
    assert res == {"deleted_media": [old.split("/")[1]], "total": 1}
    assert (await download(hs, alice, new)).status_code == 200
    # An ID from /create that was never filled is purged once it expired, whatever before_ts says.
    unused = (await hs.ok("POST", "/_matrix/media/v1/create", alice))["content_uri"].split("/")[-1]
    async with hs.server.db.write() as conn:
        await conn.execute(update(media).where(media.c.media_id == unused).values(expires_ts=now_ms() - 1))
    await hs.err(404, "M_NOT_FOUND", "PUT", f"/_matrix/media/v3/upload/test.local/{unused}", alice, content=b"x")
    res = await hs.ok("POST", f"{ADMIN}/media/delete", root, params={"before_ts": 0})
    assert res == {"deleted_media": [unused], "total": 1}


async def _cli(hs: Harness, *args: str) -> tuple[int, str]:
    """The real `paigham media …` command (Typer), run in a thread with its own event loop and its own
    connection to the same database and media store, as an admin would while the server runs."""
    cfg = hs.server.config
    argv = ["media", *args, "--data-dir", cfg.data_dir, "--database-url", cfg.database_url]
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, argv, env={"PAIGHAM_SERVER_NAME": cfg.server_name})
    return result.exit_code, result.output


async def test_cli_purge_quarantine_list_delete(hs: Harness) -> None:
    alice = await hs.register("alice")
    old, keep, doomed = (
        await upload(hs, alice, b"old", filename="old.txt"),
        await upload(hs, alice, b"keep"),
        await upload(hs, alice, b"doomed"),
    )
    await _age(hs, old, 31)
    code, out = await _cli(hs, "purge", "--older-than", "30d")
    assert code == 0 and "Deleted 1 media" in out, out
    assert (await download(hs, alice, old)).status_code == 404
    code, out = await _cli(hs, "quarantine", f"mxc://{keep}")
    assert code == 0, out
    assert (await download(hs, alice, keep)).status_code == 404
    code, out = await _cli(hs, "list", alice.user_id)
    assert code == 0 and "2 media" in out and f"{keep.split('/')[1]}" in out and "QUARANTINED" in out, out
    code, out = await _cli(hs, "delete", f"mxc://{doomed}")
    assert code == 0 and (await download(hs, alice, doomed)).status_code == 404
    done = [(r["kind"], r["target"]) async for r in hs.server.audit.export() if r["kind"].startswith("admin.media")]
    assert done == [
        ("admin.media_purge", None),
        ("admin.media_quarantine", f"mxc://{keep}"),
        ("admin.media_delete", f"mxc://{doomed}"),
    ]


async def test_scanner_refuses_infected_files_and_records_them(hs: Harness, tmp_path: Path) -> None:
    alice = await hs.register("alice")
    clamd = FakeClamd()
    port = await clamd.start_tcp()
    hs.server.media.scanner = ClamdScanner(host="127.0.0.1", port=port, timeout_s=5)
    try:
        clean = await upload(hs, alice, b"harmless report " * 10_000, "text/plain", "report.txt")
        assert clamd.scanned == [160_000]  # the whole plaintext went through the INSTREAM protocol
        body = await hs.err(
            403,
            "M_FORBIDDEN",
            "POST",
            UPLOAD,
            alice,
            content=b"x" * 70_000 + EICAR,
            headers={"Content-Type": "application/zip"},
            params={"filename": "invoice.zip"},
        )
        assert "Eicar-Test-Signature" in body["error"]
        rows, files = await leftovers(hs)
        assert rows == 1 and len(files) == 1  # only the clean file
        found = await hs.server.media.store.detections(10)
        assert [(d["user_id"], d["signature"], d["upload_name"]) for d in found] == [
            (alice.user_id, "Eicar-Test-Signature", "invoice.zip")
        ]
        assert (await download(hs, alice, clean)).status_code == 200
    finally:
        await clamd.stop()


async def test_scanner_over_unix_socket_and_fail_closed(hs: Harness, tmp_path: Path) -> None:
    alice = await hs.register("alice")
    clamd = FakeClamd(max_stream=1000)
    sock = tmp_path / "clamd.sock"
    await clamd.start_unix(sock)
    hs.server.media.scanner = ClamdScanner(socket_path=str(sock), timeout_s=5)
    try:
        await upload(hs, alice, b"small and clean")
        await hs.err(403, "M_FORBIDDEN", "POST", UPLOAD, alice, content=EICAR)
        # clamd's stream limit is an error, not a pass (it hangs up mid-stream; its answer is still read).
        body = await hs.err(503, "M_UNKNOWN", "POST", UPLOAD, alice, content=b"z" * 300_000)
        assert "size limit" in body["error"]
    finally:
        await clamd.stop()
    # No scanner answering: nothing is accepted unscanned.
    body = await hs.err(503, "M_UNKNOWN", "POST", UPLOAD, alice, content=b"anything")
    assert "virus" in body["error"]
    rows, files = await leftovers(hs)
    assert rows == 1 and len(files) == 1


CLAMD = shutil.which("clamd") or ("/usr/sbin/clamd" if os.path.exists("/usr/sbin/clamd") else None)


@pytest.mark.skipif(CLAMD is None and not os.environ.get("CI"), reason="clamd (Debian clamav-daemon) is not installed")
async def test_real_clamd(hs: Harness, tmp_path: Path) -> None:
    """Debian's clamd with a local signature for the EICAR test string (no signature download needed).
    `make test` installs clamav-daemon when missing; in CI a missing clamd fails this test."""
    assert CLAMD is not None, "clamd is missing: `make system-deps` installs Debian's clamav-daemon"
    db = tmp_path / "clamdb"
    db.mkdir()
    (db / "paigham-test.ndb").write_text(f"Paigham.Test.EICAR:0:*:{EICAR.hex()}\n")
    sock = tmp_path / "clamd.sock"
    conf = tmp_path / "clamd.conf"
    user = "User root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"Foreground yes\nLocalSocket {sock}\nDatabaseDirectory {db}\nStreamMaxLength 200M\n"
        f"LogFile {tmp_path / 'clamd.log'}\n{user}"
    )
    proc = await asyncio.create_subprocess_exec(
        CLAMD or "clamd", "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.1)
        assert sock.exists(), "clamd did not start"
        hs.server.media.scanner = ClamdScanner(socket_path=str(sock), timeout_s=20)
        alice = await hs.register("alice")
        await upload(hs, alice, b"an ordinary circular " * 1000, "text/plain")
        body = await hs.err(
            403,
            "M_FORBIDDEN",
            "POST",
            UPLOAD,
            alice,
            content=b"PK\x03\x04" + EICAR * 2,
            headers={"Content-Type": "application/zip"},
        )
        assert "Paigham.Test.EICAR" in body["error"]
        assert len((await leftovers(hs))[1]) == 1
    finally:
        proc.kill()
        await proc.wait()
