"""The organisation: import (CSV and JSON, dry run, bad rows, idempotence), export, and the org admin API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from paigham.cli.main import app as cli
from paigham.org.importer import ReadResult, read_bytes
from paigham.org.plan import Plan
from tests.api.conftest import Harness, User

UNITS = """unit_id,parent_id,kind,name_en,name_hi,name_ur
MOF,,ministry,Ministry of Finance,वित्त मंत्रालय,وزارت خزانہ
MOF-BUD,MOF,department,Budget Division,बजट प्रभाग,بجٹ ڈویژن
MOF-BUD-A,MOF-BUD,section,Section A,अनुभाग क,سیکشن اے
"""
OFFICIALS = """\
employee_id,user_id,name_en,name_hi,name_ur,designation_en,designation_hi,unit_id,email,phone,status,expires
E1,rsharma,Rakesh Sharma,राकेश शर्मा,راکیش شرما,Joint Secretary,संयुक्त सचिव,MOF-BUD,r@gov.example,+91 11 2300 0001,active,
E2,@pkhan:test.local,Parveen Khan,परवीन ख़ान,پروین خان,Section Officer,अनुभाग अधिकारी,MOF-BUD-A,,,active,2030-12-31
E3,averma,Anil Verma,अनिल वर्मा,,Assistant,,MOF-BUD-A,,,suspended,
"""
ADMIN = "/_paigham/admin/v1"


async def do_import(hs: Harness, *files: tuple[str, str], dry_run: bool = False) -> Plan:
    read = ReadResult([], [])
    for name, text in files:
        part = read_bytes(text.encode(), name)
        read.rows.extend(part.rows)
        read.errors.extend(part.errors)
    return await hs.server.org.import_rows(read, dry_run=dry_run, actor="@admin:test.local")


async def admin(hs: Harness, name: str = "boss") -> User:
    u = await hs.register(name)
    await hs.server.accounts.update_user(u.user_id, admin=True)
    return u


async def test_csv_import_builds_tree_officials_and_accounts(hs: Harness) -> None:
    plan = await do_import(hs, ("units.csv", UNITS), ("officials.csv", OFFICIALS))
    assert plan.ok, plan.errors
    assert plan.summary() == ("units: 3 new, 0 changed, 0 unchanged; officials: 3 new, 0 changed, 0 unchanged")
    units = await hs.server.org.store.units()
    assert units["MOF-BUD-A"].unit.parent_id == "MOF-BUD" and units["MOF"].unit.names["ur"] == "وزارت خزانہ"
    e1 = await hs.server.org.store.official("E1")
    assert e1 is not None and e1.official.user_id == "@rsharma:test.local"
    assert e1.official.designation == {"en": "Joint Secretary", "hi": "संयुक्त सचिव"}
    user = await hs.server.accounts.get_user("@rsharma:test.local")
    assert user is not None and user.displayname == "Rakesh Sharma (Joint Secretary, Budget Division)"
    assert user.password_hash is None and not user.suspended
    e3 = await hs.server.accounts.get_user("@averma:test.local")
    assert e3 is not None and e3.suspended and e3.displayname == "Anil Verma (Assistant, Section A)"
    # the same files again: nothing changes
    again = await do_import(hs, ("units.csv", UNITS), ("officials.csv", OFFICIALS))
    assert again.ok and again.changes == 0 and list(again.lines()) == []
    assert again.summary().endswith("officials: 0 new, 0 changed, 3 unchanged")
    kinds = [r["kind"] async for r in hs.server.audit.export()]
    assert kinds.count("org.official.created") == 3 and kinds.count("org.import") == 1


async def test_bad_rows_are_reported_with_line_numbers_and_nothing_is_applied(hs: Harness) -> None:
    bad = OFFICIALS + (
        "E4,Bad User!,Name,,,,,MOF,,,active,\n"  # line 5: bad localpart
        "E5,ok5,,,,,,MOF,,,active,\n"  # line 6: no name
        "E1,other,Dup,,,,,MOF,,,active,\n"  # line 7: repeated employee
        "E6,ok6,Someone,,,,,NOPE,,,active,\n"  # line 8: unknown unit
        'E7,ok7,"Multi\nline",,,,,MOF,not-an-email,,retired,\n'  # lines 9-10: bad email
        "E8,ok8,Date,,,,,MOF,,,active,31/12/2030\n"  # line 11
    )
    plan = await do_import(hs, ("units.csv", UNITS), ("officials.csv", bad))
    got = [(e.line, e.reason.split(" ")[0]) for e in plan.errors]
    assert [ln for ln, _ in got] == [5, 6, 7, 8, 9, 11], plan.errors
    reasons = {e.line: e.reason for e in plan.errors}
    assert "may only contain" in reasons[5] and "at least one name" in reasons[6]
    assert "appears again (first at officials.csv:2)" in reasons[7] and "unit NOPE does not exist" in reasons[8]
    assert "not an e-mail" in reasons[9] and "must be a date" in reasons[11]
    assert await hs.server.org.store.units() == {}
    assert await hs.server.accounts.get_user("@rsharma:test.local") is None


async def test_unit_loops_and_unknown_columns_are_rejected(hs: Harness) -> None:
    loop = "unit_id,parent_id,kind,name_en\nA,C,unit,A\nB,A,unit,B\nC,B,unit,C\n"
    plan = await do_import(hs, ("u.csv", loop))
    assert [e.line for e in plan.errors] == [2, 3, 4] and "loop" in plan.errors[0].reason
    plan = await do_import(hs, ("u.csv", "unit_id,parent,kind,name_en\nA,,unit,A\n"))
    assert [str(e) for e in plan.errors] == ["u.csv:1: unknown column(s) parent"]
    plan = await do_import(hs, ("x.csv", "\xff".encode("latin-1").decode("latin-1")))
    assert plan.errors and "header needs" in plan.errors[0].reason
    bad = read_bytes(b"unit_id,kind,name_en\nA,unit,\xff\n", "bin.csv")
    assert str(bad.errors[0]) == "bin.csv:2: not UTF-8 text (save the file as UTF-8)"


async def test_json_import_reports_lines_and_dry_run_prints_the_diff(hs: Harness) -> None:
    doc: dict[str, Any] = {
        "units": [{"unit_id": "MOF", "kind": "ministry", "names": {"en": "Ministry of Finance"}}],
        "officials": [
            {
                "employee_id": "E1",
                "user_id": "rsharma",
                "names": {"en": "Rakesh Sharma", "hi": "राकेश शर्मा"},
                "designation": "Joint Secretary",
                "unit_id": "MOF",
            },
            {"employee_id": "E2", "user_id": "x", "names": {"xx-toolongtag": "X"}, "unit_id": "MOF"},
            {"employee_id": "E3", "user_id": "y", "names": {"en": "Y"}, "unit_id": "MOF", "rank": 3},
        ],
    }
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    plan = await do_import(hs, ("org.json", text))
    lines = {e.line: e.reason for e in plan.errors}
    assert len(lines) == 2 and min(lines) > 10  # the second and third officials, not the first
    assert any("not a language code" in r for r in lines.values()) and any(
        "unknown field(s) rank" in r for r in lines.values()
    )
    for ln in lines:
        assert text.splitlines()[ln - 1].strip() == "{"
    doc["officials"] = doc["officials"][:1]
    text = json.dumps(doc, ensure_ascii=False)
    dry = await do_import(hs, ("org.json", text), dry_run=True)
    assert dry.ok and list(dry.lines()) == [
        "+ unit MOF (ministry) 'Ministry of Finance' under (top)",
        "+ official E1 @rsharma:test.local 'Rakesh Sharma' in MOF",
    ]
    assert await hs.server.org.store.units() == {}
    assert (await do_import(hs, ("org.json", text))).ok
    doc["officials"][0]["designation"] = {"en": "Additional Secretary"}
    doc["units"][0]["names"]["hi"] = "वित्त मंत्रालय"
    dry = await do_import(hs, ("org.json", json.dumps(doc, ensure_ascii=False)), dry_run=True)
    assert list(dry.lines()) == [
        "~ unit MOF: names.hi: None → 'वित्त मंत्रालय'",
        "~ official E1: designation.en: 'Joint Secretary' → 'Additional Secretary'",
    ]


async def test_moving_renaming_and_deactivating_through_import(hs: Harness) -> None:
    assert (await do_import(hs, ("units.csv", UNITS), ("officials.csv", OFFICIALS))).ok
    rs = hs.server
    await rs.auth.set_password("@rsharma:test.local", "pw-rakesh")
    session = await rs.auth.start_session("@rsharma:test.local", "PHONE", None)
    me = User("@rsharma:test.local", session.access_token, "PHONE", "pw-rakesh")
    room = await hs.create_room(me, name="Budget talk")
    renamed = UNITS.replace("Budget Division,", "Budget & Planning Division,")
    plan = await do_import(hs, ("units.csv", renamed), ("officials.csv", OFFICIALS))
    assert plan.ok and "~ unit MOF-BUD: names.en: 'Budget Division' → 'Budget & Planning Division'" in plan.lines()
    expected = "Rakesh Sharma (Joint Secretary, Budget & Planning Division)"
    assert (await rs.accounts.get_user(me.user_id)).displayname == expected  # type: ignore[union-attr]
    member = await hs.ok("GET", f"/_matrix/client/v3/rooms/{room}/state/m.room.member/{me.user_id}", me)
    assert member["displayname"] == expected
    gone = OFFICIALS.replace("r@gov.example,+91 11 2300 0001,active", "r@gov.example,+91 11 2300 0001,deactivated")
    plan = await do_import(hs, ("units.csv", renamed), ("officials.csv", gone))
    assert list(plan.lines()) == ["~ official E1: status: 'active' → 'deactivated'"]
    await hs.err(401, "M_UNKNOWN_TOKEN", "GET", "/_matrix/client/v3/account/whoami", me)
    assert await rs.events.user_rooms(me.user_id) == {}
    assert (await rs.accounts.get_user(me.user_id)).deactivated  # type: ignore[union-attr]


async def test_export_round_trips_through_json_and_csv(hs: Harness, tmp_path: Path) -> None:
    assert (await do_import(hs, ("units.csv", UNITS), ("officials.csv", OFFICIALS))).ok
    doc = await hs.server.org.export()
    assert [u["unit_id"] for u in doc["units"]] == ["MOF", "MOF-BUD", "MOF-BUD-A"]
    assert doc["officials"][1]["expires"] == "2030-12-31"
    again = await do_import(hs, ("export.json", json.dumps(doc, ensure_ascii=False)))
    assert again.ok and again.changes == 0
    from paigham.cli.gov import _write_csv

    _write_csv(tmp_path / "u.csv", doc["units"], ["unit_id", "parent_id", "kind"], ["names"])
    _write_csv(
        tmp_path / "o.csv",
        doc["officials"],
        ["employee_id", "user_id", "unit_id", "email", "phone", "status", "expires"],
        ["names", "designation"],
    )
    again = await do_import(
        hs, ("u.csv", (tmp_path / "u.csv").read_text()), ("o.csv", (tmp_path / "o.csv").read_text())
    )
    assert again.ok and again.changes == 0, list(again.lines())


async def test_org_admin_api(hs: Harness) -> None:
    boss = await admin(hs)
    clerk = await hs.register("clerk")
    await hs.err(403, "M_FORBIDDEN", "GET", f"{ADMIN}/units", clerk)
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"{ADMIN}/units")
    res = await hs.ok("PUT", f"{ADMIN}/units/MOF", boss, json={"kind": "ministry", "names": {"en": "Finance"}})
    assert res["unit_id"] == "MOF" and res["children"] == [] and res["officials"] == 0
    await hs.ok("PUT", f"{ADMIN}/units/MOF-A", boss, json={"parent_id": "MOF", "names": {"en": "A"}})
    err = await hs.err(
        400,
        "M_INVALID_PARAM",
        "PUT",
        f"{ADMIN}/units/MOF",
        boss,
        json={"parent_id": "MOF-A", "names": {"en": "Finance"}},
    )
    assert "loop" in err["error"]
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{ADMIN}/units/X", boss, json={"names": {}})
    await hs.err(400, "M_NOT_JSON", "PUT", f"{ADMIN}/units/X", boss, content=b"nope")
    off = {"user_id": "pkhan", "names": {"en": "Parveen Khan"}, "designation": {"en": "Director"}, "unit_id": "MOF-A"}
    res = await hs.ok("PUT", f"{ADMIN}/officials/E9", boss, json=off)
    assert res["user_id"] == "@pkhan:test.local" and res["status"] == "active"
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{ADMIN}/officials/E10", boss, json={**off, "unit_id": "ZZ"})
    await hs.err(400, "M_INVALID_PARAM", "PUT", f"{ADMIN}/officials/E10", boss, json=off)  # user taken by E9
    listed = await hs.ok("GET", f"{ADMIN}/officials", boss, params={"unit_id": "MOF-A"})
    assert listed["total"] == 1 and listed["officials"][0]["employee_id"] == "E9"
    await hs.err(404, "M_NOT_FOUND", "GET", f"{ADMIN}/officials/NOPE", boss)
    await hs.err(400, "M_INVALID_PARAM", "DELETE", f"{ADMIN}/units/MOF-A", boss)
    units = await hs.ok("GET", f"{ADMIN}/units", boss)
    assert [(u["unit_id"], u["officials"]) for u in units["units"]] == [("MOF", 0), ("MOF-A", 1)]
    doc: dict[str, Any] = {"units": [], "officials": [{**off, "employee_id": "E9", "unit_id": "MOF"}]}
    res = await hs.ok("POST", f"{ADMIN}/import", boss, params={"dry_run": "true"}, json=doc)
    assert res["dry_run"] and res["changes"] == ["~ official E9: unit_id: 'MOF-A' → 'MOF'"]
    doc["officials"].append({"employee_id": "E11", "user_id": "Bad Name", "names": {"en": "x"}, "unit_id": "MOF"})
    err = await hs.err(400, "M_INVALID_PARAM", "POST", f"{ADMIN}/import", boss, json=doc)
    assert err["errors"] == ["request:1: user_id 'bad name' may only contain a-z, 0-9 and . _ = - / +"]
    assert (await hs.ok("GET", f"{ADMIN}/officials/E9", boss))["unit_id"] == "MOF-A"
    exported = await hs.ok("GET", f"{ADMIN}/export", boss)
    assert [u["unit_id"] for u in exported["units"]] == ["MOF", "MOF-A"]


def test_cli_import_dry_run_errors_and_export(database_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    off_local = OFFICIALS.replace("@pkhan:test.local", "pkhan")
    (tmp_path / "units.csv").write_text(UNITS, encoding="utf-8")
    (tmp_path / "off.csv").write_text(off_local, encoding="utf-8")
    (tmp_path / "bad.csv").write_text(OFFICIALS + "E9,x y,Name,,,,,MOF,,,active,\n", encoding="utf-8")
    res = runner.invoke(cli, ["org", "import", str(tmp_path / "units.csv"), str(tmp_path / "bad.csv"), *common])
    assert res.exit_code == 1 and "bad.csv:5: user_id 'x y' may only contain" in res.output
    assert "bad.csv:3: user_id '@pkhan:test.local' must be a local user of localhost" in res.output
    assert "2 invalid rows; nothing was changed." in res.output
    res = runner.invoke(
        cli, ["org", "import", "--dry-run", str(tmp_path / "units.csv"), str(tmp_path / "off.csv"), *common]
    )
    assert res.exit_code == 0 and "+ official E1 @rsharma:localhost 'Rakesh Sharma' in MOF-BUD" in res.output
    assert "(dry run: nothing was changed)" in res.output
    res = runner.invoke(cli, ["org", "import", str(tmp_path / "units.csv"), str(tmp_path / "off.csv"), *common])
    assert res.exit_code == 0 and "Imported. units: 3 new" in res.output, res.output
    res = runner.invoke(cli, ["org", "export", "--format", "csv", "-o", str(tmp_path / "out"), *common])
    assert res.exit_code == 0
    assert (tmp_path / "out" / "officials.csv").read_text().splitlines()[0].startswith("employee_id,user_id,unit_id")
    res = runner.invoke(
        cli, ["org", "import", str(tmp_path / "out" / "units.csv"), str(tmp_path / "out" / "officials.csv"), *common]
    )
    assert res.exit_code == 0 and "officials: 0 new, 0 changed, 3 unchanged" in res.output
    res = runner.invoke(cli, ["org", "export", *common])
    assert json.loads(res.output)["officials"][0]["employee_id"] == "E1"
    res = runner.invoke(cli, ["org", "import", str(tmp_path / "missing.csv"), *common])
    assert res.exit_code == 2


async def test_hostile_import_inputs_get_clear_errors(hs: Harness) -> None:
    boss = await admin(hs)
    url = f"{ADMIN}/import"
    cases: list[tuple[bytes, str]] = [
        (b'{"units": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
        (b'{"units": [1, "x"], "officials": {}}', "must be"),
        (b'{"units": [{"unit_id": "A", "names": "Finance"}]}', "names must be an object"),
        (b'{"units": [{"unit_id": "A", "names": {"en": "x\\u0000y"}}]}', "control characters"),
        (b'{"units": [{"unit_id": "A", "names": {"en": "' + b"x" * 300 + b'"}}]}', "longer than 256"),
        (b'{"officials": [{"employee_id": "E1", "user_id": 5, "names": {"en": "A"}, "unit_id": "A"}]}', "text"),
        (b'{"units": [], "extra": 1}', "unknown top-level key"),
        ('{"units": [{"unit_id": "A", "names": {"en": "\ud800"}}]}'.encode("utf-8", "surrogatepass"), "UTF-8"),
    ]
    for body, why in cases:
        r = await hs.request("POST", url, boss, content=body)
        assert r.status_code == 400, (body[:60], r.text[:300])
        err = r.json()
        assert err["errcode"] in ("M_INVALID_PARAM", "M_NOT_JSON"), err
        assert why in json.dumps(err, ensure_ascii=False), (why, err)
    await hs.err(400, "M_NOT_JSON", "POST", url, boss, content=b"[1, 2]")
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{ADMIN}/officials", boss, params={"from": "x"})
    await hs.err(400, "M_INVALID_PARAM", "GET", f"{ADMIN}/officials", boss, params={"status": "retired"})
    assert await hs.server.org.store.units() == {}
