"""The spec's own OpenAPI document (Client-Server API v1.19) as a response checker for tests.

`spec()` loads spec/matrix/client-server-v1.19.openapi.json (vendored in the repository) once (or the file named by
PAIGHAM_CS_SPEC). `Spec.check(method, path, status, body)` finds the operation for a concrete request
path and returns the ways the response breaks the declared schema (JSON Schema Draft 2020-12);
an empty list means it conforms. `ConformanceRecorder` does this for every response an httpx client
sees, so a whole scenario is checked without a line per request.

Decisions where the document leaves room (each one is a rule of the Matrix spec, not of the file):
- A status an operation does not declare is accepted for 4xx (the spec lets every endpoint answer
  with the standard errors, e.g. 401 M_MISSING_TOKEN or 429, without listing them), never for 5xx
  (a 5xx is always a bug here), and never for 2xx/3xx.
- Every 4xx body must be a standard error response with both `errcode` and `error` strings, whether
  or not the operation declares a schema for it (the document marks `error` optional; this project
  always sends it) — except the 401 challenge of User-Interactive Auth, which has `flows` instead.
- A 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN is the spec's answer to a bad access token on every
  authenticated endpoint; it is checked as a standard error even where the operation's declared 401
  schema is the UIA challenge.
- Paths under /_matrix/client/r0 are checked as the /v3 operation of the same name.
- `…/state/{eventType}` without a trailing slash is the `{stateKey}` operation with an empty key
  (the spec says the trailing slash is optional then).
- Where the document has two operations on one path (the trailing-space duplicates of
  `/events` and `/rooms/{roomId}/invite`), a response conforms if it matches either.
- A `oneOf` with a bare `{"type": "object"}` branch is read as `anyOf`: the document's only one,
  GET …/state/{eventType}/{stateKey}, says "the content, or the whole event with ?format=event", but
  a whole event is also an object, so no event could ever pass a strict `oneOf`.
- A path that is not in the spec (an unknown endpoint) must answer with a standard 4xx error.
- DEVIATIONS lists the answers that knowingly differ from the document, each with its reason.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = REPO / "spec" / "matrix" / "client-server-v1.19.openapi.json"
BASE_URI = "urn:matrix:client-server-v1.19"
METHODS = ("get", "put", "post", "delete")
MAX_PROBLEMS_PER_RESPONSE = 8

# (operation label, status, JSON path or "" for the whole body) -> why this server's answer differs
# from the document on purpose; errors at that path (or anywhere, for "") are not reported.
DEVIATIONS: dict[tuple[str, int, str], str] = {
    (
        "GET /_matrix/client/v3/voip/turnServer",
        200,
        "",
    ): "When no TURN server is configured (no turn_uris). The schema requires username/password/uris/ttl, and the spec "
    "has no answer for 'none'; `{}` is what clients expect (matrix-js-sdk checks `res.uris`), while "
    "`uris: []` would make browsers reject the RTCPeerConnection config and an error would make "
    "clients retry forever. A configured answer is checked against the schema in tests/api/test_voip.py.",
    **{
        (
            f"GET /_matrix/client/v3/room_keys/version{tail}",
            200,
            "algorithm",
        ): "The backup's algorithm is whatever the client stored (e2ee/backup.py accepts any non-empty "
        "string, as clients may use algorithms newer than v1.19); the response enum lists only the one "
        "algorithm v1.19 defines, so a stored other value is echoed, not invented."
        for tail in ("", "/{version}")
    },
}

TOKEN_ERRORS = ("M_MISSING_TOKEN", "M_UNKNOWN_TOKEN")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["errcode", "error"],
    "properties": {"errcode": {"type": "string", "pattern": "^[A-Z][A-Z0-9_.]*$"}, "error": {"type": "string"}},
}


def spec_path() -> Path:
    return Path(os.environ.get("PAIGHAM_CS_SPEC", DEFAULT_SPEC))


def _format_checker() -> FormatChecker:
    """Checks for the Matrix identifier formats the document uses; unknown formats stay annotations."""
    checker = FormatChecker(formats=())

    def sigil(prefix: str, needs_server: bool) -> Any:
        def check(value: object) -> bool:
            if not isinstance(value, str):
                return True
            if not value.startswith(prefix) or len(value.encode()) > 255:
                return False
            return ":" in value if needs_server else len(value) > 1

        return check

    checker.checks("mx-user-id")(sigil("@", True))
    checker.checks("mx-room-alias")(sigil("#", True))
    checker.checks("mx-event-id")(sigil("$", False))
    # Room IDs of v12 rooms have no server part ("!<hash>"), so only the sigil is required.
    checker.checks("mx-room-id")(sigil("!", False))
    checker.checks("mx-mxc-uri")(lambda v: not isinstance(v, str) or v.startswith("mxc://"))
    checker.checks("mx-server-name")(lambda v: not isinstance(v, str) or (0 < len(v) <= 255 and " " not in v))
    checker.checks("int64")(lambda v: not isinstance(v, int) or -(2**63) <= v < 2**63)
    return checker


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # the document's path key, trailing-space duplicates included
    operation_id: str
    pointer: str  # JSON pointer of the operation object in the document
    param_count: int
    regex: re.Pattern[str]

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.template.strip()}"


def _escape_pointer(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template.strip())
    return re.compile("^" + "".join("[^/]*" if p.startswith("{") else re.escape(p) for p in parts) + "$")


def _relax_object_oneof(node: Any) -> Any:
    """`oneOf` → `anyOf` where one branch is a bare object (see the module docstring)."""
    if isinstance(node, dict):
        out = {k: _relax_object_oneof(v) for k, v in node.items()}
        if "oneOf" in out and {"type": "object"} in out["oneOf"]:
            out["anyOf"] = out.pop("oneOf")
        return out
    if isinstance(node, list):
        return [_relax_object_oneof(v) for v in node]
    return node


class Spec:
    def __init__(self, document: dict[str, Any]) -> None:
        document = _relax_object_oneof(document)
        self.document = document
        self.registry: Registry[Any] = Registry().with_resource(
            BASE_URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self.format_checker = _format_checker()
        self.operations: list[Operation] = []
        for template, item in document["paths"].items():
            for method in METHODS:
                op = item.get(method)
                if op is None:
                    continue
                self.operations.append(
                    Operation(
                        method=method,
                        template=template,
                        operation_id=op.get("operationId", ""),
                        pointer=f"/paths/{_escape_pointer(template)}/{method}",
                        param_count=template.count("{"),
                        regex=_template_regex(template),
                    )
                )
        # Literal segments win over parameters: /room_keys/version before /room_keys/version/{version}.
        self.operations.sort(key=lambda o: o.param_count)

    def resolve(self, pointer: str) -> Any:
        return self.registry.resolver(BASE_URI).lookup("#" + pointer).contents

    @functools.cache  # noqa: B019 - one Spec per process, validators are reused on purpose
    def validator(self, pointer: str) -> Draft202012Validator:
        """A validator for the schema at `pointer`; `$ref`s inside resolve against the whole document."""
        return Draft202012Validator(
            {"$ref": f"{BASE_URI}#{pointer}"}, registry=self.registry, format_checker=self.format_checker
        )

    def find(self, method: str, path: str) -> list[Operation]:
        """The operations for a concrete, percent-encoded request path (no query string)."""
        method = method.lower()
        path = re.sub(r"^/_matrix/client/r0/", "/_matrix/client/v3/", path)
        for candidate in (path, path + "/"):
            found = [o for o in self.operations if o.method == method and o.regex.match(candidate)]
            if found:
                fewest = found[0].param_count
                return [o for o in found if o.param_count == fewest]
        return []

    def check(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        content_type: str = "application/json",
    ) -> list[str]:
        """How this response breaks the spec (empty: it conforms)."""
        ops = self.find(method, path)
        if not ops:
            if 400 <= status < 500:
                return _errors(Draft202012Validator(ERROR_SCHEMA), body, f"{method.upper()} {path} -> {status}")
            return [f"{method.upper()} {path} -> {status}: not an operation of the spec"]
        if any((op.label, status, "") in DEVIATIONS for op in ops):
            return []
        attempts = [self._check_operation(op, status, body, content_type) for op in ops]
        if any(not a for a in attempts):
            return []
        return attempts[0]

    def _check_operation(self, op: Operation, status: int, body: Any, content_type: str) -> list[str]:
        where = f"{op.label} -> {status}"
        if status >= 500:
            return [f"{where}: server error {body!r:.300}"]
        problems: list[str] = []
        if 400 <= status < 500 and not _is_uia_challenge(status, body):
            problems += _errors(Draft202012Validator(ERROR_SCHEMA), body, f"{where} (standard error)")
            if status == 401 and isinstance(body, dict) and body.get("errcode") in TOKEN_ERRORS:
                return problems  # a token error, not the operation's own 401 (e.g. a UIA challenge)
        responses = self.resolve(op.pointer).get("responses", {})
        key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
        if key is None:
            if status < 400:
                problems.append(f"{where}: status not declared (declared: {sorted(responses)})")
            return problems
        content = responses[key].get("content")
        if not content:
            return problems
        media = "application/json" if "application/json" in content else next(iter(content))
        if media == "application/json" and not content_type.startswith("application/json"):
            return [*problems, f"{where}: content type {content_type!r}, spec says application/json"]
        if "schema" not in content[media] or media != "application/json":
            return problems
        pointer = f"{op.pointer}/responses/{key}/content/{_escape_pointer(media)}/schema"
        ignored = {path for (label, code, path) in DEVIATIONS if label == op.label and code == status}
        return problems + _errors(self.validator(pointer), body, where, ignored)


def _is_uia_challenge(status: int, body: Any) -> bool:
    """A 401 of User-Interactive Auth: flows and session, errcode only after a failed stage."""
    return status == 401 and isinstance(body, dict) and "flows" in body


def _errors(validator: Draft202012Validator, body: Any, where: str, ignored: set[str] | None = None) -> list[str]:
    out = []
    for err in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        at = "/".join(str(p) for p in err.absolute_path) or "(body)"
        if ignored and at in ignored:
            continue
        out.append(f"{where}: at {at}: {err.message[:300]}")
        if len(out) >= MAX_PROBLEMS_PER_RESPONSE:
            break
    return out


@functools.cache
def _load(path: str) -> Spec:
    return Spec(json.loads(Path(path).read_text(encoding="utf-8")))


def spec() -> Spec:
    """The loaded document; a missing document fails the test (vendored in spec/matrix/)."""
    path = spec_path()
    if not path.is_file():
        pytest.fail(f"the Client-Server OpenAPI document is missing at {path} (set PAIGHAM_CS_SPEC)")
    return _load(str(path))


@dataclass
class Seen:
    method: str
    path: str
    status: int
    operation: str  # the spec operation's label, or "" when the path is not in the spec
    problems: list[str]


@dataclass
class ConformanceRecorder:
    """An httpx response hook that checks every response against the spec and remembers the outcome."""

    spec: Spec
    seen: list[Seen] = field(default_factory=list)

    def attach(self, client: httpx.AsyncClient) -> ConformanceRecorder:
        client.event_hooks["response"].append(self._on_response)
        return self

    async def _on_response(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        path = urlsplit(str(request.url)).path
        raw_path = request.url.raw_path.decode("ascii").split("?", 1)[0]
        self.record(request.method, raw_path or path, response)

    def record(self, method: str, path: str, response: httpx.Response) -> Seen:
        ctype = response.headers.get("content-type", "")
        try:
            body: Any = response.json() if response.content else None
        except ValueError:
            body = response.content[:200]
        ops = self.spec.find(method, path)
        problems = self.spec.check(method, path, response.status_code, body, ctype)
        seen = Seen(method, path, response.status_code, ops[0].label if ops else "", problems)
        self.seen.append(seen)
        return seen

    @property
    def problems(self) -> list[str]:
        return [p for s in self.seen for p in s.problems]

    def operations(self, *, status_class: int | None = None) -> set[str]:
        return {
            s.operation for s in self.seen if s.operation and (status_class is None or s.status // 100 == status_class)
        }

    def report(self, limit: int = 60) -> str:
        lines = self.problems
        more = f"\n… and {len(lines) - limit} more" if len(lines) > limit else ""
        return "\n".join(lines[:limit]) + more


def missing(expected: Iterable[str], seen: set[str]) -> list[str]:
    return sorted(set(expected) - seen)
