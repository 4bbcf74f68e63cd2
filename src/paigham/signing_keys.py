"""Files the server keeps in its data dir: the ed25519 signing key and the shared secret."""

from __future__ import annotations

import io
import os
import secrets
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


def write_admin_credentials(data_dir: Path, user_id: str, password: str) -> Path:
    path = data_dir / "admin-credentials"
    _write_private(path, f"user_id: {user_id}\npassword: {password}\n")
    return path
