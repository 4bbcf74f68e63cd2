"""Server-side key backups: versions and the (opaque, client-encrypted) room keys in them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.canonical_json import encode_str
from paigham.domain.e2e_keys import BackupKey, backup_key_wins
from paigham.errors import Codes, MatrixError
from paigham.storage.database import Database
from paigham.storage.e2ee_schema import e2e_backup_keys as bk
from paigham.storage.e2ee_schema import e2e_backup_versions as bv

_decode = msgspec.json.decode
RoomKeys = dict[str, dict[str, BackupKey]]  # room → session → key


@dataclass(frozen=True, slots=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: dict[str, Any]
    etag: int
    count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": str(self.version),
            "algorithm": self.algorithm,
            "auth_data": self.auth_data,
            "etag": str(self.etag),
            "count": self.count,
        }


def no_backup(version: int | None = None) -> MatrixError:
    if version is None:
        return MatrixError(404, Codes.NOT_FOUND, "No current backup version")
    return MatrixError(404, Codes.NOT_FOUND, f"Unknown backup version {version}")


class BackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- versions ---------------------------------------------------------------------------------
    async def create(self, user_id: str, algorithm: str, auth_data: dict[str, Any]) -> int:
        async with self.db.write() as conn:
            await self._lock(conn, user_id)
            top = (await conn.execute(select(func.max(bv.c.version)).where(bv.c.user_id == user_id))).scalar()
            version = int(top or 0) + 1
            await conn.execute(
                bv.insert().values(
                    user_id=user_id,
                    version=version,
                    algorithm=algorithm,
                    auth_data=encode_str(auth_data),
                    etag=0,
                    deleted=False,
                )
            )
        return version

    async def get(self, user_id: str, version: int | None) -> BackupVersion | None:
        """A live version (None: the current one, i.e. the newest not deleted)."""
        async with self.db.read() as conn:
            return await self._get(conn, user_id, version)

    @staticmethod
    async def _get(conn: AsyncConnection, user_id: str, version: int | None) -> BackupVersion | None:
        q = select(bv).where(bv.c.user_id == user_id, bv.c.deleted.is_(False))
        q = q.where(bv.c.version == version) if version is not None else q.order_by(bv.c.version.desc()).limit(1)
        row = (await conn.execute(q)).first()
        if row is None:
            return None
        count = (
            await conn.execute(
                select(func.count()).select_from(bk).where(bk.c.user_id == user_id, bk.c.version == row.version)
            )
        ).scalar_one()
        return BackupVersion(row.version, row.algorithm, _decode(row.auth_data), row.etag, int(count))

    async def update(self, user_id: str, version: int, algorithm: str, auth_data: dict[str, Any]) -> None:
        async with self.db.write() as conn:
            current = await self._get(conn, user_id, version)
            if current is None:
                raise no_backup(version)
            if current.algorithm != algorithm:
                raise MatrixError(400, Codes.INVALID_PARAM, "algorithm cannot be changed; create a new backup")
            await conn.execute(
                update(bv)
                .where(bv.c.user_id == user_id, bv.c.version == version)
                .values(auth_data=encode_str(auth_data))
            )

    async def delete(self, user_id: str, version: int) -> bool:
        """Delete a version and its keys; False if it never existed (deleting twice succeeds)."""
        async with self.db.write() as conn:
            row = (
                await conn.execute(select(bv.c.version).where(bv.c.user_id == user_id, bv.c.version == version))
            ).first()
            if row is None:
                return False
            await conn.execute(delete(bk).where(bk.c.user_id == user_id, bk.c.version == version))
            await conn.execute(update(bv).where(bv.c.user_id == user_id, bv.c.version == version).values(deleted=True))
        return True

    async def delete_user(self, user_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(bk).where(bk.c.user_id == user_id))
            await conn.execute(update(bv).where(bv.c.user_id == user_id).values(deleted=True, auth_data="{}"))

    # -- keys -------------------------------------------------------------------------------------
    async def put_keys(self, user_id: str, version: int, keys: RoomKeys) -> BackupVersion:
        """Merge keys into the current version (each session keeps the better key)."""
        async with self.db.write() as conn:
            await self._lock(conn, user_id)
            current = await self._get(conn, user_id, None)
            if current is None:
                raise no_backup()
            if current.version != version:
                raise MatrixError(
                    403,
                    Codes.WRONG_ROOM_KEYS_VERSION,
                    "Keys can only be added to the current backup",
                    current_version=str(current.version),
                )
            old = await self._load(conn, user_id, version, list(keys), None)
            changed = 0
            for room_id, sessions in keys.items():
                for session_id, key in sessions.items():
                    prev = old.get(room_id, {}).get(session_id)
                    if prev is None or backup_key_wins(key, prev):
                        await self._write_key(conn, user_id, version, room_id, session_id, key, prev is None)
                        changed += 1
            if changed:
                await self._bump(conn, user_id, version)
            result = await self._get(conn, user_id, version)
        assert result is not None
        return result

    @staticmethod
    async def _write_key(
        conn: AsyncConnection, user_id: str, version: int, room_id: str, session_id: str, key: BackupKey, new: bool
    ) -> None:
        values = {
            "first_message_index": key.first_message_index,
            "forwarded_count": key.forwarded_count,
            "is_verified": key.is_verified,
            "session_data": encode_str(key.session_data),
        }
        if new:
            await conn.execute(
                bk.insert().values(user_id=user_id, version=version, room_id=room_id, session_id=session_id, **values)
            )
        else:
            await conn.execute(
                update(bk)
                .where(
                    bk.c.user_id == user_id,
                    bk.c.version == version,
                    bk.c.room_id == room_id,
                    bk.c.session_id == session_id,
                )
                .values(**values)
            )

    async def _lock(self, conn: AsyncConnection, user_id: str) -> None:
        """Serialise writers of one user's backups (an advisory lock on PostgreSQL; SQLite has one writer)."""
        await self.db.lock(conn, f"e2e_backup:{user_id}")

    @staticmethod
    async def _bump(conn: AsyncConnection, user_id: str, version: int) -> None:
        await conn.execute(
            update(bv).where(bv.c.user_id == user_id, bv.c.version == version).values(etag=bv.c.etag + 1)
        )

    @staticmethod
    async def _load(
        conn: AsyncConnection, user_id: str, version: int, rooms: list[str] | None, session_id: str | None
    ) -> RoomKeys:
        q = select(bk).where(bk.c.user_id == user_id, bk.c.version == version)
        if rooms is not None:
            q = q.where(bk.c.room_id.in_(rooms))
        if session_id is not None:
            q = q.where(bk.c.session_id == session_id)
        out: RoomKeys = {}
        for r in (await conn.execute(q)).all():
            out.setdefault(r.room_id, {})[r.session_id] = BackupKey(
                int(r.first_message_index), int(r.forwarded_count), bool(r.is_verified), _decode(r.session_data)
            )
        return out

    async def get_keys(self, user_id: str, version: int, room_id: str | None, session_id: str | None) -> RoomKeys:
        async with self.db.read() as conn:
            if await self._get(conn, user_id, version) is None:
                raise no_backup(version)
            return await self._load(conn, user_id, version, [room_id] if room_id is not None else None, session_id)

    async def delete_keys(
        self, user_id: str, version: int, room_id: str | None, session_id: str | None
    ) -> BackupVersion:
        async with self.db.write() as conn:
            await self._lock(conn, user_id)
            if await self._get(conn, user_id, version) is None:
                raise no_backup(version)
            where = [bk.c.user_id == user_id, bk.c.version == version]
            if room_id is not None:
                where.append(bk.c.room_id == room_id)
            if session_id is not None:
                where.append(bk.c.session_id == session_id)
            if (await conn.execute(delete(bk).where(and_(*where)))).rowcount:
                await self._bump(conn, user_id, version)
            result = await self._get(conn, user_id, version)
        assert result is not None
        return result
