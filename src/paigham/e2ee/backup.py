"""Server-side key backup: versions with their `auth_data`, and encrypted room keys (opaque here)."""

from __future__ import annotations

from typing import Any

from paigham.domain.canonical_json import encode
from paigham.domain.e2e_keys import MAX_ID_LEN, BackupKey, parse_backup_key
from paigham.errors import Codes, MatrixError
from paigham.storage.e2ee_backup import BackupStore, BackupVersion, RoomKeys, no_backup

MAX_AUTH_DATA_BYTES = 16 * 1024
MAX_KEYS_PER_REQUEST = 10_000


def parse_version(raw: str | None) -> int:
    """Backup versions are decimal numbers here; anything else names no backup (404)."""
    if raw is None or raw == "":
        raise MatrixError(400, Codes.MISSING_PARAM, "The version parameter is required")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise MatrixError(404, Codes.NOT_FOUND, f"Unknown backup version {raw[:40]!r}")
    return int(raw)


def parse_version_body(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
    if not isinstance(algorithm, str) or not algorithm or len(algorithm) > MAX_ID_LEN:
        raise MatrixError(400, Codes.BAD_JSON, "algorithm must be a non-empty string")
    if not isinstance(auth_data, dict):
        raise MatrixError(400, Codes.BAD_JSON, "auth_data must be an object")
    if len(encode(auth_data)) > MAX_AUTH_DATA_BYTES:
        raise MatrixError(400, Codes.TOO_LARGE, f"auth_data is larger than {MAX_AUTH_DATA_BYTES} bytes")
    return algorithm, auth_data


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid {what}")
    return value


def parse_sessions(raw: Any, room_id: str) -> dict[str, BackupKey]:
    if not isinstance(raw, dict) or not isinstance(raw.get("sessions"), dict):
        raise MatrixError(400, Codes.BAD_JSON, f"Room {room_id[:100]} needs a sessions object")
    return {_check_id(s, "session ID"): parse_backup_key(k, f"session {s[:100]}") for s, k in raw["sessions"].items()}


def parse_rooms(body: dict[str, Any]) -> RoomKeys:
    rooms = body.get("rooms")
    if not isinstance(rooms, dict):
        raise MatrixError(400, Codes.BAD_JSON, "rooms must be an object")
    out = {_check_id(r, "room ID"): parse_sessions(v, r) for r, v in rooms.items()}
    if sum(len(s) for s in out.values()) > MAX_KEYS_PER_REQUEST:
        raise MatrixError(400, Codes.TOO_LARGE, f"At most {MAX_KEYS_PER_REQUEST} keys per request")
    return out


class BackupService:
    def __init__(self, store: BackupStore) -> None:
        self.store = store

    async def create(self, user_id: str, body: dict[str, Any]) -> str:
        algorithm, auth_data = parse_version_body(body)
        return str(await self.store.create(user_id, algorithm, auth_data))

    async def get(self, user_id: str, version: str | None) -> BackupVersion:
        number = parse_version(version) if version is not None else None
        found = await self.store.get(user_id, number)
        if found is None:
            raise no_backup(number)
        return found

    async def update(self, user_id: str, version: str, body: dict[str, Any]) -> None:
        number = parse_version(version)
        algorithm, auth_data = parse_version_body(body)
        if "version" in body and body["version"] != version:
            raise MatrixError(400, Codes.INVALID_PARAM, "The version in the body does not match the path")
        await self.store.update(user_id, number, algorithm, auth_data)

    async def delete(self, user_id: str, version: str) -> None:
        if not await self.store.delete(user_id, parse_version(version)):
            raise no_backup(parse_version(version))

    async def put_keys(self, user_id: str, version: str | None, keys: RoomKeys) -> dict[str, Any]:
        result = await self.store.put_keys(user_id, parse_version(version), keys)
        return {"count": result.count, "etag": str(result.etag)}

    async def get_keys(
        self, user_id: str, version: str | None, room_id: str | None, session_id: str | None
    ) -> RoomKeys:
        return await self.store.get_keys(user_id, parse_version(version), room_id, session_id)

    async def delete_keys(
        self, user_id: str, version: str | None, room_id: str | None, session_id: str | None
    ) -> dict[str, Any]:
        result = await self.store.delete_keys(user_id, parse_version(version), room_id, session_id)
        return {"count": result.count, "etag": str(result.etag)}
