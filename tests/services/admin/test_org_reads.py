"""OrgService's reads for the admin API, without HTTP: units with their sizes and children, officials
by page, one official, and single-record writes that answer with the record."""

from __future__ import annotations

from paigham.app import Server
from paigham.org.importer import ReadResult, read_bytes
from tests.services.admin.conftest import refused

UNITS = "unit_id,parent_id,kind,name_en\nMOF,,ministry,Finance\nMOF-BUD,MOF,department,Budget\nMOH,,ministry,Health\n"
OFFICIALS = """employee_id,user_id,name_en,unit_id,status
E1,rsharma,Rakesh Sharma,MOF-BUD,active
E2,pkhan,Parveen Khan,MOF-BUD,suspended
E3,averma,Anil Verma,MOF-BUD,deactivated
"""


async def import_org(server: Server) -> None:
    read = ReadResult([], [])
    for name, text in (("units.csv", UNITS), ("officials.csv", OFFICIALS)):
        read.rows.extend(read_bytes(text.encode(), name).rows)
    assert (await server.org.import_rows(read, dry_run=False, actor=None)).ok


async def test_units_with_sizes_and_children(server: Server) -> None:
    await import_org(server)
    org = server.org
    assert [u["unit_id"] for u in await org.units_json()] == ["MOF", "MOF-BUD", "MOH"]
    assert [u["unit_id"] for u in await org.units_json("")] == ["MOF", "MOH"]  # "" is the top level
    assert [u["unit_id"] for u in await org.units_json("MOF")] == ["MOF-BUD"]
    budget = await org.unit_json("MOF-BUD")
    assert budget["officials"] == 2 and budget["children"] == [] and budget["parent_id"] == "MOF"  # deactivated: not
    assert (await org.unit_json("MOF"))["children"] == ["MOF-BUD"]
    await refused(404, org.unit_json("NOPE"))


async def test_officials_by_page_and_one_by_one(server: Server) -> None:
    await import_org(server)
    org = server.org
    page = await org.officials("MOF-BUD", None, 0, 2)
    assert [o.employee_id for o in page.officials] == ["E1", "E2"] and page.total == 3
    assert [o.employee_id for o in (await org.officials(None, "suspended", 0, 10)).officials] == ["E2"]
    assert (await org.official("E1")).user_id == "@rsharma:test.local"
    await refused(404, org.official("E9"))


async def test_single_record_writes_answer_with_the_record(server: Server) -> None:
    await import_org(server)
    org = server.org
    unit = await org.put_unit("MOH-HOS", {"parent_id": "MOH", "kind": "department", "names": {"en": "Hospitals"}}, None)
    assert unit["unit_id"] == "MOH-HOS" and unit["officials"] == 0 and unit["children"] == []
    official = await org.put_official(
        "E4", {"user_id": "nmehta", "names": {"en": "Neha Mehta"}, "unit_id": "MOH-HOS", "status": "active"}, None
    )
    assert official.user_id == "@nmehta:test.local" and official.unit_id == "MOH-HOS"
    await refused(400, org.put_official("E5", {"user_id": "x", "unit_id": "NOPE"}, None))
