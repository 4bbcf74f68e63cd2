"""Device keys, one-time and fallback keys, cross-signing keys and their signatures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.canonical_json import encode_str
from paigham.domain.e2e_keys import CrossSigningKey, UploadedKey, unsigned_body
from paigham.errors import Codes, MatrixError
from paigham.storage import e2ee_schema as t
from paigham.storage.database import Database
from paigham.storage.e2ee_lists import record_change
from paigham.storage.schema import devices

_decode = msgspec.json.decode
dk, otk, fbk, xsk, sigs = (
    t.e2e_device_keys,
    t.e2e_one_time_keys,
    t.e2e_fallback_keys,
    t.e2e_cross_signing_keys,
    t.e2e_signatures,
)
CLAIM_RETRIES = 8


@dataclass(frozen=True, slots=True)
class Signature:
    user_id: str  # whose key is signed
    key_id: str  # a device ID or a master public key
    signer_id: str
    signer_key_id: str
    signature: str


@dataclass(frozen=True, slots=True)
class UploadResult:
    counts: dict[str, int]
    changed_at: int | None  # the position of the device-list change, when the device keys changed


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- device keys ------------------------------------------------------------------------------
    async def device_keys_of(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        q = select(dk.c.key_json).where(dk.c.user_id == user_id, dk.c.device_id == device_id)
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return _decode(row.key_json) if row else None

    async def query_devices(self, user_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """user → device → device keys with `unsigned.device_display_name`, for existing devices."""
        if not user_ids:
            return {}
        q = (
            select(dk.c.user_id, dk.c.device_id, dk.c.key_json, devices.c.display_name)
            .join(devices, and_(devices.c.user_id == dk.c.user_id, devices.c.device_id == dk.c.device_id))
            .where(dk.c.user_id.in_(sorted(set(user_ids))))
        )
        out: dict[str, dict[str, dict[str, Any]]] = {}
        async with self.db.read() as conn:
            for r in (await conn.execute(q)).all():
                keys = _decode(r.key_json)
                if r.display_name is not None:
                    keys["unsigned"] = {"device_display_name": r.display_name}
                out.setdefault(r.user_id, {})[r.device_id] = keys
        return out

    async def upload(
        self,
        user_id: str,
        device_id: str,
        device_keys: dict[str, Any] | None,
        ed25519: str,
        one_time: list[UploadedKey],
        fallback: list[UploadedKey],
    ) -> UploadResult:
        """Store everything of one /keys/upload in one transaction: all of it or nothing."""
        async with self.db.write() as conn:
            if one_time:
                await self._add_one_time_keys(conn, user_id, device_id, one_time)
            for key in fallback:
                await self._put_fallback(conn, user_id, device_id, key)
            changed_at = None
            if device_keys is not None and await self._device_keys_differ(conn, user_id, device_id, device_keys):
                changed_at = await record_change(self.db, conn, [user_id])
                values = {
                    "user_id": user_id,
                    "device_id": device_id,
                    "ed25519": ed25519,
                    "key_json": encode_str(device_keys),
                    "stream": changed_at,
                }
                await conn.execute(self.db.upsert(dk, values, ["user_id", "device_id"]))
            counts = await self._counts(conn, user_id, device_id)
        return UploadResult(counts, changed_at)

    @staticmethod
    async def _device_keys_differ(conn: AsyncConnection, user_id: str, device_id: str, keys: dict[str, Any]) -> bool:
        q = select(dk.c.key_json).where(dk.c.user_id == user_id, dk.c.device_id == device_id)
        row = (await conn.execute(q)).first()
        return row is None or _decode(row.key_json) != keys

    async def _add_one_time_keys(
        self, conn: AsyncConnection, user_id: str, device_id: str, keys: list[UploadedKey]
    ) -> None:
        wanted = {(k.algorithm, k.key_id): k for k in keys}
        q = select(otk.c.algorithm, otk.c.key_id, otk.c.key_json).where(
            otk.c.user_id == user_id,
            otk.c.device_id == device_id,
            otk.c.key_id.in_(sorted({k.key_id for k in keys})),
        )
        for r in (await conn.execute(q)).all():
            key = wanted.pop((r.algorithm, r.key_id), None)
            if key is None:
                continue
            if _decode(r.key_json) != key.value:
                raise MatrixError(
                    400, Codes.INVALID_PARAM, f"One-time key {key.full_id} already exists with a different value"[:300]
                )
        if not wanted:
            return
        top = (
            await conn.execute(
                select(func.max(otk.c.seq)).where(otk.c.user_id == user_id, otk.c.device_id == device_id)
            )
        ).scalar()
        seq = int(top or 0) + 1
        for k in wanted.values():  # a concurrent retry of the same upload may have stored some already
            values = {
                "user_id": user_id,
                "device_id": device_id,
                "algorithm": k.algorithm,
                "key_id": k.key_id,
                "key_json": encode_str(k.value),
                "seq": seq,
            }
            await conn.execute(self.db.insert_ignore(otk, values, ["user_id", "device_id", "algorithm", "key_id"]))

    async def _put_fallback(self, conn: AsyncConnection, user_id: str, device_id: str, key: UploadedKey) -> None:
        where = and_(fbk.c.user_id == user_id, fbk.c.device_id == device_id, fbk.c.algorithm == key.algorithm)
        old = (await conn.execute(select(fbk.c.key_id, fbk.c.key_json).where(where))).first()
        if old is not None and old.key_id == key.key_id and _decode(old.key_json) == key.value:
            return  # the same key again: keep whether it was used
        values = {
            "user_id": user_id,
            "device_id": device_id,
            "algorithm": key.algorithm,
            "key_id": key.key_id,
            "key_json": encode_str(key.value),
            "used": False,
        }
        await conn.execute(self.db.upsert(fbk, values, ["user_id", "device_id", "algorithm"]))

    @staticmethod
    async def _counts(conn: AsyncConnection, user_id: str, device_id: str) -> dict[str, int]:
        q = (
            select(otk.c.algorithm, func.count().label("n"))
            .where(otk.c.user_id == user_id, otk.c.device_id == device_id)
            .group_by(otk.c.algorithm)
        )
        return {r.algorithm: int(r.n) for r in (await conn.execute(q)).all()}

    # -- claiming ---------------------------------------------------------------------------------
    async def claim(self, wanted: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], tuple[str, Any]]:
        """(user, device, algorithm) → the oldest one-time key, removed so nobody else gets it, or the
        device's fallback key (marked used) when none is left."""
        out: dict[tuple[str, str], tuple[str, Any]] = {}
        async with self.db.write() as conn:
            for user_id, device_id, algorithm in sorted(set(wanted)):  # one lock order: no deadlocks
                got = await self._take_one_time_key(conn, user_id, device_id, algorithm)
                if got is None:
                    got = await self._use_fallback(conn, user_id, device_id, algorithm)
                if got is not None:
                    out[(user_id, device_id)] = got
        return out

    @staticmethod
    async def _take_one_time_key(
        conn: AsyncConnection, user_id: str, device_id: str, algorithm: str
    ) -> tuple[str, Any] | None:
        where = and_(otk.c.user_id == user_id, otk.c.device_id == device_id, otk.c.algorithm == algorithm)
        for _ in range(CLAIM_RETRIES):
            # PostgreSQL: concurrent claimers skip each other's locked rows; SQLite has one writer.
            pick = (
                select(otk.c.key_id)
                .where(where)
                .order_by(otk.c.seq, otk.c.key_id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            row = (await conn.execute(pick)).first()
            if row is None:
                return None
            taken = (
                await conn.execute(delete(otk).where(where, otk.c.key_id == row.key_id).returning(otk.c.key_json))
            ).first()
            if taken is not None:
                return f"{algorithm}:{row.key_id}", _decode(taken.key_json)
        return None

    @staticmethod
    async def _use_fallback(
        conn: AsyncConnection, user_id: str, device_id: str, algorithm: str
    ) -> tuple[str, Any] | None:
        where = and_(fbk.c.user_id == user_id, fbk.c.device_id == device_id, fbk.c.algorithm == algorithm)
        row = (await conn.execute(select(fbk.c.key_id, fbk.c.key_json, fbk.c.used).where(where))).first()
        if row is None:
            return None
        if not row.used:
            await conn.execute(update(fbk).where(where).values(used=True))
        return f"{algorithm}:{row.key_id}", _decode(row.key_json)

    # -- removal ----------------------------------------------------------------------------------
    async def delete_devices(self, user_id: str, device_ids: Sequence[str]) -> int:
        """Drop the devices' keys, pending to-device messages and signatures; record the change."""
        ids = sorted(set(device_ids))
        async with self.db.write() as conn:
            for table in (dk, otk, fbk, t.e2e_device_inbox):
                await conn.execute(delete(table).where(table.c.user_id == user_id, table.c.device_id.in_(ids)))
            await conn.execute(delete(sigs).where(sigs.c.user_id == user_id, sigs.c.key_id.in_(ids)))
            return await record_change(self.db, conn, [user_id])

    async def delete_cross_signing(self, user_id: str) -> int:
        async with self.db.write() as conn:
            await conn.execute(delete(xsk).where(xsk.c.user_id == user_id))
            await conn.execute(delete(sigs).where(sigs.c.user_id == user_id))
            await conn.execute(delete(sigs).where(sigs.c.signer_id == user_id))
            return await record_change(self.db, conn, [user_id])

    # -- cross-signing ----------------------------------------------------------------------------
    async def cross_signing_keys(
        self, user_ids: Sequence[str], types: Sequence[str]
    ) -> dict[str, dict[str, CrossSigningKey]]:
        if not user_ids:
            return {}
        q = select(xsk).where(xsk.c.user_id.in_(sorted(set(user_ids))), xsk.c.key_type.in_(list(types)))
        out: dict[str, dict[str, CrossSigningKey]] = {}
        async with self.db.read() as conn:
            for r in (await conn.execute(q)).all():
                out.setdefault(r.user_id, {})[r.key_type] = CrossSigningKey(
                    r.key_type, r.public_key, _decode(r.key_json)
                )
        return out

    async def set_cross_signing_keys(self, user_id: str, keys: list[CrossSigningKey]) -> int:
        """Replace keys; signatures made with or on a replaced key go with it."""
        async with self.db.write() as conn:
            for key in keys:
                where = and_(xsk.c.user_id == user_id, xsk.c.key_type == key.key_type)
                old = (await conn.execute(select(xsk.c.public_key).where(where))).first()
                if old is not None and old.public_key != key.public_key:
                    await conn.execute(
                        delete(sigs).where(
                            sigs.c.signer_id == user_id, sigs.c.signer_key_id == f"ed25519:{old.public_key}"
                        )
                    )
                    await conn.execute(delete(sigs).where(sigs.c.user_id == user_id, sigs.c.key_id == old.public_key))
            pos = await record_change(self.db, conn, [user_id])
            for key in keys:
                values = {
                    "user_id": user_id,
                    "key_type": key.key_type,
                    "public_key": key.public_key,
                    "key_json": encode_str(key.obj),
                    "stream": pos,
                }
                await conn.execute(self.db.upsert(xsk, values, ["user_id", "key_type"]))
        return pos

    async def add_signatures(self, new: list[Signature], changed_users: Iterable[str]) -> int:
        async with self.db.write() as conn:
            for s in new:
                values = {
                    "user_id": s.user_id,
                    "key_id": s.key_id,
                    "signer_id": s.signer_id,
                    "signer_key_id": s.signer_key_id,
                    "signature": s.signature,
                }
                await conn.execute(self.db.upsert(sigs, values, ["user_id", "key_id", "signer_id", "signer_key_id"]))
            return await record_change(self.db, conn, changed_users)

    async def signatures_on(self, user_ids: Sequence[str]) -> list[Signature]:
        if not user_ids:
            return []
        q = select(sigs).where(sigs.c.user_id.in_(sorted(set(user_ids))))
        async with self.db.read() as conn:
            return [
                Signature(r.user_id, r.key_id, r.signer_id, r.signer_key_id, r.signature)
                for r in (await conn.execute(q)).all()
            ]


def same_key_object(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two key objects are the same key, signatures and unsigned data aside."""
    return unsigned_body(a) == unsigned_body(b)
