"""Rows of the content repository: uploads (pending or ready), thumbnails, scanner detections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update

from paigham.storage.database import Database
from paigham.storage.media_schema import media, media_detections, media_thumbnails

_ACCESS_RESOLUTION_MS = 3600_000


@dataclass(frozen=True, slots=True)
class MediaRow:
    media_id: str
    user_id: str
    state: str
    content_type: str | None
    served_type: str | None
    upload_name: str | None
    length: int | None
    sha256: str | None
    wrapped_key: bytes | None
    created_ts: int
    expires_ts: int | None
    last_access_ts: int | None
    quarantined_by: str | None
    thumb_error: str | None


@dataclass(frozen=True, slots=True)
class ThumbRow:
    width: int
    height: int
    method: str
    animated: bool
    content_type: str
    length: int
    wrapped_key: bytes


@dataclass(frozen=True, slots=True)
class Content:
    """What an upload stored, written to its row when it becomes ready."""

    content_type: str
    served_type: str
    upload_name: str | None
    length: int
    sha256: str
    wrapped_key: bytes


def _row(r: Any) -> MediaRow:
    return MediaRow(
        r.media_id,
        r.user_id,
        r.state,
        r.content_type,
        r.served_type,
        r.upload_name,
        r.length,
        r.sha256,
        r.wrapped_key and bytes(r.wrapped_key),
        r.created_ts,
        r.expires_ts,
        r.last_access_ts,
        r.quarantined_by,
        r.thumb_error,
    )


class MediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, media_id: str) -> MediaRow | None:
        async with self.db.read() as conn:
            r = (await conn.execute(select(media).where(media.c.media_id == media_id))).first()
        return _row(r) if r else None

    async def create_pending(self, media_id: str, user_id: str, now: int, expires: int, limit: int) -> bool:
        """Reserve an ID for a later upload; False when the user already has `limit` pending."""
        async with self.db.write() as conn:
            await conn.execute(
                delete(media).where(
                    and_(media.c.user_id == user_id, media.c.state == "pending", media.c.expires_ts < now)
                )
            )
            pending = (
                await conn.execute(
                    select(func.count())
                    .select_from(media)
                    .where(and_(media.c.user_id == user_id, media.c.state.in_(("pending", "uploading"))))
                )
            ).scalar_one()
            if pending >= limit:
                return False
            await conn.execute(
                insert(media).values(
                    media_id=media_id, user_id=user_id, state="pending", created_ts=now, expires_ts=expires
                )
            )
        return True

    async def claim(self, media_id: str, now: int) -> bool:
        """pending → uploading, atomically (so two PUTs of one ID cannot both write)."""
        async with self.db.write() as conn:
            res = await conn.execute(
                update(media)
                .where(
                    and_(
                        media.c.media_id == media_id,
                        media.c.state == "pending",
                        media.c.expires_ts >= now,
                    )
                )
                .values(state="uploading")
            )
        return bool(res.rowcount)

    async def unclaim(self, media_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(media)
                .where(and_(media.c.media_id == media_id, media.c.state == "uploading"))
                .values(state="pending")
            )

    async def finish(
        self, media_id: str, user_id: str, content: Content, now: int, quota: int, *, created: bool
    ) -> bool:
        """Make an upload ready (insert it, or complete a claimed one); False if over the quota."""
        async with self.db.write() as conn:
            if quota > 0:
                used = (
                    await conn.execute(
                        select(func.coalesce(func.sum(media.c.length), 0)).where(
                            and_(media.c.user_id == user_id, media.c.state == "ready")
                        )
                    )
                ).scalar_one()
                if int(used) + content.length > quota:
                    return False
            values = dict(
                state="ready",
                content_type=content.content_type,
                served_type=content.served_type,
                upload_name=content.upload_name,
                length=content.length,
                sha256=content.sha256,
                wrapped_key=content.wrapped_key,
                expires_ts=None,
            )
            if created:
                await conn.execute(update(media).where(media.c.media_id == media_id).values(**values))
            else:
                await conn.execute(insert(media).values(media_id=media_id, user_id=user_id, created_ts=now, **values))
        return True

    async def used_bytes(self, user_id: str) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.coalesce(func.sum(media.c.length), 0)).where(
                            and_(media.c.user_id == user_id, media.c.state == "ready")
                        )
                    )
                ).scalar_one()
            )

    async def touch(self, row: MediaRow, now: int) -> None:
        if row.last_access_ts is not None and now - row.last_access_ts < _ACCESS_RESOLUTION_MS:
            return
        async with self.db.write() as conn:
            await conn.execute(update(media).where(media.c.media_id == row.media_id).values(last_access_ts=now))

    async def set_thumb_error(self, media_id: str, error: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(media).where(media.c.media_id == media_id).values(thumb_error=error))

    async def set_quarantine(self, media_id: str, by: str | None) -> bool:
        async with self.db.write() as conn:
            res = await conn.execute(update(media).where(media.c.media_id == media_id).values(quarantined_by=by))
        return bool(res.rowcount)

    async def delete(self, media_id: str) -> bool:
        async with self.db.write() as conn:
            await conn.execute(delete(media_thumbnails).where(media_thumbnails.c.media_id == media_id))
            res = await conn.execute(delete(media).where(media.c.media_id == media_id))
        return bool(res.rowcount)

    async def list_user(self, user_id: str, offset: int, limit: int) -> tuple[list[MediaRow], int]:
        cond = media.c.user_id == user_id
        async with self.db.read() as conn:
            total = (await conn.execute(select(func.count()).select_from(media).where(cond))).scalar_one()
            rows = (
                await conn.execute(
                    select(media)
                    .where(cond)
                    .order_by(media.c.created_ts.desc(), media.c.media_id)
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return [_row(r) for r in rows], int(total)

    async def ids_older_than(self, before_ts: int, now: int, limit: int, user_id: str | None = None) -> list[str]:
        """Media created before `before_ts`, and IDs that expired unused (or whose upload died midway)."""
        cond = or_(
            media.c.created_ts < before_ts, and_(media.c.state.in_(("pending", "uploading")), media.c.expires_ts < now)
        )
        if user_id is not None:
            cond = and_(cond, media.c.user_id == user_id)
        async with self.db.read() as conn:
            rows = (
                await conn.execute(select(media.c.media_id).where(cond).order_by(media.c.created_ts).limit(limit))
            ).all()
        return [r.media_id for r in rows]

    # -- thumbnails -----------------------------------------------------------------------------
    async def get_thumbnail(
        self, media_id: str, width: int, height: int, method: str, animated: bool
    ) -> ThumbRow | None:
        t = media_thumbnails.c
        async with self.db.read() as conn:
            r = (
                await conn.execute(
                    select(media_thumbnails).where(
                        and_(
                            t.media_id == media_id,
                            t.width == width,
                            t.height == height,
                            t.method == method,
                            t.animated == animated,
                        )
                    )
                )
            ).first()
        return (
            ThumbRow(r.width, r.height, r.method, bool(r.animated), r.content_type, r.length, bytes(r.wrapped_key))
            if r
            else None
        )

    async def put_thumbnail(self, media_id: str, thumb: ThumbRow, now: int) -> None:
        values = dict(
            media_id=media_id,
            width=thumb.width,
            height=thumb.height,
            method=thumb.method,
            animated=thumb.animated,
            content_type=thumb.content_type,
            length=thumb.length,
            wrapped_key=thumb.wrapped_key,
            created_ts=now,
        )
        async with self.db.write() as conn:
            await conn.execute(
                self.db.upsert(media_thumbnails, values, ["media_id", "width", "height", "method", "animated"])
            )

    # -- scanner --------------------------------------------------------------------------------
    async def record_detection(
        self,
        *,
        ts: int,
        user_id: str,
        media_id: str,
        upload_name: str | None,
        content_type: str,
        length: int,
        sha256: str,
        signature: str,
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(media_detections).values(
                    ts=ts,
                    user_id=user_id,
                    media_id=media_id,
                    upload_name=upload_name,
                    content_type=content_type,
                    length=length,
                    sha256=sha256,
                    signature=signature,
                )
            )

    async def detections(self, limit: int, user_id: str | None = None) -> list[dict[str, Any]]:
        q = select(media_detections).order_by(media_detections.c.id.desc()).limit(limit)
        if user_id is not None:
            q = q.where(media_detections.c.user_id == user_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [dict(r) for r in rows]
