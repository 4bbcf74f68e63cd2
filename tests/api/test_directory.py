"""The organisation directory: cross-script search, ranking, scope, extended profile fields."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from typing import Any

import pytest

from paigham.org.importer import read_bytes
from paigham.storage.directory import DirectoryIndex
from tests.api.conftest import Harness, User
from tests.reconfigure import reconfigure

SEARCH = "/_matrix/client/v3/user_directory/search"

ORG = {
    "units": [
        {
            "unit_id": "MOF",
            "kind": "ministry",
            "names": {"en": "Ministry of Finance", "hi": "वित्त मंत्रालय", "ur": "وزارت خزانہ"},
        },
        {"unit_id": "MHA", "kind": "ministry", "names": {"en": "Ministry of Home Affairs", "hi": "गृह मंत्रालय"}},
    ],
    "officials": [
        {
            "employee_id": "E1",
            "user_id": "rsharma",
            "names": {"en": "Rakesh Sharma"},
            "designation": {"en": "Joint Secretary"},
            "unit_id": "MOF",
        },
        {
            "employee_id": "E2",
            "user_id": "u2",
            "names": {"hi": "सुनीता शर्मा"},
            "designation": {"hi": "अवर सचिव"},
            "unit_id": "MHA",
        },
        {
            "employee_id": "E3",
            "user_id": "u3",
            "names": {"ur": "عمران شرما"},
            "designation": {"ur": "جوائنٹ سیکرٹری"},
            "unit_id": "MHA",
        },
        {
            "employee_id": "E4",
            "user_id": "vverma",
            "names": {"en": "Vikram Verma", "hi": "विक्रम वर्मा"},
            "designation": {"en": "Section Officer"},
            "unit_id": "MOF",
        },
        {
            "employee_id": "E5",
            "user_id": "u5",
            "names": {"hi": "परवीन ख़ान", "ur": "پروین خان"},
            "designation": {"en": "Deputy Secretary"},
            "unit_id": "MOF",
        },
        {"employee_id": "E6", "user_id": "u6", "names": {"hi": "अमित क़ुरैशी"}, "unit_id": "MOF"},
        {"employee_id": "E7", "user_id": "sharmila", "names": {"en": "Sharmila Rao"}, "unit_id": "MHA"},
        {
            "employee_id": "E8",
            "user_id": "gone",
            "names": {"en": "Gopal Sharma"},
            "unit_id": "MHA",
            "status": "deactivated",
        },
        {
            "employee_id": "E9",
            "user_id": "paused",
            "names": {"en": "Pawan Sharma"},
            "unit_id": "MHA",
            "status": "suspended",
        },
        {
            "employee_id": "E10",
            "user_id": "old",
            "names": {"en": "Om Sharma"},
            "unit_id": "MHA",
            "expires": "2001-01-01",
        },
    ],
}


async def search(hs: Harness, user: User, term: str, limit: int = 20) -> list[str]:
    res = await hs.ok("POST", SEARCH, user, json={"search_term": term, "limit": limit})
    return [r["user_id"].split(":")[0][1:] for r in res["results"]]


async def test_cross_script_search_ranking_and_scope(hs: Harness) -> None:
    plan = await hs.server.org.import_rows(read_bytes(json.dumps(ORG).encode(), "org.json"), dry_run=False, actor=None)
    assert plan.ok, plan.errors
    me = await hs.register("observer")  # not an official, shares no room with anyone

    # Latin finds Devanagari and Urdu, and the other way round; the Latin spelling ranks first, and
    # "Sharmila" (whose consonants start like Sharma's) comes after every Sharma.
    assert await search(hs, me, "sharma") == ["rsharma", "u2", "u3", "sharmila"]
    assert await search(hs, me, "शर्मा") == ["u2", "rsharma", "u3", "sharmila"]
    urdu = await search(hs, me, "شرما")
    assert urdu[0] == "u3" and sorted(urdu[1:3]) == ["rsharma", "u2"] and urdu[3:] == ["sharmila"]
    # prefixes as one types; "sharmila" is a different name and only matches a longer prefix
    assert set(await search(hs, me, "shar")) == {"rsharma", "u2", "u3", "sharmila"}
    assert (await search(hs, me, "sharmi"))[0] == "sharmila"  # an exact prefix beats the consonant skeleton
    assert await search(hs, me, "khan") == ["u5"] and await search(hs, me, "ख़ान") == ["u5"]
    assert await search(hs, me, "qureshi") == ["u6"] and await search(hs, me, "Qureshi Amit") == ["u6"]
    # Unicode normalisation: the decomposed nukta (क + ़) equals the precomposed क़
    assert await search(hs, me, unicodedata.normalize("NFD", "क़ुरैशी")) == ["u6"]
    assert await search(hs, me, "verma") == ["vverma"] and await search(hs, me, "वर्मा") == ["vverma"]
    # designations, in any script, and units
    assert await search(hs, me, "joint secretary") == ["rsharma", "u3"]
    assert await search(hs, me, "secretary") == ["rsharma", "u5", "u3"] or set(await search(hs, me, "secretary")) == {
        "rsharma",
        "u5",
        "u3",
    }
    assert (await search(hs, me, "sachiv"))[0] == "u2"  # सचिव; "Section" shares only its first consonants
    assert set(await search(hs, me, "finance")) == {"rsharma", "vverma", "u5", "u6"}
    assert await search(hs, me, "sharma home") == ["u2", "u3", "sharmila"]
    # deactivated, suspended and expired officials are not listed; nonsense finds nothing
    assert "gone" not in await search(hs, me, "gopal") and await search(hs, me, "pawan") == []
    assert await search(hs, me, "om sharma") == []
    assert await search(hs, me, "zebra") == [] and await search(hs, me, "  ") == []
    res = await hs.ok("POST", SEARCH, me, json={"search_term": "sharma", "limit": 2})
    assert len(res["results"]) == 2 and res["limited"] is True
    await hs.err(400, "M_BAD_JSON", "POST", SEARCH, me, json={"search_term": 5})
    await hs.err(400, "M_INVALID_PARAM", "POST", SEARCH, me, json={"search_term": "x" * 300})

    # accounts that are not officials are ranked by the same rules: a prefix of "sharmaji" beats the
    # other scripts' consonant skeletons
    other = await hs.register("sharmaji")
    assert await search(hs, me, "sharmaji") == ["sharmaji"]
    assert await search(hs, me, "sharma") == ["rsharma", "sharmaji", "u2", "u3", "sharmila"]

    # closed user group off: only people sharing a room are found
    reconfigure(hs.server.config, user_directory_scope="shared_rooms")
    assert await search(hs, me, "sharma") == []
    room = await hs.create_room(me, preset="public_chat")
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{room}/join", other, json={})
    assert await search(hs, me, "sharma") == ["sharmaji"]
    await hs.server.auth.set_password("@rsharma:test.local", "pw-r")
    s = await hs.server.auth.start_session("@rsharma:test.local", None, None)
    rakesh = User("@rsharma:test.local", s.access_token, s.device_id, "pw-r")
    await hs.ok("POST", f"/_matrix/client/v3/rooms/{room}/join", rakesh, json={})
    assert await search(hs, me, "sharma") == ["rsharma", "sharmaji"]


async def test_extended_profile_and_display_name_format(hs: Harness) -> None:
    plan = await hs.server.org.import_rows(read_bytes(json.dumps(ORG).encode(), "org.json"), dry_run=False, actor=None)
    assert plan.ok
    viewer = await hs.register("viewer")
    prof: dict[str, Any] = await hs.ok("GET", "/_matrix/client/v3/profile/@rsharma:test.local", viewer)
    assert prof == {
        "displayname": "Rakesh Sharma (Joint Secretary, Ministry of Finance)",
        "org.paigham.designation": "Joint Secretary",
        "org.paigham.unit": "Ministry of Finance",
        "org.paigham.unit_id": "MOF",
    }
    field = await hs.ok("GET", "/_matrix/client/v3/profile/@u2:test.local/org.paigham.unit", viewer)
    assert field == {"org.paigham.unit": "Ministry of Home Affairs"}
    # names without an English form fall back to what exists
    assert (await hs.ok("GET", "/_matrix/client/v3/profile/@u3:test.local", viewer))[
        "displayname"
    ] == "عمران شرما (جوائنٹ سیکرٹری, Ministry of Home Affairs)"
    # an official cannot override the directory's display name; a non-official can
    await hs.server.auth.set_password("@rsharma:test.local", "pw-r")
    s = await hs.server.auth.start_session("@rsharma:test.local", None, None)
    rakesh = User("@rsharma:test.local", s.access_token, s.device_id, "pw-r")
    await hs.err(
        403,
        "M_FORBIDDEN",
        "PUT",
        "/_matrix/client/v3/profile/@rsharma:test.local/displayname",
        rakesh,
        json={"displayname": "Boss"},
    )
    await hs.ok(
        "PUT", "/_matrix/client/v3/profile/@viewer:test.local/displayname", viewer, json={"displayname": "Viewer V"}
    )
    reconfigure(hs.server.config, org_lock_displayname=False)
    await hs.ok("PUT", "/_matrix/client/v3/profile/@rsharma:test.local/displayname", rakesh, json={"displayname": "RS"})


async def test_independent_reads_of_a_search_are_in_flight_together_on_postgresql(
    hs: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A two-word search's units and pair read, then its candidates' terms and listing, do not depend
    on each other: on PostgreSQL each pair goes side by side (one round trip's wait instead of two); on
    SQLite, whose reads do not suspend, one after the other."""
    plan = await hs.server.org.import_rows(read_bytes(json.dumps(ORG).encode(), "org.json"), dry_run=False, actor=None)
    assert plan.ok, plan.errors
    me = await hs.register("observer")
    flight = {"now": 0, "most": 0}

    def counted(name: str) -> None:
        original = getattr(DirectoryIndex, name)

        async def read(self: DirectoryIndex, *args: Any) -> Any:
            flight["now"] += 1
            flight["most"] = max(flight["most"], flight["now"])
            try:
                await asyncio.sleep(0.01)
                return await original(self, *args)
            finally:
                flight["now"] -= 1

        monkeypatch.setattr(DirectoryIndex, name, read)

    for name in ("units", "pairs", "matches_of", "listed", "matches"):
        counted(name)
    assert await search(hs, me, "rakesh sharma") == ["rsharma"]
    suspend = hs.server.db.reads_suspend
    assert flight["most"] == (2 if suspend else 1)
    flight["most"] = 0
    assert (await search(hs, me, "sharma"))[0] == "rsharma"  # one word: its units and its ranges
    assert flight["most"] == (2 if suspend else 1)
