"""Pure rules for end-to-end encryption keys: the shape of device keys, one-time and fallback keys
and cross-signing keys, their signatures, and which backed-up room key wins. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from paigham.domain.canonical_json import encode
from paigham.domain.signing import VerifyKey, verify_json, verify_key_from_base64
from paigham.errors import Codes, MatrixError

MAX_KEY_OBJECT_BYTES = 16 * 1024
MAX_KEYS_PER_UPLOAD = 1000
MAX_ID_LEN = 255
MAX_KEY_LEN = 1024
CROSS_SIGNING_TYPES = ("master", "self_signing", "user_signing")


def bad(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg[:300])


def invalid_signature(msg: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_SIGNATURE, msg[:300])


def unsigned_body(obj: Mapping[str, Any]) -> bytes:
    """The canonical JSON a signature covers: the object without `signatures` and `unsigned`."""
    return encode({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def ed25519_key(key_id: str, key_b64: Any) -> VerifyKey:
    if not isinstance(key_b64, str):
        raise bad(f"Key {key_id} must be a string")
    try:
        return verify_key_from_base64(key_id, key_b64)
    except ValueError:
        raise bad(f"Key {key_id} is not an unpadded base64 ed25519 public key") from None


def _check_size(obj: Any, what: str) -> None:
    try:
        size = len(encode(obj))
    except Exception:
        raise bad(f"{what} is not valid canonical JSON") from None
    if size > MAX_KEY_OBJECT_BYTES:
        raise MatrixError(400, Codes.TOO_LARGE, f"{what} is larger than {MAX_KEY_OBJECT_BYTES} bytes")


def _signatures(obj: Mapping[str, Any], what: str) -> None:
    sigs = obj.get("signatures", {})
    if not isinstance(sigs, dict) or not all(
        isinstance(v, dict) and all(isinstance(s, str) for s in v.values()) for v in sigs.values()
    ):
        raise bad(f"{what}.signatures must map user IDs to objects of key ID → signature")


# -- device keys ------------------------------------------------------------------------------------
def check_device_keys(obj: Any, user_id: str, device_id: str) -> str:
    """Validate uploaded device keys (self-signed by the device's ed25519 key); return that key."""
    if not isinstance(obj, dict):
        raise bad("device_keys must be an object")
    _check_size(obj, "device_keys")
    if obj.get("user_id") != user_id or obj.get("device_id") != device_id:
        raise MatrixError(400, Codes.INVALID_PARAM, "device_keys must be for your own user ID and device ID")
    algorithms = obj.get("algorithms")
    if (
        not isinstance(algorithms, list)
        or not all(isinstance(a, str) and a for a in algorithms)
        or len(algorithms) > 64
    ):
        raise bad("device_keys.algorithms must be a list of algorithm names")
    keys = obj.get("keys")
    if (
        not isinstance(keys, dict)
        or not keys
        or len(keys) > 64
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_ID_LEN and len(v) <= MAX_KEY_LEN
            for k, v in keys.items()
        )
    ):
        raise bad("device_keys.keys must map <algorithm>:<device_id> to key strings")
    _signatures(obj, "device_keys")
    ed_id = f"ed25519:{device_id}"
    if ed_id not in keys:
        raise bad(f"device_keys.keys must contain {ed_id}")
    verify = ed25519_key(ed_id, keys[ed_id])
    if not verify_json(obj, user_id, verify):
        raise invalid_signature("device_keys are not signed by the device's own ed25519 key")
    return str(keys[ed_id])


# -- one-time and fallback keys -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UploadedKey:
    algorithm: str
    key_id: str
    value: Any  # a string, or a signed key object

    @property
    def full_id(self) -> str:
        return f"{self.algorithm}:{self.key_id}"


def parse_key_map(raw: Any, what: str, user_id: str, signer: VerifyKey | None) -> list[UploadedKey]:
    """One-time or fallback keys `{"<algorithm>:<key_id>": key}`; signed key objects must verify with
    the device's ed25519 key when it is known."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise bad(f"{what} must be an object")
    if len(raw) > MAX_KEYS_PER_UPLOAD:
        raise MatrixError(400, Codes.TOO_LARGE, f"At most {MAX_KEYS_PER_UPLOAD} {what} per upload")
    out: list[UploadedKey] = []
    for name, value in raw.items():
        algorithm, sep, key_id = name.partition(":")
        if not sep or not algorithm or not key_id or len(name) > MAX_ID_LEN:
            raise bad(f"{what}: key names must be <algorithm>:<key_id>, got {name!r}")
        _check_key_value(value, f"{what}.{name}", user_id, signer)
        out.append(UploadedKey(algorithm, key_id, value))
    return out


def _check_key_value(value: Any, what: str, user_id: str, signer: VerifyKey | None) -> None:
    if isinstance(value, str):
        if not value or len(value) > MAX_KEY_LEN:
            raise bad(f"{what} must be a non-empty key string")
        return
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("key"), str)
        or not value["key"]
        or len(value["key"]) > MAX_KEY_LEN
    ):
        raise bad(f"{what} must be a key string or an object with a key and signatures")
    _check_size(value, what)
    _signatures(value, what)
    if not isinstance(value.get("signatures"), dict):
        raise bad(f"{what} must carry signatures")
    if signer is not None and not verify_json(value, user_id, signer):
        raise invalid_signature(f"{what} is not signed by the device's ed25519 key")


# -- cross-signing keys -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CrossSigningKey:
    key_type: str
    public_key: str
    obj: dict[str, Any]

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.public_key}"

    def verify_key(self) -> VerifyKey:
        return ed25519_key(self.key_id, self.public_key)

    def same_as(self, other: CrossSigningKey | None) -> bool:
        return other is not None and unsigned_body(self.obj) == unsigned_body(other.obj)


def parse_cross_signing_key(obj: Any, key_type: str, user_id: str) -> CrossSigningKey:
    """A CrossSigningKey object: for this user, with this usage, and exactly one ed25519 key."""
    what = f"{key_type}_key"
    if not isinstance(obj, dict):
        raise bad(f"{what} must be an object")
    _check_size(obj, what)
    if obj.get("user_id") != user_id:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{what}.user_id must be {user_id}")
    usage = obj.get("usage")
    if not isinstance(usage, list) or key_type not in usage or not all(u in CROSS_SIGNING_TYPES for u in usage):
        raise bad(f"{what}.usage must contain {key_type!r}")
    keys = obj.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise bad(f"{what}.keys must contain exactly one key")
    ((key_id, public),) = keys.items()
    if not isinstance(key_id, str) or not key_id.startswith("ed25519:") or key_id[len("ed25519:") :] != public:
        raise bad(f'{what}.keys must be {{"ed25519:<public key>": "<public key>"}}')
    _signatures(obj, what)
    key = CrossSigningKey(key_type, str(public), obj)
    key.verify_key()  # a valid ed25519 public key
    return key


def signed_by(obj: Mapping[str, Any], user_id: str, key: CrossSigningKey) -> bool:
    return verify_json(obj, user_id, key.verify_key())


# -- key backup ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BackupKey:
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        }


def parse_backup_key(raw: Any, what: str) -> BackupKey:
    if not isinstance(raw, dict):
        raise bad(f"{what} must be an object")
    fmi, fwd, verified, data = (
        raw.get(k) for k in ("first_message_index", "forwarded_count", "is_verified", "session_data")
    )
    if not _nonneg_int(fmi) or not _nonneg_int(fwd):
        raise bad(f"{what}: first_message_index and forwarded_count must be non-negative integers")
    if not isinstance(verified, bool):
        raise bad(f"{what}: is_verified must be a boolean")
    if not isinstance(data, dict):
        raise bad(f"{what}: session_data must be an object")
    _check_size(data, f"{what}.session_data")
    return BackupKey(fmi, fwd, verified, data)


def _nonneg_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**53


def backup_key_wins(new: BackupKey, old: BackupKey) -> bool:
    """Whether an uploaded key replaces the stored one (spec: "Server-side key backups"): the
    verified one, then the lower first_message_index, then the lower forwarded_count."""
    if new.is_verified != old.is_verified:
        return new.is_verified
    if new.first_message_index != old.first_message_index:
        return new.first_message_index < old.first_message_index
    return new.forwarded_count < old.forwarded_count
