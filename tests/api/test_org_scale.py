"""Importing a generated organisation of 10,000 officials: bad rows refused with nothing applied, then
the correct tree, accounts, spaces and memberships, and a second import that changes nothing.
(How fast it is, and its memory, belong to the benchmark: `make bench` workload `directory`.)"""

from __future__ import annotations

from collections import Counter

from paigham.org.importer import ReadResult, read_bytes
from paigham.org.sample import officials_csv, sample_org, units_csv
from tests.api.conftest import Harness

N = 10_000


def read(*files: tuple[str, str]) -> ReadResult:
    out = ReadResult([], [])
    for name, text in files:
        part = read_bytes(text.encode(), name)
        out.rows.extend(part.rows)
        out.errors.extend(part.errors)
    return out


async def test_ten_thousand_officials(hs: Harness) -> None:
    srv = hs.server
    doc = sample_org(N)
    units, officials = units_csv(doc), officials_csv(doc)

    # three bad rows among 10,000: every one reported with its line, and nothing at all applied
    lines = officials.splitlines(keepends=True)
    lines[101] = lines[101].replace(",active,", ",on-leave,")  # line 102
    lines[5001] = lines[5001].replace("@gov.example", "@@gov.example")  # line 5002
    lines[9998] = lines[9998].replace(doc["officials"][9997]["unit_id"], "NO-SUCH-UNIT")  # line 9999
    bad = await srv.org.import_rows(
        read(("units.csv", units), ("officials.csv", "".join(lines))), dry_run=False, actor=None
    )
    assert [(e.line, e.reason.split(" ")[0]) for e in bad.errors] == [(102, "status"), (5002, "email"), (9999, "unit")]
    assert await srv.org.store.units() == {} and await srv.accounts.count_users() == 0

    plan = await srv.org.import_rows(
        read(("units.csv", units), ("officials.csv", officials)), dry_run=False, actor=None
    )
    assert plan.ok and len(plan.new_units) == 111 and plan.new_officials == N
    stored = await srv.org.store.units()
    assert {u: r.unit.parent_id for u, r in stored.items()} == {u["unit_id"]: u["parent_id"] for u in doc["units"]}
    assert await srv.accounts.count_users() == N + 1  # and the server's own account
    per_unit = Counter(o["unit_id"] for o in doc["officials"])
    for unit_id, row in stored.items():
        assert row.space_id and row.announcements_id, unit_id
        for room_id in (row.space_id, row.announcements_id):
            joined = set(await srv.events.room_members(room_id)) - {"@paigham:test.local"}
            assert len(joined) == per_unit[unit_id], unit_id
    one = doc["officials"][4321]
    space = stored[one["unit_id"]].space_id
    assert f"@{one['user_id']}:test.local" in await srv.events.room_members(space)  # type: ignore[arg-type]
    found, _ = await srv.directory.search("@x:test.local", one["names"]["hi"], 50)
    assert f"@{one['user_id']}:test.local" in {r["user_id"] for r in found}

    # the same files again: no change to the organisation, no new event
    pos = await srv.db.current_position()
    again = await srv.org.import_rows(
        read(("units.csv", units), ("officials.csv", officials)), dry_run=False, actor=None
    )
    assert again.ok and again.changes == 0 and again.same_officials == N
    assert await srv.db.current_position() == pos
