"""Server-side key backup: versions (create, get, update, delete) and keys at the three levels, with
the spec's replacement rule, etag/count semantics and errors. The data is opaque to the server."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Harness, User
from tests.api.e2ee_support import spec_conformance  # noqa: F401 - autouse fixture

V3 = "/_matrix/client/v3"
ALG = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:test.local"


def key(fmi: int = 0, fwd: int = 0, verified: bool = False, data: str = "c1") -> dict[str, Any]:
    return {
        "first_message_index": fmi,
        "forwarded_count": fwd,
        "is_verified": verified,
        "session_data": {"ephemeral": "e", "ciphertext": data, "mac": "m"},
    }


async def make_backup(hs: Harness, user: User) -> str:
    r = await hs.ok(
        "POST",
        f"{V3}/room_keys/version",
        user,
        json={"algorithm": ALG, "auth_data": {"public_key": "pk", "signatures": {}}},
    )
    return str(r["version"])


async def test_versions_lifecycle(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/room_keys/version", alice)
    v1 = await make_backup(hs, alice)
    cur = await hs.ok("GET", f"{V3}/room_keys/version", alice)
    assert cur == {
        "version": v1,
        "algorithm": ALG,
        "auth_data": {"public_key": "pk", "signatures": {}},
        "count": 0,
        "etag": cur["etag"],
    }
    assert isinstance(cur["etag"], str)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/room_keys/version", bob)  # backups are per user
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/room_keys/version/{v1}", bob)

    path = f"{V3}/room_keys/version/{v1}"
    await hs.ok("PUT", path, alice, json={"algorithm": ALG, "auth_data": {"public_key": "pk2"}, "version": v1})
    assert (await hs.ok("GET", path, alice))["auth_data"] == {"public_key": "pk2"}
    await hs.err(400, "M_INVALID_PARAM", "PUT", path, alice, json={"algorithm": "other", "auth_data": {}})
    await hs.err(400, "M_INVALID_PARAM", "PUT", path, alice, json={"algorithm": ALG, "auth_data": {}, "version": "9"})
    await hs.err(400, "M_BAD_JSON", "PUT", path, alice, json={"algorithm": ALG})
    await hs.err(
        404, "M_NOT_FOUND", "PUT", f"{V3}/room_keys/version/77", alice, json={"algorithm": ALG, "auth_data": {}}
    )
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/room_keys/version", alice, json={"algorithm": 5, "auth_data": {}})
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/room_keys/version", alice, json={"algorithm": ALG})

    v2 = await make_backup(hs, alice)
    assert int(v2) > int(v1)
    assert (await hs.ok("GET", f"{V3}/room_keys/version", alice))["version"] == v2
    await hs.ok("DELETE", f"{V3}/room_keys/version/{v2}", alice)
    await hs.ok("DELETE", f"{V3}/room_keys/version/{v2}", alice)  # deleting twice succeeds
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/room_keys/version/{v2}", alice)
    assert (await hs.ok("GET", f"{V3}/room_keys/version", alice))["version"] == v1  # the older one is current
    await hs.err(404, "M_NOT_FOUND", "DELETE", f"{V3}/room_keys/version/55", alice)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/room_keys/version/not-a-number", alice)
    v3 = await make_backup(hs, alice)
    assert int(v3) > int(v2)  # numbers are never reused


async def test_keys_three_levels_merge_and_etag(hs: Harness) -> None:
    alice = await hs.register("alice")
    v = await make_backup(hs, alice)
    q = {"version": v}
    r = await hs.ok(
        "PUT",
        f"{V3}/room_keys/keys",
        alice,
        params=q,
        json={"rooms": {ROOM: {"sessions": {"s1": key(5), "s2": key(0)}}}},
    )
    assert r["count"] == 2
    etag1 = r["etag"]
    r = await hs.ok("PUT", f"{V3}/room_keys/keys/{ROOM}", alice, params=q, json={"sessions": {"s3": key(1)}})
    assert r["count"] == 3 and r["etag"] != etag1
    r = await hs.ok("PUT", f"{V3}/room_keys/keys/{ROOM}/s4", alice, params=q, json=key(2))
    assert r["count"] == 4
    etag = r["etag"]

    # a worse key (higher first_message_index, unverified) does not replace; the etag stays
    r = await hs.ok("PUT", f"{V3}/room_keys/keys/{ROOM}/s1", alice, params=q, json=key(9, data="worse"))
    assert r == {"count": 4, "etag": etag}
    # a better one does: lower index; then a verified one beats a lower index
    await hs.ok("PUT", f"{V3}/room_keys/keys/{ROOM}/s1", alice, params=q, json=key(3, data="better"))
    assert (await hs.ok("GET", f"{V3}/room_keys/keys/{ROOM}/s1", alice, params=q))["session_data"][
        "ciphertext"
    ] == "better"
    await hs.ok("PUT", f"{V3}/room_keys/keys/{ROOM}/s1", alice, params=q, json=key(4, verified=True, data="verified"))
    await hs.ok("PUT", f"{V3}/room_keys/keys/{ROOM}/s1", alice, params=q, json=key(0, data="unverified"))
    got = await hs.ok("GET", f"{V3}/room_keys/keys/{ROOM}/s1", alice, params=q)
    assert got == key(4, verified=True, data="verified")
    # equal index and verification: the lower forwarded_count wins
    await hs.ok("PUT", f"{V3}/room_keys/keys/{ROOM}/s2", alice, params=q, json=key(0, fwd=2, data="fwd"))
    assert (await hs.ok("GET", f"{V3}/room_keys/keys/{ROOM}/s2", alice, params=q))["session_data"]["ciphertext"] == "c1"

    everything = await hs.ok("GET", f"{V3}/room_keys/keys", alice, params=q)
    assert sorted(everything["rooms"][ROOM]["sessions"]) == ["s1", "s2", "s3", "s4"]
    room = await hs.ok("GET", f"{V3}/room_keys/keys/{ROOM}", alice, params=q)
    assert sorted(room["sessions"]) == ["s1", "s2", "s3", "s4"]
    assert await hs.ok("GET", f"{V3}/room_keys/keys/!other:test.local", alice, params=q) == {"sessions": {}}
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/room_keys/keys/{ROOM}/nope", alice, params=q)
    info = await hs.ok("GET", f"{V3}/room_keys/version/{v}", alice)
    assert info["count"] == 4

    r = await hs.ok("DELETE", f"{V3}/room_keys/keys/{ROOM}/s4", alice, params=q)
    assert r["count"] == 3
    r = await hs.ok("DELETE", f"{V3}/room_keys/keys/{ROOM}", alice, params=q)
    assert r["count"] == 0
    await hs.ok("PUT", f"{V3}/room_keys/keys/{ROOM}/s9", alice, params=q, json=key())
    r = await hs.ok("DELETE", f"{V3}/room_keys/keys", alice, params=q)
    assert r["count"] == 0
    assert await hs.ok("GET", f"{V3}/room_keys/keys", alice, params=q) == {"rooms": {}}


async def test_keys_errors(hs: Harness) -> None:
    alice = await hs.register("alice")
    bob = await hs.register("bob")
    body = {"rooms": {ROOM: {"sessions": {"s1": key()}}}}
    await hs.err(404, "M_NOT_FOUND", "PUT", f"{V3}/room_keys/keys", alice, params={"version": "1"}, json=body)
    v1 = await make_backup(hs, alice)
    v2 = await make_backup(hs, alice)
    e = await hs.err(
        403, "M_WRONG_ROOM_KEYS_VERSION", "PUT", f"{V3}/room_keys/keys", alice, params={"version": v1}, json=body
    )
    assert e["current_version"] == v2
    await hs.err(400, "M_MISSING_PARAM", "PUT", f"{V3}/room_keys/keys", alice, json=body)
    await hs.err(400, "M_MISSING_PARAM", "GET", f"{V3}/room_keys/keys", alice)
    q = {"version": v2}
    bad: dict[str, Any]
    for bad in (
        {"rooms": []},
        {"rooms": {ROOM: {"sessions": {"s": {**key(), "first_message_index": -1}}}}},
        {"rooms": {ROOM: {"sessions": {"s": {**key(), "is_verified": "yes"}}}}},
        {"rooms": {ROOM: {"sessions": {"s": {**key(), "session_data": "plain"}}}}},
        {"rooms": {ROOM: {"nosessions": {}}}},
    ):
        await hs.err(400, "M_BAD_JSON", "PUT", f"{V3}/room_keys/keys", alice, params=q, json=bad)
    await hs.err(400, "M_BAD_JSON", "PUT", f"{V3}/room_keys/keys/{ROOM}/s1", alice, params=q, json={"x": 1})
    assert (await hs.ok("GET", f"{V3}/room_keys/version", alice))["count"] == 0  # nothing half-written
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/room_keys/keys", bob, params=q)
    await hs.err(404, "M_NOT_FOUND", "DELETE", f"{V3}/room_keys/keys", bob, params=q)
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"{V3}/room_keys/version", None)
