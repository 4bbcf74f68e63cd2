"""The key server: device keys, one-time and fallback keys (upload, query, claim, counts in /sync)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paigham.domain.e2e_keys import (
    CROSS_SIGNING_TYPES,
    UploadedKey,
    check_device_keys,
    ed25519_key,
    parse_key_map,
)
from paigham.domain.signing import VerifyKey
from paigham.e2ee.device_lists import DeviceListService
from paigham.errors import Codes, MatrixError
from paigham.ids import is_valid_user_id
from paigham.requester import Requester
from paigham.storage.e2ee_keys import KeyStore, Signature
from paigham.sync.model import SyncRequest, SyncResponse

MAX_QUERY_USERS = 1000
MAX_QUERY_DEVICES = 10_000
OLM_OTK = "signed_curve25519"
NOT_FEDERATING = {"status": 503, "message": "This server does not federate"}


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def check_user_map(raw: Any, what: str, max_users: int = MAX_QUERY_USERS) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise MatrixError(400, Codes.BAD_JSON, f"{what} must be an object keyed by user ID")
    if len(raw) > max_users:
        raise MatrixError(400, Codes.TOO_LARGE, f"{what}: at most {max_users} users per request")
    for user_id in raw:
        if not is_valid_user_id(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM, f"{what}: invalid user ID {user_id!r}"[:300])
    return raw


class KeyService:
    def __init__(self, server_name: str, keys: KeyStore, lists: DeviceListService) -> None:
        self.server_name = server_name
        self.keys = keys
        self.lists = lists

    def is_local(self, user_id: str) -> bool:
        return _server_of(user_id) == self.server_name

    # -- upload -----------------------------------------------------------------------------------
    async def upload(self, rq: Requester, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /keys/upload: validate everything first, then store it in one transaction."""
        device_keys = body.get("device_keys")
        ed25519 = ""
        if device_keys is not None:
            ed25519 = check_device_keys(device_keys, rq.user_id, rq.device_id)
            device_keys = {k: v for k, v in device_keys.items() if k != "unsigned"}
        signer = await self._signer(rq, ed25519)
        one_time = parse_key_map(body.get("one_time_keys"), "one_time_keys", rq.user_id, signer)
        fallback = parse_key_map(body.get("fallback_keys"), "fallback_keys", rq.user_id, signer)
        _one_per_algorithm(fallback)
        result = await self.keys.upload(rq.user_id, rq.device_id, device_keys, ed25519, one_time, fallback)
        if result.changed_at is not None:
            await self.lists.notify(result.changed_at, rq.user_id)
        return {"one_time_key_counts": {OLM_OTK: 0, **result.counts}}

    async def _signer(self, rq: Requester, ed25519: str) -> VerifyKey | None:
        """The device's ed25519 key, which must have signed its signed one-time/fallback keys."""
        key_id = f"ed25519:{rq.device_id}"
        if not ed25519:
            stored = await self.keys.device_keys_of(rq.user_id, rq.device_id)
            ed25519 = str(stored["keys"][key_id]) if stored else ""
        return ed25519_key(key_id, ed25519) if ed25519 else None

    # -- query ------------------------------------------------------------------------------------
    async def query(self, rq: Requester, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /keys/query: device keys and cross-signing keys of local users, with signatures."""
        wanted = check_user_map(body.get("device_keys"), "device_keys")
        for devices in wanted.values():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise MatrixError(400, Codes.BAD_JSON, "device_keys values must be lists of device IDs")
        if sum(len(d) for d in wanted.values()) > MAX_QUERY_DEVICES:
            raise MatrixError(400, Codes.TOO_LARGE, "Too many device IDs in one query")
        local = [u for u in wanted if self.is_local(u)]
        failures = {_server_of(u): NOT_FEDERATING for u in wanted if not self.is_local(u)}
        found = await self.keys.query_devices(local)
        signatures = await self.keys.signatures_on(local)
        out: dict[str, Any] = {
            "device_keys": {},
            "failures": failures,
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
        }
        for user_id in local:
            devices = found.get(user_id, {})
            only = set(wanted[user_id])
            out["device_keys"][user_id] = {
                d: _with_signatures(k, d, user_id, signatures, None)
                for d, k in devices.items()
                if not only or d in only
            }
        await self._cross_signing(rq, local, signatures, out)
        return out

    async def _cross_signing(
        self, rq: Requester, users: list[str], signatures: list[Signature], out: dict[str, Any]
    ) -> None:
        xs = await self.keys.cross_signing_keys(users, CROSS_SIGNING_TYPES)
        for user_id, by_type in xs.items():
            master = by_type.get("master")
            if master is not None:
                visible = {user_id, rq.user_id}
                out["master_keys"][user_id] = _with_signatures(
                    master.obj, master.public_key, user_id, signatures, visible
                )
            if "self_signing" in by_type:
                out["self_signing_keys"][user_id] = by_type["self_signing"].obj
            if "user_signing" in by_type and user_id == rq.user_id:
                out["user_signing_keys"][user_id] = by_type["user_signing"].obj

    # -- claim ------------------------------------------------------------------------------------
    async def claim(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /keys/claim: each one-time key goes to exactly one claimer; then the fallback key."""
        wanted = check_user_map(body.get("one_time_keys"), "one_time_keys")
        triples: list[tuple[str, str, str]] = []
        for user_id, devices in wanted.items():
            if not isinstance(devices, dict) or not all(
                isinstance(d, str) and isinstance(a, str) and 0 < len(a) <= 255 for d, a in devices.items()
            ):
                raise MatrixError(400, Codes.BAD_JSON, "one_time_keys must map user → device → algorithm")
            if self.is_local(user_id):
                triples.extend((user_id, d, a) for d, a in devices.items())
        if len(triples) > MAX_QUERY_DEVICES:
            raise MatrixError(400, Codes.TOO_LARGE, "Too many devices in one claim")
        failures = {_server_of(u): NOT_FEDERATING for u in wanted if not self.is_local(u)}
        claimed = await self.keys.claim(triples)
        keys: dict[str, dict[str, dict[str, Any]]] = {}
        for (user_id, device_id), (key_id, value) in claimed.items():
            keys.setdefault(user_id, {})[device_id] = {key_id: value}
        return {"one_time_keys": keys, "failures": failures}

    # -- /sync ------------------------------------------------------------------------------------
    async def sync_section(self, req: SyncRequest, response: SyncResponse) -> None:
        """/sync extension: the device's one-time key counts and unused fallback key types."""
        # Read by the sync's first query (storage/sync_probe.py).
        # Clients (libolm/vodozemac based) treat a missing count as unknown: always send Olm's.
        response.device_one_time_keys_count = {OLM_OTK: 0, **req.probe.one_time_keys}
        response.device_unused_fallback_key_types = list(req.probe.fallback_keys)


def _one_per_algorithm(keys: list[UploadedKey]) -> None:
    algorithms = [k.algorithm for k in keys]
    if len(algorithms) != len(set(algorithms)):
        raise MatrixError(400, Codes.BAD_JSON, "fallback_keys: at most one key per algorithm")


def _with_signatures(
    obj: dict[str, Any], key_id: str, user_id: str, signatures: list[Signature], visible_signers: set[str] | None
) -> dict[str, Any]:
    """The key object with the signatures uploaded later merged in (only those the requester may see)."""
    extra = [
        s
        for s in signatures
        if s.user_id == user_id and s.key_id == key_id and (visible_signers is None or s.signer_id in visible_signers)
    ]
    if not extra:
        return obj
    merged = {u: dict(v) for u, v in obj.get("signatures", {}).items()}
    for s in extra:
        merged.setdefault(s.signer_id, {})[s.signer_key_id] = s.signature
    return {**obj, "signatures": merged}
