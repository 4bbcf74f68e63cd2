"""The content repository: uploads streamed to encrypted files, checked (type, size, quota, virus
scanner) before they become downloadable; downloads and thumbnails; admin quarantine and purge."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import structlog

from paigham.clock import now_ms
from paigham.config import Config
from paigham.domain import media as rules
from paigham.errors import Codes, MatrixError
from paigham.media import crypto
from paigham.media.blobs import BlobStore, BlobWriter
from paigham.media.scanner import ClamdScanner, ScannerUnavailable
from paigham.media.thumbnailer import Thumbnailer, ThumbnailFailed, ThumbnailLimits
from paigham.messages import N_
from paigham.services.admin import Actor
from paigham.services.ports import AuditLog
from paigham.storage.media import Content, MediaRow, MediaStore, ThumbRow
from paigham.types import JsonDict

log = structlog.get_logger(__name__)

MAX_WAIT_MS = 20_000
# Other areas check and observe uploads: policies per user (type, size), the audit log (metadata).
UploadCheck = Callable[[str, str, int | None], Awaitable[None]]  # user, content type, size (None: not known yet)
UploadedHook = Callable[[str, str, str, int, str | None], Awaitable[None]]  # user, media ID, type, size, name

_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class Upload:
    """What the edge hands over: headers and query already read, the body still streaming."""

    content_type: str
    filename: str | None
    declared_length: int | None
    body: AsyncIterator[bytes]


class MediaPage(NamedTuple):
    media: list[MediaRow]
    total: int  # on every page


DISK_FULL = N_("The server has no room left to store files; try again later")


def media_info(row: MediaRow) -> JsonDict:
    """One media in the shape of Synapse's admin API."""
    return {
        "media_id": row.media_id,
        "media_type": row.content_type,
        "media_length": row.length,
        "upload_name": row.upload_name,
        "created_ts": row.created_ts,
        "last_access_ts": row.last_access_ts,
        "quarantined_by": row.quarantined_by,
        "safe_from_quarantine": False,
        "user_id": row.user_id,
        "state": row.state,
        "sha256": row.sha256,
    }


def not_found(what: str = "Media not found") -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, what)


class MediaService:
    def __init__(
        self,
        config: Config,
        store: MediaStore,
        *,
        upload_checks: Sequence[UploadCheck] = (),
        uploaded_hooks: Sequence[UploadedHook] = (),
        audit: AuditLog | None = None,
    ) -> None:
        self.config = config
        self.audit = audit  # administrators' actions on media (quarantine, delete, purge) are recorded
        self.server_name = config.server_name
        self.store = store
        root = Path(config.media_store_path) if config.media_store_path else config.data_path / "media"
        key_file = Path(config.media_key_file) if config.media_key_file else config.data_path / "media.key"
        self.blobs = BlobStore(root, crypto.load_or_create_master_key(key_file))
        self.blobs.sweep_tmp()
        self.allowed = rules.parse_patterns(config.media_allowed_content_types)
        self.thumbnailer = Thumbnailer(
            ThumbnailLimits(
                config.media_thumbnail_max_pixels,
                config.media_thumbnail_memory_mb,
                config.media_thumbnail_timeout_s,
                config.media_thumbnail_workers,
            )
        )
        self.upload_checks = tuple(upload_checks)
        self.uploaded_hooks = tuple(uploaded_hooks)
        self.scanner: ClamdScanner | None = None
        if config.media_clamd_socket or config.media_clamd_host:
            self.scanner = ClamdScanner(
                socket_path=config.media_clamd_socket,
                host=config.media_clamd_host,
                port=config.media_clamd_port,
                timeout_s=config.media_clamd_timeout_s,
            )

    def mxc(self, media_id: str) -> str:
        return f"mxc://{self.server_name}/{media_id}"

    # -- upload ---------------------------------------------------------------------------------
    def check_upload(
        self, content_type: str | None, filename: str | None, declared: int | None
    ) -> tuple[str, str | None]:
        """Checks that need no body: refuse before reading a byte (and before touching the disk)."""
        kind = rules.parse_content_type(content_type)
        name = rules.check_filename(filename)
        if not rules.type_allowed(kind, self.allowed):
            raise MatrixError(403, Codes.FORBIDDEN, f"This server does not accept files of type {rules.essence(kind)}")
        if declared is not None and declared > self.config.media_max_upload_bytes:
            raise self._too_large()
        return kind, name

    def _too_large(self) -> MatrixError:
        return MatrixError(
            413, Codes.TOO_LARGE, f"Cannot upload files larger than {self.config.media_max_upload_bytes} bytes"
        )

    def _over_quota(self) -> MatrixError:
        return MatrixError(
            403,
            Codes.FORBIDDEN,
            f"Upload quota exceeded: each user may store {self.config.media_user_quota_bytes} bytes",
        )

    async def create(self, user_id: str) -> dict[str, object]:
        """POST /_matrix/media/v1/create: reserve an ID for an upload that comes later."""
        now = now_ms()
        expires = now + self.config.media_pending_expiry_s * 1000
        media_id = secrets.token_urlsafe(18)
        if not await self.store.create_pending(media_id, user_id, now, expires, self.config.media_max_pending_uploads):
            raise MatrixError(
                429,
                Codes.LIMIT_EXCEEDED,
                "Too many pending uploads; finish or wait for them to expire",
                retry_after_ms=60_000,
            )
        return {"content_uri": self.mxc(media_id), "unused_expires_at": expires}

    async def upload(self, user_id: str, up: Upload, media_id: str | None = None) -> str:
        """Stream the body to disk, scan it, then make it downloadable; returns the mxc URI."""
        for check in self.upload_checks:
            await check(user_id, up.content_type, up.declared_length)
        quota = self.config.media_user_quota_bytes
        used = await self.store.used_bytes(user_id) if quota > 0 else 0
        if quota > 0 and up.declared_length is not None and used + up.declared_length > quota:
            raise self._over_quota()
        if media_id is None:
            created, media_id = False, secrets.token_urlsafe(18)
        else:
            created = True
        writer = self.blobs.writer()
        try:
            digest = await self._receive(writer, up, used, quota)
            for check in self.upload_checks:
                await check(user_id, up.content_type, writer.size)
            wrapped = self.blobs.wrap(writer.key, media_id)
            await self._scan(writer, wrapped, media_id, user_id, up, digest)
            content = Content(
                up.content_type,
                rules.served_type(up.content_type, writer.head),
                up.filename,
                writer.size,
                digest,
                wrapped,
            )
            await writer.commit(self.blobs.media_path(media_id))
        except OSError as exc:
            await writer.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk is full: an administrator's matter
                log.error("media.disk_full", user_id=user_id, path=str(self.blobs.root))
                raise MatrixError(
                    507, Codes.UNKNOWN, N_("The server has no room left to store files; try again later")
                ) from None
            raise
        except BaseException:
            await writer.abort()
            raise
        try:
            ok = await self.store.finish(media_id, user_id, content, now_ms(), quota, created=created)
        except BaseException:
            await self.blobs.remove_media(media_id)
            raise
        if not ok:
            await self.blobs.remove_media(media_id)
            raise self._over_quota()
        log.info("media.uploaded", media_id=media_id, user_id=user_id, length=writer.size)
        for hook in self.uploaded_hooks:
            await hook(user_id, media_id, up.content_type, writer.size, up.filename)
        return self.mxc(media_id)

    async def _receive(self, writer: BlobWriter, up: Upload, used: int, quota: int) -> str:
        digest = hashlib.sha256()
        limit = self.config.media_max_upload_bytes
        await writer.open()
        async for chunk in up.body:
            if writer.size + len(chunk) > limit:
                raise self._too_large()
            if quota > 0 and used + writer.size + len(chunk) > quota:
                raise self._over_quota()
            digest.update(chunk)
            await writer.write(chunk)
        if up.declared_length is not None and writer.size != up.declared_length:
            raise MatrixError(400, Codes.INVALID_PARAM, "The body is shorter than its Content-Length")
        await writer.finish()
        return digest.hexdigest()

    async def _scan(
        self, writer: BlobWriter, wrapped: bytes, media_id: str, user_id: str, up: Upload, digest: str
    ) -> None:
        if self.scanner is None:
            return
        try:
            result = await self.scanner.scan(self.blobs.read(writer.tmp, wrapped, media_id, writer.size))
        except ScannerUnavailable as exc:
            log.error("media.scanner_unavailable", error=str(exc), scanner=repr(self.scanner))
            raise MatrixError(
                503, Codes.UNKNOWN, f"The upload could not be checked for viruses ({exc}); try again later"
            ) from None
        if result.clean:
            return
        log.warning("media.infected", user_id=user_id, signature=result.signature, sha256=digest)
        await self.store.record_detection(
            ts=now_ms(),
            user_id=user_id,
            media_id=media_id,
            upload_name=up.filename,
            content_type=up.content_type,
            length=writer.size,
            sha256=digest,
            signature=result.signature,
        )
        raise MatrixError(403, Codes.FORBIDDEN, f"The file was rejected by the virus scanner ({result.signature})")

    async def upload_to(self, user_id: str, server_name: str, media_id: str, up: Upload) -> None:
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}: fill an ID from POST /create."""
        row = await self._local_row(server_name, media_id)
        now = now_ms()
        if row is None or (row.state == "pending" and (row.expires_ts or 0) < now):
            raise not_found("Unknown or expired media ID; create one with POST /_matrix/media/v1/create")
        if row.user_id != user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "This media ID was created by another user")
        if row.state != "pending" or not await self.store.claim(media_id, now):
            raise MatrixError(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media already uploaded")
        try:
            await self.upload(user_id, up, media_id)
        except BaseException:
            await self.store.unclaim(media_id)
            raise

    # -- download -------------------------------------------------------------------------------
    async def _local_row(self, server_name: str, media_id: str) -> MediaRow | None:
        rules.check_media_id(media_id)
        if server_name != self.server_name:
            raise not_found("Remote media is not available: this server does not federate")
        return await self.store.get(media_id)

    async def ready(self, server_name: str, media_id: str, timeout_ms: int = MAX_WAIT_MS) -> MediaRow:
        """The media, once its content is there (waiting up to timeout_ms for an async upload)."""
        deadline = asyncio.get_running_loop().time() + min(max(timeout_ms, 0), MAX_WAIT_MS) / 1000
        while True:
            row = await self._local_row(server_name, media_id)
            if row is None or (row.state == "pending" and (row.expires_ts or 0) < now_ms()):
                raise not_found()
            if row.quarantined_by:
                raise not_found("This media has been quarantined by an administrator")
            if row.state == "ready":
                return row
            if asyncio.get_running_loop().time() >= deadline:
                raise MatrixError(504, Codes.NOT_YET_UPLOADED, "Content has not yet been uploaded")
            await asyncio.sleep(_POLL_S)

    async def content(self, row: MediaRow, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The plaintext, with its first piece already decrypted: a damaged file fails here, with a
        clear error, instead of after the response headers were sent."""
        assert row.wrapped_key is not None and row.length is not None
        stream = self.blobs.read(
            self.blobs.media_path(row.media_id), row.wrapped_key, row.media_id, row.length, start, end
        )
        try:
            first = await anext(stream, b"")
        except (crypto.MediaCryptoError, OSError) as exc:
            log.error("media.damaged", media_id=row.media_id, error=str(exc))
            raise not_found("The stored content of this media failed its integrity check") from None

        async def rest() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for piece in stream:
                yield piece

        return rest()

    async def check_stored(self, row: MediaRow) -> None:
        """Before answering 200: the encrypted file is there and has the size its row says."""
        path = self.blobs.media_path(row.media_id)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            size = -1
        if size != crypto.stored_size(row.length or 0):
            log.error("media.file_missing", media_id=row.media_id, found=size)
            raise not_found("The content of this media is missing on the server")
        await self.store.touch(row, now_ms())

    # -- thumbnails -----------------------------------------------------------------------------
    async def thumbnail(self, row: MediaRow, width: int, height: int, method: str, animated: bool) -> tuple[str, bytes]:
        w, h, m = rules.thumbnail_size(width, height, method)
        kind = rules.essence(row.served_type or "")
        if kind not in rules.THUMBNAILABLE:
            raise MatrixError(400, Codes.UNKNOWN, "Cannot generate thumbnails for the requested content")
        if (row.length or 0) > self.config.media_thumbnail_max_source_bytes:
            raise MatrixError(413, Codes.TOO_LARGE, "The image is too large to thumbnail")
        if row.thumb_error:
            status, errcode, msg = row.thumb_error.split(" ", 2)
            raise MatrixError(int(status), errcode, msg)
        animated = animated and kind != "image/jpeg"
        cached = await self.store.get_thumbnail(row.media_id, w, h, m, animated)
        if cached is not None:
            return cached.content_type, await self.blobs.read_all(
                self._thumb_path(row.media_id, cached), cached.wrapped_key, row.media_id, cached.length
            )
        return await self._generate(row, w, h, m, animated)

    def _thumb_path(self, media_id: str, t: ThumbRow) -> Path:
        tag = hashlib.sha256(t.wrapped_key).hexdigest()[:16]
        return self.blobs.thumb_path(media_id, t.width, t.height, t.method, t.animated).with_suffix("." + tag)

    async def _generate(self, row: MediaRow, w: int, h: int, m: str, animated: bool) -> tuple[str, bytes]:
        assert row.wrapped_key is not None
        source = await self.blobs.read_all(
            self.blobs.media_path(row.media_id), row.wrapped_key, row.media_id, row.length or 0
        )
        try:
            thumb = await self.thumbnailer.make(source, w, h, m, animated)
        except ThumbnailFailed as exc:
            if exc.permanent:
                await self.store.set_thumb_error(row.media_id, f"{exc.status} {exc.errcode} {exc.error}")
            raise
        if (w, h, m) in rules.STANDARD_THUMBNAILS:
            await self._keep(row.media_id, ThumbRow(w, h, m, animated, thumb.content_type, len(thumb.data), b""),
                             thumb.data)  # fmt: skip
        return thumb.content_type, thumb.data

    async def _keep(self, media_id: str, t: ThumbRow, data: bytes) -> None:
        """Store a standard-size thumbnail for the next request. The store is a cache: when the disk is
        full the thumbnail is still served, only not kept (and nothing half-written stays behind)."""
        try:
            writer = await self.blobs.write_bytes(data)
        except OSError as exc:
            log.warning("media.thumbnail_not_kept", media_id=media_id, error=str(exc))
            return
        t = replace(t, wrapped_key=self.blobs.wrap(writer.key, media_id))
        try:
            await writer.commit(self._thumb_path(media_id, t))
        except OSError as exc:
            await writer.abort()
            log.warning("media.thumbnail_not_kept", media_id=media_id, error=str(exc))
            return
        await self.store.put_thumbnail(media_id, t, now_ms())

    # -- admin ----------------------------------------------------------------------------------
    async def row(self, server_name: str, media_id: str) -> MediaRow:
        row = await self._local_row(server_name, media_id)
        if row is None:
            raise not_found()
        return row

    async def user_media(self, user_id: str, start: int, limit: int) -> MediaPage:
        """A user's uploads, newest first, one page."""
        rows, total = await self.store.list_user(user_id, start, limit)
        return MediaPage(rows, total)

    async def _record(self, action: str, actor: Actor, target: str | None, details: JsonDict | None = None) -> None:
        if self.audit is not None:
            await self.audit.record(f"admin.{action}", actor.user_id, target, actor.ip, actor.device, details)

    async def remove(self, server_name: str, media_id: str, actor: Actor) -> str:
        """An administrator deletes one local media (404 if there is none); returns its ID."""
        row = await self.row(server_name, media_id)
        await self.delete(row.media_id)
        await self._record("media_delete", actor, self.mxc(row.media_id), {"uploader": row.user_id})
        return row.media_id

    async def quarantine(self, server_name: str, media_id: str, actor: Actor, *, undo: bool = False) -> None:
        """An administrator stops serving a file (it stays stored for investigation), or lifts that."""
        by = None if undo else actor.user_id
        if await self._local_row(server_name, media_id) is None or not await self.store.set_quarantine(media_id, by):
            raise not_found()
        log.warning("media.quarantine", media_id=media_id, by=by)
        await self._record("media_unquarantine" if undo else "media_quarantine", actor, self.mxc(media_id))

    async def purge_as(self, actor: Actor, before_ts: int | None, user_id: str | None = None) -> list[str]:
        """`purge` on an administrator's order (`before_ts` None: all, of `user_id`), recorded with what it
        deleted (how many, up to when, whose)."""
        deleted = await self.purge(2**62 if before_ts is None else before_ts, user_id)
        details: JsonDict = {"count": len(deleted)}
        if before_ts is not None:
            details["before_ts"] = before_ts
        await self._record("media_purge", actor, user_id, details)
        return deleted

    async def delete(self, media_id: str) -> bool:
        rules.check_media_id(media_id)
        gone = await self.store.delete(media_id)
        await self.blobs.remove_media(media_id)
        if gone:
            log.warning("media.deleted", media_id=media_id)
        return gone

    async def purge(self, before_ts: int, user_id: str | None = None) -> list[str]:
        """Delete media created before `before_ts` (and expired unused IDs); returns their IDs."""
        deleted: list[str] = []
        while True:
            batch = await self.store.ids_older_than(before_ts, now_ms(), 500, user_id)
            if not batch:
                return deleted
            for media_id in batch:
                await self.delete(media_id)
            deleted += batch
