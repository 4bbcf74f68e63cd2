"""Content repository: authenticated media (v1.11+), uploads (direct and asynchronous), thumbnails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, error_response, ok, query_bool, query_int
from paigham.config import Config
from paigham.domain import media as rules
from paigham.errors import Codes, MatrixError
from paigham.media.service import MAX_WAIT_MS, MediaService, Upload
from paigham.requester import Requester

CSP = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
    "style-src 'unsafe-inline'; object-src 'self';"
)
AUTHED = "/_matrix/client/v1/media"
LEGACY = ("/_matrix/media/v3", "/_matrix/media/r0")


# Reads a stored file's plaintext from `start` up to `end` (None: to the end).
Content = Callable[[int, int | None], Awaitable[AsyncIterator[bytes]]]


class StoredFile(Protocol):
    """What serving a stored file needs to know of it (the media service's row)."""

    @property
    def length(self) -> int | None: ...
    @property
    def served_type(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...


def _security_headers(cache: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": cache,
    }


def _digits(raw: str, max_len: int) -> bool:
    """ASCII digits only ("²".isdigit() is true but int() refuses it), and not absurdly long."""
    return raw.isascii() and raw.isdigit() and len(raw) <= max_len


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not _digits(raw.strip(), 19):
        raise MatrixError(400, Codes.INVALID_PARAM, "Content-Length must be a number")
    return int(raw)


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise MatrixError(400, Codes.UNKNOWN, "The client went away before the upload finished") from None


def _upload(media: MediaService, request: Request) -> Upload:
    declared = _declared_length(request)
    kind, name = media.check_upload(request.headers.get("content-type"), request.query_params.get("filename"), declared)
    return Upload(kind, name, declared, _body(request))


def _thumb_params(request: Request) -> tuple[int, int, str, bool]:
    q = request.query_params
    for name in ("width", "height"):
        if not q.get(name):
            raise MatrixError(400, Codes.MISSING_PARAM, f"{name} is required")
        if not _digits(q[name], 6):
            raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be a positive integer")
    return int(q["width"]), int(q["height"]), q.get("method") or "scale", query_bool(request, "animated")


def routes(config: Config, auth: Authenticator, media: MediaService) -> list[Route]:
    async def download_response(request: Request, *, private: bool) -> Response:
        params = request.path_params
        timeout = query_int(request, "timeout_ms", MAX_WAIT_MS, 0, MAX_WAIT_MS)
        row = await media.ready(params["server_name"], params["media_id"], timeout)
        name = rules.check_filename(params.get("file_name")) or row.upload_name
        await media.check_stored(row)
        return await _serve(request, row, name, lambda start, end: media.content(row, start, end), private=private)

    async def thumbnail_response(request: Request, *, private: bool) -> Response:
        width, height, method, animated = _thumb_params(request)
        params = request.path_params
        timeout = query_int(request, "timeout_ms", MAX_WAIT_MS, 0, MAX_WAIT_MS)
        row = await media.ready(params["server_name"], params["media_id"], timeout)
        kind, data = await media.thumbnail(row, width, height, method, animated)
        ext = kind.split("/")[1]
        headers = _security_headers(f"{'private' if private else 'public'}, max-age=86400")
        headers["Content-Disposition"] = f'inline; filename="thumbnail.{ext}"'
        return Response(data, media_type=kind, headers=headers)

    @authed(auth)
    async def config_(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/v1/media/config"""
        return ok({"m.upload.size": config.media_max_upload_bytes})

    @authed(auth)
    async def download(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]"""
        return await download_response(request, private=True)

    @authed(auth)
    async def thumbnail(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"""
        return await thumbnail_response(request, private=True)

    @authed(auth)
    async def preview_url(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/v1/media/preview_url"""
        raise MatrixError(
            404,
            Codes.UNRECOGNIZED,
            "URL previews are not available: this server never fetches "
            "outside web pages on a user's behalf (privacy, and no requests to internal addresses)",
        )

    @authed(auth)
    async def upload(request: Request, requester: Requester) -> Response:
        """POST /_matrix/media/v3/upload"""
        return ok({"content_uri": await media.upload(requester.user_id, _upload(media, request))})

    @authed(auth)
    async def create(request: Request, requester: Requester) -> Response:
        """POST /_matrix/media/v1/create"""
        return ok(await media.create(requester.user_id))

    @authed(auth)
    async def upload_to(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}"""
        p = request.path_params
        await media.upload_to(requester.user_id, p["server_name"], p["media_id"], _upload(media, request))
        return ok({})

    async def legacy_download(request: Request) -> Response:
        """GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}] (deprecated)"""
        _legacy_allowed(config)
        return await download_response(request, private=False)

    async def legacy_thumbnail(request: Request) -> Response:
        """GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId} (deprecated)"""
        _legacy_allowed(config)
        return await thumbnail_response(request, private=False)

    out = [
        Route(f"{AUTHED}/config", config_, methods=["GET"]),
        Route(f"{AUTHED}/download/{{server_name}}/{{media_id}}", download, methods=["GET"]),
        Route(f"{AUTHED}/download/{{server_name}}/{{media_id}}/{{file_name}}", download, methods=["GET"]),
        Route(f"{AUTHED}/thumbnail/{{server_name}}/{{media_id}}", thumbnail, methods=["GET"]),
        Route(f"{AUTHED}/preview_url", preview_url, methods=["GET"]),
        Route("/_matrix/media/v1/create", create, methods=["POST"]),
    ]
    for base in LEGACY:
        out += [
            Route(f"{base}/upload", upload, methods=["POST"]),
            Route(f"{base}/upload/{{server_name}}/{{media_id}}", upload_to, methods=["PUT"]),
            Route(f"{base}/config", config_, methods=["GET"]),
            Route(f"{base}/preview_url", preview_url, methods=["GET"]),
            Route(f"{base}/download/{{server_name}}/{{media_id}}", legacy_download, methods=["GET"]),
            Route(f"{base}/download/{{server_name}}/{{media_id}}/{{file_name}}", legacy_download, methods=["GET"]),
            Route(f"{base}/thumbnail/{{server_name}}/{{media_id}}", legacy_thumbnail, methods=["GET"]),
        ]
    return out


def _legacy_allowed(config: Config) -> None:
    if not config.media_legacy_unauthenticated:
        raise MatrixError(
            404,
            Codes.NOT_FOUND,
            "Unauthenticated media downloads are disabled on this server; "
            "use /_matrix/client/v1/media/ with an access token",
        )


async def _serve(request: Request, row: StoredFile, name: str | None, content: Content, *, private: bool) -> Response:
    size = row.length or 0
    kind = row.served_type or "application/octet-stream"
    headers = _security_headers(f"{'private' if private else 'public'}, max-age=86400, immutable")
    headers.update(
        {
            "Content-Disposition": rules.content_disposition(kind, name),
            "Accept-Ranges": "bytes",
            "ETag": f'"{row.sha256}"',
        }
    )
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    try:
        rng = rules.parse_range(request.headers.get("range"), size)
    except rules.RangeNotSatisfiable as exc:
        resp = error_response(exc)
        resp.headers["Content-Range"] = f"bytes */{exc.size}"
        return resp
    if rng is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(await content(0, None), media_type=kind, headers=headers)
    headers["Content-Length"] = str(rng.length)
    headers["Content-Range"] = f"bytes {rng.start}-{rng.end}/{size}"
    return StreamingResponse(await content(rng.start, rng.end), status_code=206, media_type=kind, headers=headers)
