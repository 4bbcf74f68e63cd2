"""The directory of every account: plain accounts (registered, created by the admin API or the CLI,
bulk-provisioned) are found across scripts and ranked with the officials; the index follows display
names, deactivation and suspension, and is filled at start for accounts that lack it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from paigham.app import DIRECTORY_INDEXED
from paigham.cli.main import app as cli
from paigham.org.importer import read_bytes
from paigham.storage import directory
from tests.api.conftest import Harness, User, serve

SEARCH = "/_matrix/client/v3/user_directory/search"
V2 = "/_synapse/admin/v2"
V3 = "/_matrix/client/v3"


async def search(hs: Harness, user: User, term: str, limit: int = 20) -> list[str]:
    res = await hs.ok("POST", SEARCH, user, json={"search_term": term, "limit": limit})
    return [r["user_id"].split(":")[0][1:] for r in res["results"]]


async def named(hs: Harness, name: str, displayname: str) -> User:
    u = await hs.register(name)
    await hs.ok("PUT", f"{V3}/profile/{u.user_id}/displayname", u, json={"displayname": displayname})
    return u


async def test_plain_accounts_across_scripts(hs: Harness) -> None:
    me = await hs.register("observer")
    await named(hs, "u1", "राजेश शर्मा")  # Devanagari
    await named(hs, "u2", "راجیش شرما")  # Urdu
    await named(hs, "u3", "Rajesh Verma")  # Latin
    await named(hs, "u4", "Priya Nair")
    assert set(await search(hs, me, "rajesh")) == {"u1", "u2", "u3"}
    assert (await search(hs, me, "rajesh"))[0] == "u3"  # the same spelling first
    assert set(await search(hs, me, "राजेश")) == {"u1", "u2", "u3"}
    assert set(await search(hs, me, "راجیش")) == {"u1", "u2", "u3"}
    assert set(await search(hs, me, "sharma")) == {"u1", "u2"}
    assert set(await search(hs, me, "rajesh sharma")) == {"u1", "u2"}  # a pair of words of one name
    assert set(await search(hs, me, "sharma raj")) == {"u1", "u2"}  # in either order, the last one cut short
    assert set(await search(hs, me, "raj sharma")) == {"u1", "u2"}  # the first cut short: word by word
    assert await search(hs, me, "شرما راجیش") != [] and "u3" not in await search(hs, me, "شرما راجیش")
    # by localpart and by user ID
    assert await search(hs, me, "u4") == ["u4"] and await search(hs, me, "@u4:test.local") == ["u4"]
    assert await search(hs, me, "nair") == ["u4"] and await search(hs, me, "zebra") == []
    res = await hs.ok("POST", SEARCH, me, json={"search_term": "rajesh", "limit": 2})
    assert len(res["results"]) == 2 and res["limited"] is True


async def test_two_common_words_find_the_one_name_holding_both(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both words common (more holders each than a word-by-word search reads, SCAN — here 4 — of
    200,000 accounts' terms in the bench): the name holding the pair is still found, through the word
    pairs of each name (directory_pairs), which follow renames and deactivation."""
    monkeypatch.setattr(directory, "SCAN", 4)
    me = await hs.register("observer")
    for i in range(6):
        await named(hs, f"a{i}", f"Rajesh Verma{i}")
        await named(hs, f"b{i}", f"Anil Sharma{i}")
    target = await named(hs, "zz", "Rajesh Sharma")  # sorts after the others in every range
    assert await search(hs, me, "rajesh sharma") == ["zz"]
    assert await search(hs, me, "sharma rajesh") == ["zz"]
    await hs.ok("PUT", f"{V3}/profile/{target.user_id}/displayname", target, json={"displayname": "Rajesh Gupta"})
    assert await search(hs, me, "rajesh sharma") == []
    assert await search(hs, me, "rajesh gupta") == ["zz"]


ORG = {
    "units": [{"unit_id": "MOF", "kind": "ministry", "names": {"en": "Ministry of Finance", "hi": "वित्त मंत्रालय"}}],
    "officials": [
        {
            "employee_id": "E1",
            "user_id": "rk",
            "names": {"en": "Rajesh Kumar", "hi": "राजेश कुमार"},
            "designation": {"en": "Joint Secretary"},
            "unit_id": "MOF",
        },
        {"employee_id": "E2", "user_id": "anita", "names": {"hi": "अनीता राजेशवरी"}, "unit_id": "MOF"},
    ],
}


async def test_one_ranking_for_officials_and_plain_accounts(hs: Harness) -> None:
    plan = await hs.server.org.import_rows(read_bytes(json.dumps(ORG).encode(), "org.json"), dry_run=False, actor=None)
    assert plan.ok, plan.errors
    me = await hs.register("observer")
    await named(hs, "plain1", "Rajesh Sharma")
    await named(hs, "plain2", "Rajeshwar Singh")
    await named(hs, "plain3", "Kumar Secretary")  # a plain account whose name is the designation's word
    # exact words first (official and plain alike, then by display name), then prefixes
    ranked = await search(hs, me, "rajesh")
    assert ranked[:2] == ["rk", "plain1"] or ranked[:2] == ["plain1", "rk"]
    assert set(ranked[2:]) == {"plain2", "anita"}
    assert (await search(hs, me, "rajesh sharma"))[0] == "plain1"
    assert (await search(hs, me, "rajesh kumar"))[0] == "rk"
    # a name match outweighs a designation match; a unit match counts least
    assert await search(hs, me, "secretary") == ["plain3", "rk"]
    assert (await search(hs, me, "finance")) == ["rk", "anita"]  # both in the unit; by display name
    assert await search(hs, me, "kumar finance") == ["rk"]
    # the organisation's import renames and deactivates: the index follows in the same transaction
    changed = json.loads(json.dumps(ORG))
    changed["officials"][0]["names"] = {"en": "Rajesh Kulkarni"}
    changed["officials"][1]["status"] = "deactivated"
    plan = await hs.server.org.import_rows(
        read_bytes(json.dumps(changed).encode(), "o.json"), dry_run=False, actor=None
    )
    assert plan.ok, plan.errors
    assert await search(hs, me, "kumar") == ["plain3"] and await search(hs, me, "kulkarni") == ["rk"]
    assert "anita" not in await search(hs, me, "finance")


async def test_index_follows_changes(hs: Harness) -> None:
    me = await hs.register("observer")
    boss = await hs.register("boss")
    await hs.server.accounts.update_user(boss.user_id, admin=True)
    kavita = await named(hs, "kv", "Kavita Iyer")
    assert await search(hs, me, "kavita") == ["kv"]
    # a display-name change: the old name is gone, the new one found (in another script too)
    await hs.ok("PUT", f"{V3}/profile/{kavita.user_id}/displayname", kavita, json={"displayname": "कविता शर्मा"})
    assert await search(hs, me, "iyer") == [] and await search(hs, me, "kavita sharma") == ["kv"]
    # through the admin API
    await hs.ok("PUT", f"{V2}/users/{kavita.user_id}", boss, json={"displayname": "Kavita Menon"})
    assert await search(hs, me, "menon") == ["kv"] and await search(hs, me, "sharma") == []
    # suspended: hidden until unsuspended; deactivated: gone until reactivated
    await hs.ok("PUT", f"/_synapse/admin/v1/suspend/{kavita.user_id}", boss, json={"suspend": True})
    assert await search(hs, me, "kavita") == []
    await hs.ok("PUT", f"/_synapse/admin/v1/suspend/{kavita.user_id}", boss, json={"suspend": False})
    assert await search(hs, me, "kavita") == ["kv"]
    await hs.ok("POST", f"/_synapse/admin/v1/deactivate/{kavita.user_id}", boss, json={})
    assert await search(hs, me, "kavita") == [] and await search(hs, me, "kv") == []
    rows = await hs.server.db.fetch("SELECT count(*) FROM directory_terms WHERE user_id = $1", kavita.user_id)
    assert rows[0][0] == 0  # removed from the index, not only filtered
    await hs.ok("PUT", f"{V2}/users/{kavita.user_id}", boss, json={"deactivated": False, "password": "new-pass-1"})
    assert await search(hs, me, "kavita") == ["kv"]
    # erased on deactivation: the display name is gone from the index, only the localpart remains
    await hs.ok("POST", f"/_synapse/admin/v1/deactivate/{kavita.user_id}", boss, json={"erase": True})
    await hs.ok("PUT", f"{V2}/users/{kavita.user_id}", boss, json={"deactivated": False, "password": "new-pass-2"})
    assert await search(hs, me, "menon") == [] and await search(hs, me, "kv") == ["kv"]


async def test_every_way_of_creating_an_account(hs: Harness, database_url: str, tmp_path: Path) -> None:
    me = await hs.register("observer")
    boss = await hs.register("boss")
    await hs.server.accounts.update_user(boss.user_id, admin=True)
    # registration (with a registration token)
    token = await hs.server.auth.create_registration_token(uses=1)
    r = await hs.request("POST", f"{V3}/register", json={"username": "ramesh", "password": "pw-ramesh-1"})
    session = r.json()["session"]
    for auth in ({"type": "m.login.registration_token", "token": token}, {"type": "m.login.dummy"}):
        r = await hs.request(
            "POST",
            f"{V3}/register",
            json={"username": "ramesh", "password": "pw-ramesh-1", "auth": {**auth, "session": session}},
        )
    assert r.status_code == 200, r.text
    assert await search(hs, me, "रमेश") == ["ramesh"]  # the localpart, found from Devanagari
    # the admin API
    body = {"password": "pw-farah-1", "displayname": "فرح خان"}
    assert (await hs.request("PUT", f"{V2}/users/@farah:test.local", boss, json=body)).status_code == 201
    assert await search(hs, me, "farah khan") == ["farah"]
    # the CLI: one account, and many from a file
    common = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]

    async def paigham(*args: str) -> Result:  # the command, as the admin runs it next to the server
        runner = CliRunner()
        return await asyncio.to_thread(lambda: runner.invoke(cli, [*args, *common]))

    res = await paigham("user", "create", "imran", "--password", "pw-imran-1", "--display-name", "इमरान")
    assert res.exit_code == 0, res.output
    csv_path = tmp_path / "accounts.csv"
    csv_path.write_text("user_id,displayname\nsunita,सुनीता गुप्ता\n@deepak:test.local,Deepak Joshi\nimran,\n")
    res = await paigham("user", "import", str(csv_path), "--dry-run")
    assert res.exit_code == 0 and "2 accounts would be created (dry run), 1 existed already" in res.output
    assert await search(hs, me, "sunita") == []
    res = await paigham("user", "import", str(csv_path))
    assert res.exit_code == 0 and "2 accounts created, 1 existed already" in res.output, res.output
    assert await search(hs, me, "imran") == ["imran"] and await search(hs, me, "gupta") == ["sunita"]
    assert await search(hs, me, "जोशी") == ["deepak"]
    user = await hs.server.accounts.get_user("@sunita:test.local")
    assert user is not None and user.password_hash is None and user.displayname == "सुनीता गुप्ता"
    # again: nothing new; a bad file changes nothing
    res = await paigham("user", "import", str(csv_path))
    assert res.exit_code == 0 and "0 accounts created, 3 existed already" in res.output
    csv_path.write_text("user_id,displayname\nfresh,Fresh One\nbad name,X\nfresh,Again\n" + f"long,{'x' * 300}\n")
    res = await paigham("user", "import", str(csv_path))
    assert res.exit_code == 1 and "3 invalid rows; nothing was changed" in res.output
    assert ":3:" in res.output and "appears again (first at line 2)" in res.output
    assert await hs.server.accounts.get_user("@fresh:test.local") is None
    csv_path.write_text("name\nx\n")
    res = await paigham("user", "import", str(csv_path))
    assert res.exit_code == 1 and "the header must be user_id" in res.output


async def test_accounts_without_terms_are_indexed_at_start(database_url: str, tmp_path: Path) -> None:
    async with serve(database_url, tmp_path) as hs:
        me = await hs.register("observer")
        await named(hs, "old1", "Arjun Mehta")
        await named(hs, "old2", "ارجن")
        # as a database written before the index existed: accounts without terms, and no record of a
        # completed pass
        async with hs.server.db.write() as conn:
            await hs.server.db.run("DELETE FROM directory_terms", conn=conn)
            await hs.server.db.run("DELETE FROM server_state WHERE key = $1", DIRECTORY_INDEXED, conn=conn)
        assert await search(hs, me, "arjun") == []
    async with serve(database_url, tmp_path) as hs:
        me = User(me.user_id, (await hs.server.auth.start_session(me.user_id, None, None)).access_token, "", "")
        assert await search(hs, me, "arjun") == ["old1", "old2"]
        assert await hs.server.accounts.directory.backfill() == 0  # nothing left to do
        assert await hs.server.server_state.get(DIRECTORY_INDEXED) == "1"
        # Once recorded, a start does not look for accounts without terms again (that look reads every
        # account): terms removed behind the server's back now stay missing.
        async with hs.server.db.write() as conn:
            await hs.server.db.run("DELETE FROM directory_terms WHERE user_id = $1", "@old2:test.local", conn=conn)
    async with serve(database_url, tmp_path) as hs:
        me = User(me.user_id, (await hs.server.auth.start_session(me.user_id, None, None)).access_token, "", "")
        assert await search(hs, me, "arjun") == ["old1"]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_term_statistics_are_fine_enough_for_short_prefixes(hs: Harness) -> None:
    """PostgreSQL: the server sets the term columns' statistics target at start (with the default the
    planner misjudged a two-letter range 150-fold and sorted thousands of rows for a page of 50)."""
    rows = await hs.server.db.fetch(
        "SELECT attrelid::regclass::text, attstattarget FROM pg_attribute WHERE attname = 'term' "
        "AND attrelid IN ('directory_terms'::regclass, 'directory_pairs'::regclass)"
    )
    assert sorted((str(t), int(n)) for t, n in rows) == [
        ("directory_pairs", directory.TERM_STATISTICS),
        ("directory_terms", directory.TERM_STATISTICS),
    ]
