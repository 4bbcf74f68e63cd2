"""Reading organisation files (CSV and JSON) into records, each tagged with its file and line number.

CSV: a units file has the column `unit_id` and no `employee_id`; an officials file has `employee_id`.
Columns `name_<lang>` and `designation_<lang>` (en, hi, ur, …) hold the texts per language.
JSON: {"units": [{…}], "officials": [{…}]} with the same field names, `names` and `designation`
as objects of language code to text.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from paigham.domain.org import OFFICIAL_KEYS, UNIT_KEYS

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_ROWS = 1_000_000
MAX_CELL = 2048
UNIT_COLUMNS = {"unit_id", "parent_id", "kind"}
OFFICIAL_COLUMNS = OFFICIAL_KEYS - {"names", "designation"}


@dataclass(frozen=True, slots=True)
class SourceRow:
    source: str
    line: int
    kind: str  # "unit" | "official"
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RowError:
    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}" if self.line else f"{self.source}: {self.reason}"


@dataclass
class ReadResult:
    """Records read into memory (a request body, a test): an `Input` like `Files`."""

    rows: list[SourceRow]
    errors: list[RowError]

    def records(self, kind: str) -> Iterator[SourceRow | RowError]:
        """The rows of one kind; the errors (with no kind of their own) with the units."""
        if kind == "unit":
            yield from self.errors
        yield from (r for r in self.rows if r.kind == kind)


class Input(Protocol):
    """The records of one import, read again for each pass: the units first (all of them, they are few),
    then the officials (streamed). Errors come with the kind they belong to; file-level ones with the units."""

    def records(self, kind: str) -> Iterator[SourceRow | RowError]: ...


class Files:
    """Files on disk, read again on each pass and never held whole: CSV a row at a time; JSON files are
    read whole on each pass (their records parsed as they are used)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def records(self, kind: str) -> Iterator[SourceRow | RowError]:
        for path in self.paths:
            size = os.path.getsize(path)
            if size > MAX_FILE_BYTES:
                if kind == "unit":
                    yield RowError(path, 0, f"file is larger than {MAX_FILE_BYTES} bytes")
                continue
            with open(path, "rb") as fh:
                head = fh.read(4096)
                fh.seek(0)
                if head.removeprefix(BOM).lstrip().startswith(b"{"):
                    read = read_bytes(fh.read(), path)
                    yield from read.records(kind)
                else:
                    yield from iter_csv(fh, path, kind)

    def count(self, kind: str) -> int:
        """How many records of this kind (CSV rows are counted without being parsed)."""
        n = 0
        for path in self.paths:
            with open(path, "rb") as fh:
                head = fh.read(4096)
                fh.seek(0)
                if head.removeprefix(BOM).lstrip().startswith(b"{"):
                    n += sum(1 for r in read_bytes(fh.read(), path).rows if r.kind == kind)
                    continue
                try:
                    reader = csv.reader(_lines(fh, path, []))
                    cols = [h.strip().lower() for h in next(reader, [])]
                    if _kind_of(cols) == kind:
                        n += sum(1 for cells in reader if any(c.strip() for c in cells))
                except (csv.Error, _NotUtf8):
                    pass
        return n


BOM = b"\xef\xbb\xbf"


class _NotUtf8(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _lines(raw: Iterable[bytes], source: str, seen: list[int]) -> Iterator[str]:
    """Decoded lines of a byte stream; `seen[0]` counts them (where a bad byte is)."""
    seen[:] = [0]
    for n, line in enumerate(raw):
        seen[0] = n + 1
        if n == 0:
            line = line.removeprefix(BOM)
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            raise _NotUtf8(n + 1) from None


def read_bytes(raw: bytes, source: str) -> ReadResult:
    """Decide the format from the content: JSON starts with '{' (after a BOM / whitespace), else CSV."""
    if len(raw) > MAX_FILE_BYTES:
        return ReadResult([], [RowError(source, 0, f"file is larger than {MAX_FILE_BYTES} bytes")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return ReadResult([], [RowError(source, line, "not UTF-8 text (save the file as UTF-8)")])
    if text.lstrip().startswith("{"):
        return read_json(text, source)
    return read_csv(text, source)


def _split_languages(row: dict[str, str], base: set[str]) -> tuple[dict[str, Any], list[str]]:
    data: dict[str, Any] = {}
    unknown: list[str] = []
    for col, value in row.items():
        value = (value or "").strip()
        prefix, _, lang = col.partition("_")
        if col in base:
            if value:
                data[col] = value
        elif prefix in ("name", "designation") and lang:
            key = "names" if prefix == "name" else "designation"
            if value:
                data.setdefault(key, {})[lang] = value
        else:
            unknown.append(col)
    return data, unknown


def _kind_of(cols: list[str]) -> str | None:
    if "employee_id" in cols:
        return "official"
    if "unit_id" in cols:
        return "unit"
    return None


def read_csv(text: str, source: str) -> ReadResult:
    out = ReadResult([], [])
    for item in iter_csv(io.BytesIO(text.encode()), source, None):
        (out.rows if isinstance(item, SourceRow) else out.errors).append(item)  # type: ignore[arg-type]
    return out


def iter_csv(raw: Iterable[bytes], source: str, want: str | None) -> Iterator[SourceRow | RowError]:
    """The rows of a CSV file, one at a time, if its kind is `want` (None: any). Problems of the file
    itself (its header, bad UTF-8 before the first row) come with the units pass (or `want` None)."""
    seen: list[int] = [0]
    reader = csv.reader(_lines(raw, source, seen))
    whole = want in (None, "unit")
    try:
        header = next(reader)
    except StopIteration:
        if whole:
            yield RowError(source, 0, "the file is empty")
        return
    except csv.Error as exc:
        if whole:
            yield RowError(source, 1, f"CSV error: {exc}")
        return
    except _NotUtf8 as exc:
        if whole:
            yield RowError(source, exc.line, "not UTF-8 text (save the file as UTF-8)")
        return
    cols = [h.strip().lower() for h in header]
    kind = _kind_of(cols)
    if kind is None:
        if whole:
            yield RowError(source, 1, "the header needs employee_id (officials) or unit_id (units)")
        return
    base = OFFICIAL_COLUMNS if kind == "official" else UNIT_COLUMNS
    _, unknown = _split_languages(dict.fromkeys(cols, ""), base)
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if unknown or dupes:
        why = f"unknown column(s) {', '.join(unknown)}" if unknown else f"repeated column(s) {', '.join(dupes)}"
        if whole:
            yield RowError(source, 1, why[:300])
        return
    if want is not None and kind != want:
        return
    count = 0
    line = reader.line_num
    try:
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            count += 1
            if count > MAX_ROWS:
                yield RowError(source, start, f"more than {MAX_ROWS} rows; split the file")
                break
            if len(cells) != len(cols):
                yield RowError(source, start, f"has {len(cells)} cells but the header has {len(cols)}")
                continue
            if any(len(c) > MAX_CELL for c in cells):
                yield RowError(source, start, f"a cell is longer than {MAX_CELL} characters")
                continue
            data, _ = _split_languages(dict(zip(cols, cells, strict=True)), base)
            yield SourceRow(source, start, kind, data)
    except csv.Error as exc:
        yield RowError(source, line + 1, f"CSV error: {exc}")
    except _NotUtf8 as exc:
        yield RowError(source, exc.line, "not UTF-8 text (save the file as UTF-8)")


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _elements(text: str, i: int, dec: json.JSONDecoder) -> Iterator[tuple[int, Any]]:
    """The elements of the JSON array starting at text[i] == '[', with their offsets."""
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return
    while True:
        value, end = dec.raw_decode(text, i)
        yield i, value
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "]":
            return
        raise json.JSONDecodeError("expected ',' or ']'", text, i)


def read_json(text: str, source: str) -> ReadResult:
    dec = json.JSONDecoder()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return ReadResult([], [RowError(source, exc.lineno, f"not valid JSON: {exc.msg}")])
    except RecursionError:
        return ReadResult([], [RowError(source, 0, "the JSON is nested too deeply")])
    if not isinstance(doc, dict):
        return ReadResult([], [RowError(source, 1, 'the top level must be {"units": [...], "officials": [...]}')])
    unknown = sorted(set(doc) - {"units", "officials", "version"})
    if unknown:
        return ReadResult([], [RowError(source, 1, f"unknown top-level key(s) {', '.join(unknown)}"[:300])])
    rows: list[SourceRow] = []
    errors: list[RowError] = []
    # Walk the top-level object again to learn where each element starts (for line numbers).
    i = _skip_ws(text, 0) + 1
    while True:
        i = _skip_ws(text, i)
        if text[i] == "}":
            break
        key, i = dec.raw_decode(text, i)
        i = _skip_ws(text, _skip_ws(text, i) + 1)  # past ':'
        kind = {"units": "unit", "officials": "official"}.get(key)
        if kind is not None and text[i] != "[":
            errors.append(RowError(source, text.count("\n", 0, i) + 1, f"{key} must be a list"))
        if kind is not None and text[i] == "[":
            line, last = 1, 0
            for offset, value in _elements(text, i, dec):
                line += text.count("\n", last, offset)
                last = offset
                if len(rows) + len(errors) >= MAX_ROWS:
                    errors.append(RowError(source, line, f"more than {MAX_ROWS} records; split the file"))
                    break
                if not isinstance(value, dict):
                    errors.append(RowError(source, line, f"each entry of {key} must be an object"))
                    continue
                allowed = UNIT_KEYS if kind == "unit" else OFFICIAL_KEYS
                data = {k: v for k, v in value.items() if v not in (None, "") or k not in allowed}
                rows.append(SourceRow(source, line, kind, data))
        _, i = dec.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] == ",":
            i += 1
    return ReadResult(rows, errors)
