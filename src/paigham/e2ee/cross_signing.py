"""Cross-signing: uploading the master / self-signing / user-signing keys, and signatures made with
them (or with a device key on the master key). Every signature is verified before it is stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from paigham.domain.e2e_keys import (
    CROSS_SIGNING_TYPES,
    CrossSigningKey,
    ed25519_key,
    parse_cross_signing_key,
    signed_by,
)
from paigham.domain.signing import verify_json
from paigham.e2ee.device_lists import DeviceListService
from paigham.e2ee.keys import check_user_map
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.uia import PASSWORD, UIAService
from paigham.storage.accounts import AccountStore
from paigham.storage.e2ee_keys import KeyStore, Signature, same_key_object

FIELDS = {"master": "master_key", "self_signing": "self_signing_key", "user_signing": "user_signing_key"}
MAX_SIGNED_OBJECTS = 1000


class SignatureFailure(Exception):
    def __init__(self, errcode: str, error: str) -> None:
        super().__init__(error)
        self.errcode = errcode
        self.error = error


KeysChanged = Callable[[Requester, list[str]], Awaitable[None]]


class CrossSigningService:
    def __init__(
        self,
        keys: KeyStore,
        accounts: AccountStore,
        uia: UIAService,
        lists: DeviceListService,
        *,
        changed_hooks: Sequence[KeysChanged] = (),
    ) -> None:
        self.keys = keys
        self.accounts = accounts
        self.uia = uia
        self.lists = lists
        # Called with (requester, key types) after the user's cross-signing keys changed (the audit log).
        self.changed_hooks = tuple(changed_hooks)

    async def _own(self, user_id: str) -> dict[str, CrossSigningKey]:
        return (await self.keys.cross_signing_keys([user_id], CROSS_SIGNING_TYPES)).get(user_id, {})

    # -- /keys/device_signing/upload --------------------------------------------------------------
    async def upload_keys(self, rq: Requester, body: Mapping[str, Any]) -> None:
        new = {t: parse_cross_signing_key(body[f], t, rq.user_id) for t, f in FIELDS.items() if body.get(f) is not None}
        existing = await self._own(rq.user_id)
        if not new:
            if "master" in existing:
                # Element Web probes with an empty upload to learn whether the password alone will do.
                await self._password(rq, body)
            raise MatrixError(400, Codes.MISSING_PARAM, "No cross-signing keys given")
        master = new.get("master") or existing.get("master")
        if master is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "No master signing key is available")
        for t in ("self_signing", "user_signing"):
            if t in new and not signed_by(new[t].obj, rq.user_id, master):
                raise MatrixError(400, Codes.INVALID_SIGNATURE, f"The {t} key is not signed by the master key")
        device_ids = {d.device_id for d in await self.accounts.get_devices(rq.user_id)}
        if any(k.public_key in device_ids for k in new.values()):
            raise MatrixError(403, Codes.FORBIDDEN, "A cross-signing public key equals one of your device IDs")
        unchanged = all(k.same_as(existing.get(t)) for t, k in new.items())
        if "master" in existing and not unchanged:
            # Replacing keys needs the password; the first upload (and an identical retry) does not.
            await self._password(rq, body)
        if unchanged:
            return
        pos = await self.keys.set_cross_signing_keys(rq.user_id, list(new.values()))
        await self.lists.notify(pos, rq.user_id)
        for hook in self.changed_hooks:
            await hook(rq, sorted(new))

    async def _password(self, rq: Requester, body: Mapping[str, Any]) -> None:
        await self.uia.check(body.get("auth"), kind="device_signing_upload", flows=[[PASSWORD]], user_id=rq.user_id)

    # -- /keys/signatures/upload ------------------------------------------------------------------
    async def upload_signatures(self, rq: Requester, body: Mapping[str, Any]) -> dict[str, Any]:
        check_user_map(body, "body")
        if sum(len(v) if isinstance(v, dict) else 1 for v in body.values()) > MAX_SIGNED_OBJECTS:
            raise MatrixError(400, Codes.TOO_LARGE, f"At most {MAX_SIGNED_OBJECTS} signed objects per request")
        mine = await self._own(rq.user_id)
        my_devices = (await self.keys.query_devices([rq.user_id])).get(rq.user_id, {})
        failures: dict[str, dict[str, Any]] = {}
        new: list[Signature] = []
        for target, by_key in body.items():
            if not isinstance(by_key, dict):
                raise MatrixError(400, Codes.BAD_JSON, "Each user maps key IDs to signed objects")
            for key_id, obj in by_key.items():
                try:
                    if target == rq.user_id:
                        new.extend(self._own_key(rq.user_id, key_id, obj, mine, my_devices))
                    else:
                        new.append(await self._other_master(rq.user_id, target, key_id, obj, mine))
                except SignatureFailure as f:
                    failures.setdefault(target, {})[key_id] = {"errcode": f.errcode, "error": f.error}
        if new:
            users = {s.user_id if s.user_id == rq.user_id else rq.user_id for s in new}
            pos = await self.keys.add_signatures(new, users)
            for user_id in users:
                await self.lists.notify(pos, user_id)
        return {"failures": failures}

    def _own_key(
        self, me: str, key_id: str, obj: Any, mine: dict[str, CrossSigningKey], my_devices: dict[str, dict[str, Any]]
    ) -> list[Signature]:
        """My device signed by my self-signing key, or my master key signed by one of my devices."""
        sigs = _signatures_by(obj, me)
        if key_id in my_devices:
            _same(obj, my_devices[key_id])
            ssk = mine.get("self_signing")
            if ssk is None:
                raise SignatureFailure(Codes.MISSING_PARAM, "Upload a self-signing key first")
            return [_verified(obj, me, key_id, me, ssk.key_id, sigs, ssk.verify_key())]
        master = mine.get("master")
        if master is not None and key_id == master.public_key:
            _same(obj, master.obj)
            by_devices = [
                (kid, my_devices[kid[len("ed25519:") :]])
                for kid in sorted(sigs)
                if kid.startswith("ed25519:") and kid[len("ed25519:") :] in my_devices
            ]
            if not by_devices:
                raise SignatureFailure(Codes.INVALID_SIGNATURE, "The master key carries no signature by your devices")
            return [
                _verified(obj, me, key_id, me, kid, sigs, ed25519_key(kid, device["keys"].get(kid)))
                for kid, device in by_devices
            ]
        raise SignatureFailure(Codes.NOT_FOUND, "Unknown key: neither one of your devices nor your master key")

    async def _other_master(
        self, me: str, target: str, key_id: str, obj: Any, mine: dict[str, CrossSigningKey]
    ) -> Signature:
        """Another user's master key, signed by my user-signing key."""
        theirs = (await self.keys.cross_signing_keys([target], ["master"])).get(target, {}).get("master")
        if theirs is None or key_id != theirs.public_key:
            raise SignatureFailure(Codes.NOT_FOUND, "Only another user's current master key can be signed")
        _same(obj, theirs.obj)
        usk = mine.get("user_signing")
        if usk is None:
            raise SignatureFailure(Codes.MISSING_PARAM, "Upload a user-signing key first")
        return _verified(obj, target, key_id, me, usk.key_id, _signatures_by(obj, me), usk.verify_key())


def _signatures_by(obj: Any, signer: str) -> dict[str, str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("signatures"), dict):
        raise SignatureFailure(Codes.BAD_JSON, "A signed object with signatures is required")
    sigs = obj["signatures"].get(signer)
    if not isinstance(sigs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sigs.items()):
        raise SignatureFailure(Codes.INVALID_SIGNATURE, f"No signatures by {signer}")
    return sigs


def _same(obj: dict[str, Any], stored: dict[str, Any]) -> None:
    try:
        same = same_key_object(obj, stored)
    except MatrixError:
        same = False
    if not same:
        raise SignatureFailure(Codes.INVALID_SIGNATURE, "The signed object does not match the stored key")


def _verified(
    obj: dict[str, Any], user_id: str, key_id: str, signer: str, signer_key_id: str, sigs: dict[str, str], verify: Any
) -> Signature:
    if signer_key_id not in sigs:
        raise SignatureFailure(Codes.INVALID_SIGNATURE, f"No signature with {signer_key_id}")
    if not verify_json(obj, signer, verify):
        raise SignatureFailure(Codes.INVALID_SIGNATURE, f"The signature with {signer_key_id} does not verify")
    return Signature(user_id, key_id, signer, signer_key_id, sigs[signer_key_id])
