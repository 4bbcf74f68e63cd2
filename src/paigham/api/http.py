"""HTTP edge helpers shared by every API module: JSON in and out, auth, errors, route tables."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from paigham.api.compression import IN_PARTS
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
MAX_JSON_BODY = 1024 * 1024
MAX_JSON_DEPTH = 100
TOO_DEEP_MESSAGE = f"JSON must not be nested more than {MAX_JSON_DEPTH} levels deep"


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


# Where JSONInParts's members go: a byte msgspec never writes (it escapes control characters in
# strings, and the members are its output too), so the hole is found by that byte alone.
_HOLE_VALUE = msgspec.Raw(b"\x00")
_HOLE = b'{"":\x00}'
PART_BYTES = 64 * 1024


class JSONInParts(Response):
    """A big JSON answer sent in parts of about PART_BYTES, never joined into one buffer: `content`,
    holding the object `hole_object()` gives where the members belong, encoded with that object
    replaced by one of `members` — (key, value) pairs whose values are mostly msgspec.Raw, JSON
    already. Each member is let go once sent, so what the answer holds shrinks as it goes; the
    compression middleware compresses the parts as they pass (compression.IN_PARTS)."""

    media_type = "application/json"

    def __init__(self, content: Any, members: list[tuple[str, Any]], status_code: int = 200) -> None:
        encoded = _encoder.encode(content)
        at = encoded.find(_HOLE)
        if at < 0 or encoded.find(b"\x00", at + len(_HOLE)) >= 0:
            raise ValueError("JSONInParts: the content must hold the hole exactly once")
        self._head, self._tail = encoded[:at], encoded[at + len(_HOLE) :]
        # Encoded now (keys, and any value not yet JSON), reversed: sent by popping from the end.
        self._members = [
            (_encoder.encode(key), value if isinstance(value, msgspec.Raw) else msgspec.Raw(_encoder.encode(value)))
            for key, value in reversed(members)
        ]
        length = len(self._head) + 2 + len(self._tail) + max(0, len(members) - 1)
        length += sum(len(key) + 1 + len(value) for key, value in self._members)
        super().__init__(None, status_code, {"content-length": str(length)})

    @staticmethod
    def hole_object() -> dict[str, Any]:
        return {"": _HOLE_VALUE}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers, IN_PARTS: True}
        )
        part = [self._head, b"{"] if self._members else [self._head, b"{}"]
        size = len(self._head)
        members = self._members
        while members:
            key, value = members.pop()
            part += (key, b":", value, b"," if members else b"}")
            size += len(key) + len(value) + 2
            del key, value
            if size >= PART_BYTES:
                await send({"type": "http.response.body", "body": b"".join(part), "more_body": True})
                part, size = [], 0
        part.append(self._tail)
        await send({"type": "http.response.body", "body": b"".join(part), "more_body": False})


def ok(content: Any = None, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({} if content is None else content, status_code=status, headers=headers)


def error_response(err: MatrixError) -> JSONResponse:
    return JSONResponse(err.to_dict(), status_code=err.status)


async def read_body(request: Request, limit: int = MAX_JSON_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise MatrixError(413, Codes.TOO_LARGE, f"Request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise MatrixError(413, Codes.TOO_LARGE, f"Request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The body as a JSON object: M_NOT_JSON when it is not JSON, M_BAD_JSON when not an object."""
    raw = await read_body(request)
    if not raw.strip():
        if allow_empty:
            return {}
        raise MatrixError(400, Codes.NOT_JSON, "Request body is empty; a JSON object is required")
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # invalid UTF-8 raises the latter
        raise MatrixError(400, Codes.NOT_JSON, f"Content not JSON: {exc}") from None
    except RecursionError:
        raise MatrixError(400, Codes.BAD_JSON, TOO_DEEP_MESSAGE) from None
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, "The request body must be a JSON object")
    # Deeper JSON would reach recursive code further in (canonical JSON, redaction) and fail there.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise MatrixError(400, Codes.BAD_JSON, TOO_DEEP_MESSAGE)
    if b"\\u0000" in raw and _has_nul(value):  # JSON can carry U+0000 only as the \u0000 escape
        raise MatrixError(400, Codes.BAD_JSON, NUL_MESSAGE)
    return value


# PostgreSQL text cannot hold U+0000 (SQLite can); both engines must answer alike, so it is refused
# at the edge: in JSON bodies here, in paths and query strings by RejectNul.
NUL_MESSAGE = "Strings must not contain the NUL character (U+0000)"


def json_depth(value: Any) -> int:
    """How deeply objects and arrays nest (a scalar is 0, {} is 1), without recursing."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class RejectNul:
    """Pure ASGI middleware: a NUL in the (decoded) path or the query string is 400 M_INVALID_PARAM,
    before any handler can pass it on to storage."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or _query_has_nul(scope.get("query_string", b""))):
            await error_response(MatrixError(400, Codes.INVALID_PARAM, NUL_MESSAGE))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _query_has_nul(query: bytes) -> bool:
    return b"\x00" in query or b"%00" in query


def convert(value: Any, typ: type[T]) -> T:
    """Validate a decoded JSON value against a msgspec Struct; wrong types give M_BAD_JSON."""
    try:
        return msgspec.convert(value, typ)
    except msgspec.ValidationError as exc:
        raise MatrixError(400, Codes.BAD_JSON, str(exc)) from None


async def typed_body(request: Request, typ: type[T], *, allow_empty: bool = False) -> T:
    return convert(await json_body(request, allow_empty=allow_empty), typ)


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        val = int(raw)
    except ValueError:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be an integer") from None
    return max(lo, min(hi, val))


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be true or false")


Handler = Callable[[Request], Awaitable[Response]]
# A handler for signed-in users: `authed` authenticates the request and hands it the requester.
AuthedHandler = Callable[[Request, Requester], Awaitable[Response]]


class Authenticator(Protocol):
    async def authenticate(self, token: str | None) -> Requester: ...


def authed(auth: Authenticator) -> Callable[[AuthedHandler], Handler]:
    """Declares that a route needs an access token: the wrapped handler is called as
    `handler(request, requester)` once the bearer token is valid (else 401 before it runs).
    Routes without it (login, register, discovery) are the visible exceptions."""

    def wrap(handler: AuthedHandler) -> Handler:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            return await handler(request, await auth.authenticate(bearer(request)))

        return endpoint

    return wrap


def require_self(requester: Requester, user_id: str) -> None:
    """For routes with a {userId} that only that user may use (their own account data, typing, ...)."""
    if user_id != requester.user_id:
        raise MatrixError(403, Codes.FORBIDDEN, "You can only do this for yourself")


CLIENT_V3 = "/_matrix/client/v3"
CLIENT_R0 = "/_matrix/client/r0"
CLIENT_V1 = "/_matrix/client/v1"


def client_routes(
    path: str, handler: Handler, methods: list[str], *, versions: tuple[str, ...] = ("v3", "r0")
) -> list[Route]:
    """The same handler under /_matrix/client/{v3,r0}{path} (older clients still use r0)."""
    return [Route(f"/_matrix/client/{v}{path}", handler, methods=methods) for v in versions]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip()
        raise MatrixError(401, Codes.MISSING_TOKEN, "Invalid Authorization header")
    # Deprecated (removed after v1.19 by MSC4127) but still sent by some tools.
    return request.query_params.get("access_token")


def client_ip(request: Request) -> str | None:
    """The peer address (uvicorn already applies X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else None
