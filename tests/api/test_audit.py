"""The audit log: what is recorded, the hash chain, verification of tampering, export and retention."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import delete, update
from typer.testing import CliRunner

from paigham.cli.main import app as cli
from paigham.domain.audit_chain import GENESIS, record_hash
from paigham.storage.audit_schema import audit_log
from tests.api.conftest import Harness

LOGIN = "/_matrix/client/v3/login"


async def records(hs: Harness, kind: str | None = None) -> list[dict[str, Any]]:
    return [r async for r in hs.server.audit.export(kinds=[kind] if kind else None)]


async def test_logins_devices_rooms_and_memberships_are_recorded(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    await hs.err(
        403,
        "M_FORBIDDEN",
        "POST",
        LOGIN,
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "wrong",
            "device_id": "EVIL",
        },
    )
    res = await hs.ok(
        "POST",
        LOGIN,
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": alice.password,
            "device_id": "PHONE",
        },
    )
    assert res["device_id"] == "PHONE"
    room = await hs.create_room(alice, invite=[bob.user_id])
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{room}/join", bob, json={})
    await hs.ok(
        "POST", "/_matrix/client/v3/logout", json={}, headers={"Authorization": f"Bearer {res['access_token']}"}
    )

    failed = await records(hs, "auth.login_failed")
    assert [(r["target"], r["ip"], r["device"], r["details"]["reason"]) for r in failed] == [
        ("@alice:test.local", "127.0.0.1", "EVIL", "bad password")
    ]
    ok = await records(hs, "auth.login")
    assert [(r["actor"], r["ip"], r["device"]) for r in ok] == [("@alice:test.local", "127.0.0.1", "PHONE")]
    added = [(r["actor"], r["device"]) for r in await records(hs, "device.added")]
    assert ("@alice:test.local", "PHONE") in added
    assert [(r["actor"], r["device"]) for r in await records(hs, "device.removed")] == [("@alice:test.local", "PHONE")]
    created = await records(hs, "room.created")
    assert [(r["actor"], r["target"]) for r in created] == [(alice.user_id, room)]
    members = [
        (r["actor"], r["target"], r["details"]["membership"], r["details"]["previous"])
        for r in await records(hs, "room.membership")
    ]
    assert members == [
        (alice.user_id, alice.user_id, "join", None),
        (alice.user_id, bob.user_id, "invite", None),
        (bob.user_id, bob.user_id, "join", "invite"),
    ]
    assert (await hs.server.audit.verify()).ok


async def test_chain_links_each_record_to_the_one_before(hs: Harness) -> None:
    audit = hs.server.audit
    for i in range(5):
        await audit.record("admin.test", "@admin:test.local", f"@u{i}:test.local", "10.0.0.1", None, {"i": i})
    recs = await records(hs)
    assert [r["seq"] for r in recs] == [1, 2, 3, 4, 5]
    prev = GENESIS
    for r in recs:
        body = {k: r[k] for k in ("seq", "ts", "kind", "actor", "target", "ip", "device", "details")}
        assert r["prev_hash"] == prev and r["hash"] == record_hash(prev, body)
        prev = r["hash"]
    head = await audit.store.head()
    assert (head.seq, head.hash) == (5, prev)


async def _five(hs: Harness) -> None:
    for i in range(5):
        await hs.server.audit.record("admin.test", "@admin:test.local", f"@u{i}:test.local", details={"i": i})


async def test_verify_catches_an_altered_record(hs: Harness) -> None:
    await _five(hs)
    assert (await hs.server.audit.verify()).ok
    async with hs.server.db.write() as conn:
        await conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor="@someone-else:test.local"))
    report = await hs.server.audit.verify()
    assert report.broken is not None and report.broken.seq == 3 and "altered" in report.broken.reason
    assert report.checked == 2


async def test_verify_catches_a_deleted_record(hs: Harness) -> None:
    await _five(hs)
    async with hs.server.db.write() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq == 2))
    report = await hs.server.audit.verify()
    assert report.broken is not None and report.broken.seq == 2 and "missing" in report.broken.reason


async def test_verify_catches_removed_newest_records_and_relinked_hashes(hs: Harness) -> None:
    await _five(hs)
    async with hs.server.db.write() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq >= 4))
    report = await hs.server.audit.verify()
    assert report.broken is not None and report.broken.seq == 4 and "end" in report.broken.reason


async def test_retention_purge_keeps_the_chain_verifiable(hs: Harness) -> None:
    await _five(hs)
    async with hs.server.db.write() as conn:  # pretend the first three are a year old
        await conn.execute(update(audit_log).where(audit_log.c.seq <= 3).values(ts=1_000))
    # the stored hashes cover ts, so re-chain the aged records the way they would have been written
    async with hs.server.db.write() as conn:
        prev = GENESIS
        for r in await records(hs):
            body = {k: r[k] for k in ("seq", "ts", "kind", "actor", "target", "ip", "device", "details")}
            h = record_hash(prev, body)
            await conn.execute(update(audit_log).where(audit_log.c.seq == r["seq"]).values(prev_hash=prev, hash=h))
            prev = h
        from paigham.storage.audit_schema import audit_head

        await conn.execute(update(audit_head).values(hash=prev))
    assert (await hs.server.audit.verify()).ok
    assert await hs.server.audit.purge_expired() == 3
    recs = await records(hs)
    assert [r["seq"] for r in recs] == [4, 5, 6] and recs[-1]["kind"] == "audit.purged"
    report = await hs.server.audit.verify()
    assert report.ok and report.checked == 3 and report.first_seq == 4
    assert "after record 3, removed by the retention purge" in report.start  # vouched for, signed
    assert "signed checkpoint: record 6" in report.start
    async with hs.server.db.write() as conn:  # removing the new first record is still caught
        await conn.execute(delete(audit_log).where(audit_log.c.seq == 4))
    assert (await hs.server.audit.verify()).broken.seq == 4  # type: ignore[union-attr]


def test_cli_export_and_verify(database_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    assert runner.invoke(cli, ["user", "create", "clerk", "--password", "pw", *common]).exit_code == 0

    import asyncio

    from paigham.app import Server
    from paigham.config import Config

    async def seed() -> None:
        srv = Server(Config(data_dir=str(tmp_path / "data"), database_url=database_url, create_admin=False))
        await srv.audit.record("auth.login", "@clerk:localhost", "@clerk:localhost", "192.0.2.7", "DEV1")
        await srv.audit.record("admin.test", "@admin:localhost", "@clerk:localhost", details={"n": 1})
        await srv.db.close()

    asyncio.run(seed())
    res = runner.invoke(cli, ["audit", "verify", *common])
    # (the CLI's own `user create` is the first record: admin commands are audited, issue 14 #4)
    assert res.exit_code == 0 and "OK: 3 records verified" in res.output, res.output
    res = runner.invoke(cli, ["audit", "export", "--since", "2000-01-01", *common])
    lines = [json.loads(x) for x in res.output.splitlines()]
    assert [x["kind"] for x in lines] == ["admin.create_user", "auth.login", "admin.test"]
    assert lines[0]["actor"].startswith("os:") and lines[1]["ip"] == "192.0.2.7"
    assert lines[0]["time"].endswith("Z")
    res = runner.invoke(cli, ["audit", "export", "--kind", "admin.test", "--format", "csv", *common])
    assert res.exit_code == 0 and res.output.splitlines()[0].startswith("seq,time")
    assert len(res.output.splitlines()) == 2
    res = runner.invoke(cli, ["audit", "export", "--since", "3000-01-01", *common])
    assert res.exit_code == 0 and res.output == ""
    res = runner.invoke(cli, ["audit", "export", "--since", "yesterday", *common])
    assert res.exit_code == 2

    async def tamper() -> None:
        srv = Server(Config(data_dir=str(tmp_path / "data"), database_url=database_url, create_admin=False))
        async with srv.db.write() as conn:
            await conn.execute(update(audit_log).where(audit_log.c.seq == 1).values(ip="198.51.100.1"))
        await srv.db.close()

    asyncio.run(tamper())
    res = runner.invoke(cli, ["audit", "verify", *common])
    assert res.exit_code == 1 and "BROKEN at record 1" in res.output


async def test_a_moved_anchor_without_a_signed_checkpoint_is_caught(hs: Harness) -> None:
    """Issue 14 #11: on 81fc255 `verify` accepted a log whose first records were deleted and whose anchor
    was moved to match. A retention purge signs a checkpoint for the anchor it sets; an anchor nobody
    signed for is reported, and `verify` says where the chain starts and why."""
    await _five(hs)
    recs = await records(hs)
    from paigham.storage.audit_schema import audit_head

    async with hs.server.db.write() as conn:  # someone with database access, not the signing key
        await conn.execute(delete(audit_log).where(audit_log.c.seq <= 2))
        await conn.execute(update(audit_head).values(anchor_seq=2, anchor_hash=recs[1]["hash"]))
    report = await hs.server.audit.verify()
    assert report.broken is not None and report.broken.seq == 3
    assert "no checkpoint signed by this server" in report.broken.reason
