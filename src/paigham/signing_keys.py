"""Files the server keeps in its data dir: the ed25519 signing key and the shared secret, loaded at
start into `Secrets`, which the server keeps beside its (immutable) configuration."""

from __future__ import annotations

import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signedjson.key import generate_signing_key, read_signing_keys, write_signing_keys

from paigham.ids import random_string


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _create_once(path: Path, text: str) -> None:
    """Write a new private file atomically; if another process got there first, keep its file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_private(tmp, text)
    try:
        os.link(tmp, path)  # fails if the file exists: the first process to start wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create_signing_key(data_dir: Path) -> Any:
    path = data_dir / "signing.key"
    if not path.exists():
        key = generate_signing_key("a_" + random_string(4))
        buf = io.StringIO()
        write_signing_keys(buf, [key])
        _create_once(path, buf.getvalue())
    with open(path, encoding="utf-8") as fh:
        return read_signing_keys(fh)[0]


def load_or_create_shared_secret(data_dir: Path, configured: str) -> str:
    if configured:
        return configured
    path = data_dir / "registration-shared-secret"
    if not path.exists():
        _create_once(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip()


@dataclass(frozen=True, slots=True)
class Secrets:
    """What the server keeps secret, read from the data dir (created there on first start)."""

    signing_key: Any
    # The configured secret if there is one, else the one kept in the data dir.
    registration_shared_secret: str

    @classmethod
    def load(cls, data_dir: Path, configured_shared_secret: str) -> Secrets:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            load_or_create_signing_key(data_dir), load_or_create_shared_secret(data_dir, configured_shared_secret)
        )


def write_admin_credentials(data_dir: Path, user_id: str, password: str) -> Path:
    path = data_dir / "admin-credentials"
    _write_private(path, f"user_id: {user_id}\npassword: {password}\n")
    return path
