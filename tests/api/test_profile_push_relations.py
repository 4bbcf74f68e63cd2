"""Profiles, presence, user directory, push rules, aliases, relations, threads and aggregations."""

from __future__ import annotations

import uuid

from paigham.types import JsonDict
from tests.api.conftest import Harness, User

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


async def send_content(hs: Harness, user: User, room: str, content: JsonDict, etype: str = "m.room.message") -> str:
    res = await hs.ok("PUT", f"{V3}/rooms/{room}/send/{etype}/{uuid.uuid4().hex}", user, json=content)
    return str(res["event_id"])


async def test_profile_propagates_to_rooms(hs: Harness) -> None:
    a = await hs.register("alice")
    room = await hs.create_room(a)
    await hs.ok("PUT", f"{V3}/profile/{a.user_id}/displayname", a, json={"displayname": "Alice Verma"})
    await hs.ok("PUT", f"{V3}/profile/{a.user_id}/avatar_url", a, json={"avatar_url": "mxc://test.local/abc"})
    prof = await hs.ok("GET", f"{V3}/profile/{a.user_id}")
    assert prof == {"displayname": "Alice Verma", "avatar_url": "mxc://test.local/abc"}
    assert await hs.ok("GET", f"{V3}/profile/{a.user_id}/displayname") == {"displayname": "Alice Verma"}
    member = await hs.ok("GET", f"{V3}/rooms/{room}/state/m.room.member/{a.user_id}", a)
    assert member["displayname"] == "Alice Verma" and member["avatar_url"] == "mxc://test.local/abc"
    await hs.err(400, "M_BAD_JSON", "PUT", f"{V3}/profile/{a.user_id}/avatar_url", a, json={"avatar_url": "http://x"})
    await hs.err(400, "M_BAD_JSON", "PUT", f"{V3}/profile/{a.user_id}/displayname", a, json={"displayname": 5})
    await hs.err(400, "M_MISSING_PARAM", "PUT", f"{V3}/profile/{a.user_id}/displayname", a, json={})
    b = await hs.register("bob")
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/profile/{a.user_id}/displayname", b, json={"displayname": "x"})
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/profile/@ghost:test.local")
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/profile/not-a-user")
    await hs.ok("DELETE", f"{V3}/profile/{a.user_id}/avatar_url", a)
    assert "avatar_url" not in await hs.ok("GET", f"{V3}/profile/{a.user_id}")


async def test_presence(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    since = (await hs.sync(b))["next_batch"]
    await hs.ok(
        "PUT", f"{V3}/presence/{a.user_id}/status", a, json={"presence": "unavailable", "status_msg": "In a meeting"}
    )
    got = await hs.ok("GET", f"{V3}/presence/{a.user_id}/status", b)
    assert got["presence"] == "unavailable" and got["status_msg"] == "In a meeting"
    s = await hs.sync(b, since, set_presence="offline")
    assert any(e["sender"] == a.user_id and e["content"]["presence"] == "unavailable" for e in s["presence"]["events"])
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{V3}/presence/{a.user_id}/status", a, json={"presence": "busy"})
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/presence/{b.user_id}/status", a, json={"presence": "online"})


async def test_user_directory(hs: Harness) -> None:
    a = await hs.register("alice")
    await hs.register("rsharma")
    await hs.ok(
        "PUT",
        f"{V3}/profile/@rsharma:test.local/displayname",
        next(u for u in hs.users if u.user_id == "@rsharma:test.local"),
        json={"displayname": "Ravi Sharma"},
    )
    res = await hs.ok("POST", f"{V3}/user_directory/search", a, json={"search_term": "sharma"})
    assert [r["user_id"] for r in res["results"]] == ["@rsharma:test.local"]
    assert res["results"][0]["display_name"] == "Ravi Sharma"
    await hs.err(400, "M_BAD_JSON", "POST", f"{V3}/user_directory/search", a, json={"limit": 5})


async def test_push_rules_api(hs: Harness) -> None:
    a = await hs.register("alice")
    rules = await hs.ok("GET", f"{V3}/pushrules/", a)
    assert rules["global"]["override"][0]["rule_id"] == ".m.rule.master"
    since = (await hs.sync(a))["next_batch"]
    await hs.ok(
        "PUT",
        f"{V3}/pushrules/global/content/budget",
        a,
        json={"pattern": "budget", "actions": ["notify", {"set_tweak": "highlight"}]},
    )
    rule = await hs.ok("GET", f"{V3}/pushrules/global/content/budget", a)
    assert rule["pattern"] == "budget" and rule["enabled"] is True
    await hs.ok("PUT", f"{V3}/pushrules/global/override/.m.rule.master/enabled", a, json={"enabled": True})
    assert (await hs.ok("GET", f"{V3}/pushrules/global/override/.m.rule.master/enabled", a)) == {"enabled": True}
    await hs.ok("PUT", f"{V3}/pushrules/global/content/budget/actions", a, json={"actions": ["notify"]})
    assert (await hs.ok("GET", f"{V3}/pushrules/global/content/budget/actions", a)) == {"actions": ["notify"]}
    s = await hs.sync(a, since)
    pushed = [e for e in s["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert pushed and pushed[0]["content"]["global"]["override"][0]["enabled"] is True
    await hs.ok("DELETE", f"{V3}/pushrules/global/content/budget", a)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/pushrules/global/content/budget", a)
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V3}/pushrules/global/bogus/x", a)
    await hs.err(400, "M_MISSING_PARAM", "PUT", f"{V3}/pushrules/global/content/x", a, json={"actions": []})


async def test_master_rule_silences_unread_counts(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    await hs.ok("PUT", f"{V3}/pushrules/global/override/.m.rule.master/enabled", b, json={"enabled": True})
    await hs.send(a, room, "quiet please")
    s = await hs.sync(b)
    assert s["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 0


async def test_alias_api(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a)
    alias = "%23desk:test.local"
    await hs.ok("PUT", f"{V3}/directory/room/{alias}", a, json={"room_id": room})
    await hs.err(409, "M_UNKNOWN", "PUT", f"{V3}/directory/room/{alias}", a, json={"room_id": room})
    assert (await hs.ok("GET", f"{V3}/rooms/{room}/aliases", a))["aliases"] == ["#desk:test.local"]
    await hs.err(403, "M_FORBIDDEN", "PUT", f"{V3}/directory/room/%23other:test.local", b, json={"room_id": room})
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{V3}/directory/room/%23x:elsewhere.org", a, json={"room_id": room})
    await hs.err(403, "M_FORBIDDEN", "DELETE", f"{V3}/directory/room/{alias}", b)
    await hs.ok("DELETE", f"{V3}/directory/room/{alias}", a)
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V3}/directory/room/{alias}")


async def test_edits_threads_and_relations(hs: Harness) -> None:
    a, b = await hs.register("alice"), await hs.register("bob")
    room = await hs.create_room(a, preset="public_chat")
    await hs.ok("POST", f"{V3}/rooms/{room}/join", b, json={})
    root = await hs.send(a, room, "Draft order")
    await send_content(
        hs,
        a,
        room,
        {
            "msgtype": "m.text",
            "body": "* Final order",
            "m.new_content": {"msgtype": "m.text", "body": "Final order"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": root},
        },
    )
    replies = [
        await send_content(
            hs,
            b,
            room,
            {"msgtype": "m.text", "body": f"reply {i}", "m.relates_to": {"rel_type": "m.thread", "event_id": root}},
        )
        for i in range(3)
    ]
    reaction = await send_content(
        hs, b, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}, "m.reaction"
    )
    ev = await hs.ok("GET", f"{V3}/rooms/{room}/event/{root}", b)
    rel = ev["unsigned"]["m.relations"]
    assert rel["m.replace"]["content"]["m.new_content"]["body"] == "Final order"
    assert rel["m.thread"]["count"] == 3 and rel["m.thread"]["latest_event"]["event_id"] == replies[-1]
    assert rel["m.thread"]["current_user_participated"] is True
    all_rel = await hs.ok("GET", f"{V1}/rooms/{room}/relations/{root}", b)
    assert len(all_rel["chunk"]) == 5
    threads_only = await hs.ok("GET", f"{V1}/rooms/{room}/relations/{root}/m.thread", b, params={"limit": 2})
    assert [e["event_id"] for e in threads_only["chunk"]] == [replies[2], replies[1]]
    page2 = await hs.ok(
        "GET",
        f"{V1}/rooms/{room}/relations/{root}/m.thread",
        b,
        params={"limit": 2, "from": threads_only["next_batch"]},
    )
    assert [e["event_id"] for e in page2["chunk"]] == [replies[0]]
    reactions = await hs.ok("GET", f"{V1}/rooms/{room}/relations/{root}/m.annotation/m.reaction", b)
    assert [e["event_id"] for e in reactions["chunk"]] == [reaction]
    threads = await hs.ok("GET", f"{V1}/rooms/{room}/threads", b)
    assert [e["event_id"] for e in threads["chunk"]] == [root]
    mine = await hs.ok("GET", f"{V1}/rooms/{room}/threads", a, params={"include": "participated"})
    assert [e["event_id"] for e in mine["chunk"]] == [root]
    await hs.err(404, "M_NOT_FOUND", "GET", f"{V1}/rooms/{room}/relations/$missing", b)
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{V1}/rooms/{room}/threads", b, params={"include": "x"})


async def test_fixed_answers_without_bridges_turn_or_oauth(hs: Harness) -> None:
    a = await hs.register("alice")
    assert (await hs.ok("GET", f"{V3}/thirdparty/protocols", a)) == {}
    assert (await hs.ok("GET", f"{V3}/voip/turnServer", a)) == {}
    assert (await hs.ok("GET", f"{V3}/account/3pid", a)) == {"threepids": []}
    await hs.err(404, "M_UNRECOGNIZED", "GET", f"{V1}/auth_metadata")
