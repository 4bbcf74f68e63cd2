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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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
    rows: list[SourceRow]
    errors: list[RowError]


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


def read_csv(text: str, source: str) -> ReadResult:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return ReadResult([], [RowError(source, 0, "the file is empty")])
    except csv.Error as exc:
        return ReadResult([], [RowError(source, 1, f"CSV error: {exc}")])
    cols = [h.strip().lower() for h in header]
    if "employee_id" in cols:
        kind, base = "official", OFFICIAL_COLUMNS
    elif "unit_id" in cols:
        kind, base = "unit", UNIT_COLUMNS
    else:
        return ReadResult([], [RowError(source, 1, "the header needs employee_id (officials) or unit_id (units)")])
    _, unknown = _split_languages(dict.fromkeys(cols, ""), base)
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if unknown or dupes:
        why = f"unknown column(s) {', '.join(unknown)}" if unknown else f"repeated column(s) {', '.join(dupes)}"
        return ReadResult([], [RowError(source, 1, why[:300])])
    rows: list[SourceRow] = []
    errors: list[RowError] = []
    line = reader.line_num
    try:
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(rows) + len(errors) >= MAX_ROWS:
                errors.append(RowError(source, start, f"more than {MAX_ROWS} rows; split the file"))
                break
            if len(cells) != len(cols):
                errors.append(RowError(source, start, f"has {len(cells)} cells but the header has {len(cols)}"))
                continue
            if any(len(c) > MAX_CELL for c in cells):
                errors.append(RowError(source, start, f"a cell is longer than {MAX_CELL} characters"))
                continue
            data, _ = _split_languages(dict(zip(cols, cells, strict=True)), base)
            rows.append(SourceRow(source, start, kind, data))
    except csv.Error as exc:
        errors.append(RowError(source, line + 1, f"CSV error: {exc}"))
    return ReadResult(rows, errors)


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
