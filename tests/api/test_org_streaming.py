"""The import holds its input a chunk at a time (issue #18): files are read as they are planned and
written, and what users rely on is unchanged across chunks — repeats found between chunks, every row or
none (a change between plan and apply rolls back every chunk already written), display names of
renamed units, audit records, dry-run output, spaces and memberships."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from paigham.cli.main import app as cli
from paigham.errors import MatrixError
from paigham.org import passes
from paigham.org import plan as plan_module
from paigham.org.importer import Files, RowError, SourceRow
from paigham.org.sample import officials_csv, sample_org, units_csv
from tests.api.conftest import Harness

N = 120
CHUNK = 25


class Counted:
    """An Input that counts how many official rows have been read from it so far."""

    def __init__(self, inner: Files) -> None:
        self.inner = inner
        self.read = 0

    def records(self, kind: str) -> Iterator[SourceRow | RowError]:
        for item in self.inner.records(kind):
            if kind == "official":
                self.read += 1
            yield item


def write(tmp_path: Path, doc: dict[str, Any], lines: dict[int, tuple[str, str]] | None = None) -> Files:
    text = officials_csv(doc)
    if lines:
        rows = text.splitlines(keepends=True)
        for n, (old, new) in lines.items():
            assert old in rows[n - 1], (n, rows[n - 1])
            rows[n - 1] = rows[n - 1].replace(old, new)
        text = "".join(rows)
    (tmp_path / "units.csv").write_text(units_csv(doc), encoding="utf-8")
    (tmp_path / "officials.csv").write_text(text, encoding="utf-8")
    return Files([str(tmp_path / "units.csv"), str(tmp_path / "officials.csv")])


class Chunks:
    """Per chunk planned: its rows, and how many official rows the input had given by then."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.source: Counted | None = None

    @property
    def sizes(self) -> list[int]:
        return [n for n, _ in self.seen]


@pytest.fixture
def chunked(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> Chunks:
    hs.server.org.chunk = CHUNK
    chunks = Chunks()
    original = passes.ImportPass._officials

    async def spy(self: passes.ImportPass, rows: list[SourceRow], plan: Any) -> None:
        chunks.seen.append((len(rows), chunks.source.read if chunks.source else -1))
        await original(self, rows, plan)

    monkeypatch.setattr(passes.ImportPass, "_officials", spy)
    return chunks


async def test_rows_are_read_planned_and_written_a_chunk_at_a_time(
    hs: Harness, tmp_path: Path, chunked: Chunks
) -> None:
    doc = sample_org(N, ministries=1, departments=1, sections=2)
    source = chunked.source = Counted(write(tmp_path, doc))
    plan = await hs.server.org.import_rows(source, dry_run=False, actor="@admin:test.local")
    assert plan.ok and plan.new_officials == N and len(plan.new_units) == 4
    # two passes (plan, then apply), each holding at most CHUNK rows, read from the file as they go:
    # when a chunk is planned, the input has given that chunk and the ones before it, no more
    assert max(chunked.sizes) == CHUNK and len(chunked.sizes) == 2 * -(-N // CHUNK)
    done = 0
    for size, read_by_then in chunked.seen:
        done += size
        assert read_by_then == done, chunked.seen
    assert done == 2 * N
    org = hs.server.org.store
    assert (await org.list_officials(unit_id=None, status=None, offset=0, limit=1))[1] == N
    assert await hs.server.accounts.count_users() == N + 1  # and the server's own account
    kinds = [r["kind"] async for r in hs.server.audit.export()]
    assert kinds.count("org.import") == 1 and kinds.count("org.official.created") == N
    assert kinds.index("org.import") < kinds.index("org.unit.created") < kinds.index("org.official.created")
    for unit_id, row in (await org.units()).items():
        want = {f"@{o['user_id']}:test.local" for o in doc["officials"] if o["unit_id"] == unit_id}
        for room_id in (row.space_id, row.announcements_id):
            assert room_id is not None
            assert set(await hs.server.events.room_members(room_id)) - {"@paigham:test.local"} == want
    # the same file again changes nothing: no write, no event
    pos = await hs.server.db.current_position()
    again = await hs.server.org.import_rows(source, dry_run=False, actor=None)
    assert again.ok and again.changes == 0 and again.same_officials == N
    assert await hs.server.db.current_position() == pos


async def test_repeats_across_chunks_and_bad_late_rows_leave_everything_unapplied(
    hs: Harness, tmp_path: Path, chunked: Chunks
) -> None:
    doc = sample_org(N, ministries=1, departments=1, sections=2)
    first, other = doc["officials"][3], doc["officials"][100]
    source = write(
        tmp_path,
        doc,
        {
            # line 102: employee of line 5 again, four chunks later
            102: (other["employee_id"], first["employee_id"]),
            # line 70: the account of line 6, given to another employee
            70: (f",{doc['officials'][68]['user_id']},", f",{doc['officials'][4]['user_id']},"),
            N + 1: (",active,", ",retired,"),  # the last row
        },
    )
    plan = await hs.server.org.import_rows(source, dry_run=False, actor=None)
    got = {e.line: e.reason for e in plan.errors}
    assert sorted(got) == [70, 102, N + 1], plan.errors
    assert f"appears again (first at {tmp_path / 'officials.csv'}:5)" in got[102]
    assert f"is also given to employee {doc['officials'][4]['employee_id']}" in got[70]
    assert "status 'retired'" in got[N + 1]
    assert await hs.server.org.store.units() == {} and await hs.server.accounts.count_users() == 0
    assert max(chunked.sizes) == CHUNK and len(chunked.sizes) == -(-N // CHUNK)  # planned once, not applied


async def test_a_change_between_plan_and_apply_rolls_back_every_chunk(
    hs: Harness, tmp_path: Path, chunked: Chunks
) -> None:
    doc = sample_org(N, ministries=1, departments=1, sections=2)
    source = write(tmp_path, doc)
    org = hs.server.org
    plan = await org.plan(source)
    assert plan.ok
    # meanwhile an admin gives the account of the last row to another employee
    last = doc["officials"][-1]
    unit = {"kind": "ministry", "names": {"en": "Elsewhere"}}
    await org.put_unit("OTHER", unit, None)
    await org.put_official("X1", {"user_id": last["user_id"], "names": {"en": "Someone"}, "unit_id": "OTHER"}, None)
    with pytest.raises(MatrixError) as exc:
        await org.apply(plan, None)
    assert exc.value.status == 409 and "nothing was changed" in exc.value.error
    # the chunks written before the conflict were rolled back with it
    assert set(await org.store.units()) == {"OTHER"}
    assert (await org.store.list_officials(unit_id=None, status=None, offset=0, limit=5))[1] == 1
    assert max(chunked.sizes) == CHUNK and len(chunked.sizes) > -(-N // CHUNK)  # the second pass began


async def test_a_renamed_unit_renames_officials_who_are_not_in_the_file(
    hs: Harness, tmp_path: Path, chunked: Chunks
) -> None:
    doc = sample_org(N, ministries=1, departments=1, sections=1)  # everyone in one section
    assert (await hs.server.org.import_rows(write(tmp_path, doc), dry_run=False, actor=None)).ok
    section = doc["units"][-1]
    section["names"]["en"] = "Cell 1"
    (tmp_path / "renamed.csv").write_text(units_csv(doc), encoding="utf-8")
    plan = await hs.server.org.import_rows(Files([str(tmp_path / "renamed.csv")]), dry_run=False, actor=None)
    assert (
        plan.ok and plan.summary() == "units: 0 new, 1 changed, 2 unchanged; officials: 0 new, 0 changed, 0 unchanged"
    )
    assert plan.displaynames == N
    for o in (doc["officials"][0], doc["officials"][N - 1]):
        user = await hs.server.accounts.get_user(f"@{o['user_id']}:test.local")
        assert user is not None and user.displayname is not None and user.displayname.endswith(", Cell 1)")
    again = await hs.server.org.import_rows(Files([str(tmp_path / "renamed.csv")]), dry_run=False, actor=None)
    assert again.ok and again.changes == 0


async def test_a_plan_keeps_its_first_changes_as_text_and_counts_the_rest(
    hs: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_module, "MAX_LINES", 10)
    doc = sample_org(25, ministries=1, departments=1, sections=1)
    seen: list[str] = []
    plan = await hs.server.org.import_rows(write(tmp_path, doc), dry_run=True, actor=None, changes=seen.append)
    lines = list(plan.lines())
    assert len(lines) == 3 + 10 + 1 and lines[-1] == "… and 15 more changes"
    assert len(seen) == 25 and seen[:10] == lines[3:13] and seen[-1].startswith("+ official E000024 ")
    body = plan.to_json()["officials"]
    assert isinstance(body, dict) and len(body["new"]) == 10 and body["counts"] == {"new": 25, "changed": 0}
    assert await hs.server.org.store.units() == {}


def test_cli_dry_run_prints_every_change(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "MAX_LINES", 10)
    doc = sample_org(25, ministries=1, departments=1, sections=1)
    write(tmp_path, doc)
    common = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    files = [str(tmp_path / "units.csv"), str(tmp_path / "officials.csv")]
    res = CliRunner().invoke(cli, ["org", "import", "--dry-run", *files, *common])
    assert res.exit_code == 0, res.output
    out = res.output.splitlines()
    assert sum(line.startswith("+ official ") for line in out) == 25 and "more changes" not in res.output
    assert out[-1] == "(dry run: nothing was changed)"
    res = CliRunner().invoke(cli, ["org", "import", *files, *common])
    assert res.exit_code == 0 and "officials: 25 new" in res.output, res.output
    res = CliRunner().invoke(cli, ["org", "export", *common])
    assert len(json.loads(res.output)["officials"]) == 25


def test_files_are_read_lazily(tmp_path: Path) -> None:
    doc = sample_org(50, ministries=1, departments=1, sections=1)
    source = write(tmp_path, doc)
    rows = source.records("official")
    first = next(rows)
    assert isinstance(first, SourceRow) and first.line == 2 and first.data["employee_id"] == "E000000"
    assert source.count("official") == 50 and source.count("unit") == 3
    assert [isinstance(r, SourceRow) and r.kind for r in source.records("unit")] == ["unit"] * 3
    (tmp_path / "bad.csv").write_bytes(b"unit_id,kind,name_en\nA,unit,A\nB,unit,\xff\n")
    got = list(Files([str(tmp_path / "bad.csv")]).records("unit"))
    assert isinstance(got[0], SourceRow) and str(got[1]).endswith("bad.csv:3: not UTF-8 text (save the file as UTF-8)")
    assert list(Files([str(tmp_path / "bad.csv")]).records("official")) == []
