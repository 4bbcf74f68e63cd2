"""Organisation records (units and officials): validation, normalisation and display names. Pure code.

One record arrives as a dict with the keys of the documented import format (README "Administering
Paigham"); `parse_unit` / `parse_official` return the normalised record or raise `Invalid` with a
reason a person can act on.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from paigham.ids import make_user_id, valid_localpart

STATUSES = ("active", "suspended", "deactivated")
MAX_NAME = 256
MAX_LANGS = 12
MAX_ID = 64
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LANG_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})?$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}\.[^@\s.]{1,63}$")
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()./-]{3,30}$")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # control characters and lone surrogates
UNIT_KEYS = {"unit_id", "parent_id", "kind", "names"}
OFFICIAL_KEYS = {
    "employee_id",
    "user_id",
    "names",
    "designation",
    "unit_id",
    "email",
    "phone",
    "status",
    "expires",
    "language",
}


class Invalid(ValueError):
    """A record that cannot be accepted; the message says why."""


@dataclass(frozen=True, slots=True)
class Unit:
    unit_id: str
    parent_id: str | None
    kind: str
    names: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"unit_id": self.unit_id, "parent_id": self.parent_id, "kind": self.kind, "names": self.names}


@dataclass(frozen=True, slots=True)
class Official:
    employee_id: str
    user_id: str
    names: dict[str, str]
    designation: dict[str, str] = field(default_factory=dict)
    unit_id: str = ""
    email: str | None = None
    phone: str | None = None
    status: str = "active"
    expires: str | None = None  # "YYYY-MM-DD" (valid through that day, UTC) or an ISO 8601 UTC time
    language: str | None = None  # the language server notices are written in (en, hi, ur, …)

    def to_json(self) -> dict[str, Any]:
        return {
            "employee_id": self.employee_id,
            "user_id": self.user_id,
            "names": self.names,
            "designation": self.designation,
            "unit_id": self.unit_id,
            "email": self.email,
            "phone": self.phone,
            "status": self.status,
            "expires": self.expires,
            "language": self.language,
        }


def clean_text(value: Any, what: str, limit: int = MAX_NAME) -> str | None:
    """NFC-normalised, whitespace-collapsed text; None when empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(f"{what} must be text")
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if _CONTROL.search(text):
        raise Invalid(f"{what} contains control characters")
    if len(text) > limit:
        raise Invalid(f"{what} is longer than {limit} characters")
    return text or None


def check_id(value: Any, what: str) -> str:
    text = clean_text(value, what, MAX_ID)
    if text is None:
        raise Invalid(f"{what} is missing")
    if not _ID_RE.match(text):
        raise Invalid(f"{what} {text!r} may only contain letters, digits, '.', '_' and '-'")
    return text


def _languages(value: Any, what: str, required: bool) -> dict[str, str]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise Invalid(f'{what} must be an object of language code to text, e.g. {{"en": "…"}}')
    if len(value) > MAX_LANGS:
        raise Invalid(f"{what} has more than {MAX_LANGS} languages")
    out: dict[str, str] = {}
    for lang, text in value.items():
        if not isinstance(lang, str) or not _LANG_RE.match(lang):
            raise Invalid(f"{what}: {str(lang)[:20]!r} is not a language code (en, hi, ur, …)")
        cleaned = clean_text(text, f"{what} ({lang})")
        if cleaned is not None:
            out[lang] = cleaned
    if required and not out:
        raise Invalid(f"{what}: at least one name is required")
    return dict(sorted(out.items()))


def _unknown(data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(str(k) for k in data if k not in allowed)
    if extra:
        raise Invalid(f"unknown field(s) {', '.join(extra)[:200]}")


T = TypeVar("T")


class _Problems:
    """Collects every problem of one record, so an import reports them all at once, not one per try."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def __call__(self, check: Callable[..., T], *args: Any) -> T | None:
        try:
            return check(*args)
        except Invalid as exc:
            self.found.append(str(exc))
            return None

    def add(self, problem: str) -> None:
        self.found.append(problem)

    def raise_any(self) -> None:
        if self.found:
            raise Invalid("; ".join(self.found)[:1000])


def parse_unit(data: dict[str, Any]) -> Unit:
    problems = _Problems()
    problems(_unknown, data, UNIT_KEYS)
    unit_id = problems(check_id, data.get("unit_id"), "unit_id")
    parent = data.get("parent_id")
    parent_id = problems(check_id, parent, "parent_id") if parent not in (None, "") else None
    if parent_id is not None and parent_id == unit_id:
        problems.add("a unit cannot be its own parent")
    kind = problems(clean_text, data.get("kind"), "kind", 32) or "unit"
    if not _KIND_RE.match(kind):
        problems.add(f"kind {kind!r} must be lower-case letters, digits, '_' or '-' (e.g. ministry)")
    names = problems(_languages, data.get("names"), "names", True)
    problems.raise_any()
    assert unit_id is not None and names is not None
    return Unit(unit_id, parent_id, kind, names)


def user_id_for(value: Any, server_name: str) -> str:
    text = clean_text(value, "user_id", 255)
    if text is None:
        raise Invalid("user_id is missing")
    text = text.lower()
    if text.startswith("@"):
        local, sep, server = text[1:].partition(":")
        if not sep or server != server_name.lower():
            raise Invalid(f"user_id {text!r} must be a local user of {server_name}")
    else:
        local = text
    if not valid_localpart(local):
        raise Invalid(f"user_id {local!r} may only contain a-z, 0-9 and . _ = - / +")
    user_id = make_user_id(local, server_name)
    if len(user_id.encode()) > 255:
        raise Invalid("user_id is too long")
    return user_id


def parse_expiry(value: Any) -> tuple[str | None, int | None]:
    """(normalised text, expiry time in ms). A date means valid through that day (UTC)."""
    text = clean_text(value, "expires", 40)
    if text is None:
        return None, None
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            end = datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1)
            return d.isoformat(), int(end.timestamp() * 1000)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"expires {text!r} must be a date (2026-03-31) or an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ"), int(dt.timestamp() * 1000)


def parse_official(data: dict[str, Any], server_name: str, default_lang: str = "en") -> Official:
    problems = _Problems()
    problems(_unknown, data, OFFICIAL_KEYS)
    employee_id = problems(check_id, data.get("employee_id"), "employee_id")
    user_id = problems(user_id_for, data.get("user_id"), server_name)
    designation = data.get("designation")
    if isinstance(designation, str):
        designation = {default_lang: designation}
    email = problems(clean_text, data.get("email"), "email", 320)
    if email is not None and not _EMAIL_RE.match(email):
        problems.add(f"email {email!r} is not an e-mail address")
    phone = problems(clean_text, data.get("phone"), "phone", 32)
    if phone is not None and not _PHONE_RE.match(phone):
        problems.add(f"phone {phone!r} is not a phone number")
    status = (problems(clean_text, data.get("status"), "status", 16) or "active").lower()
    if status not in STATUSES:
        problems.add(f"status {status!r} must be one of {', '.join(STATUSES)}")
    unit_id = problems(check_id, data.get("unit_id"), "unit_id")
    expiry = problems(parse_expiry, data.get("expires"))
    language = (problems(clean_text, data.get("language"), "language", 16) or "").lower() or None
    if language is not None and not _LANG_RE.match(language):
        problems.add(f"language {language!r} is not a language code (en, hi, ur, …)")
    names = problems(_languages, data.get("names"), "names", True)
    designations = problems(_languages, designation, "designation", False)
    problems.raise_any()
    assert employee_id and user_id and unit_id and names is not None and designations is not None and expiry
    return Official(
        employee_id, user_id, names, designations, unit_id, email, phone, status, expiry[0], language
    )  # fmt: skip


def expiry_ms(official: Official) -> int | None:
    return parse_expiry(official.expires)[1]


def pick(texts: dict[str, str], lang: str, fallback: str = "en") -> str:
    """The text in `lang`, else the fallback language, else the first one."""
    if lang in texts:
        return texts[lang]
    if fallback in texts:
        return texts[fallback]
    return next(iter(texts.values()), "")


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def check_format(fmt: str) -> None:
    """Raise ValueError unless `fmt` only uses the documented placeholders."""
    for _, name, spec, conv in string.Formatter().parse(fmt):
        if name is None:
            continue
        if spec or conv or not re.match(r"^(name|designation|unit|unit_id|employee_id)(_[a-z]{2,3})?$", name):
            raise ValueError(
                f"display name format: unknown placeholder {{{name}}}; use {{name}}, {{designation}}, "
                "{unit}, {unit_id}, {employee_id}, optionally with a language as in {name_hi}"
            )


def display_name(fmt: str, official: Official, unit: Unit | None, lang: str) -> str:
    """The display name the admin's format gives; empty brackets and separators are tidied away."""
    fields = _Fields(
        name=pick(official.names, lang),
        designation=pick(official.designation, lang),
        unit=pick(unit.names, lang) if unit else "",
        unit_id=official.unit_id,
        employee_id=official.employee_id,
    )
    for code, text in official.names.items():
        fields[f"name_{code}"] = text
    for code, text in official.designation.items():
        fields[f"designation_{code}"] = text
    for code, text in (unit.names if unit else {}).items():
        fields[f"unit_{code}"] = text
    out = fmt.format_map(fields)
    out = re.sub(r"\(\s*[,;|/-]\s*", "(", out)
    out = re.sub(r"\s*[,;|/-]\s*\)", ")", out)
    out = re.sub(r"\(\s*\)|\[\s*\]", "", out)
    out = re.sub(r"\s*[,;|]\s*$", "", out)
    out = " ".join(out.split())
    return (out or fields["name"])[:MAX_NAME]


def find_cycle(parents: dict[str, str | None], start: str) -> list[str] | None:
    """The loop reached from `start` by following parents, if any."""
    seen: list[str] = []
    node: str | None = start
    while node is not None:
        if node in seen:
            return [*seen[seen.index(node) :], node]
        seen.append(node)
        node = parents.get(node)
    return None


def changed_fields(old: Any, new: Any) -> list[str]:
    """Field-by-field differences of two records (dicts compared per language)."""
    out: list[str] = []
    for key, before in old.to_json().items():
        after = new.to_json()[key]
        if isinstance(before, dict) and isinstance(after, dict):
            for lang in sorted(set(before) | set(after)):
                if before.get(lang) != after.get(lang):
                    out.append(f"{key}.{lang}: {before.get(lang)!r} → {after.get(lang)!r}")
        elif before != after:
            out.append(f"{key}: {before!r} → {after!r}")
    return out
