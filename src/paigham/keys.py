"""Files the server keeps in its data dir: the ed25519 signing key and the shared secret."""

from __future__ import annotations

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


def load_or_create_signing_key(data_dir: Path) -> Any:
    path = data_dir / "signing.key"
    if path.exists():
        with open(path, encoding="utf-8") as fh:
            return read_signing_keys(fh)[0]
    key = generate_signing_key("a_" + random_string(4))
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
        write_signing_keys(fh, [key])
    return key


def load_or_create_shared_secret(data_dir: Path, configured: str) -> str:
    if configured:
        return configured
    path = data_dir / "registration-shared-secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(32)
    _write_private(path, secret + "\n")
    return secret


def write_admin_credentials(data_dir: Path, user_id: str, password: str) -> Path:
    path = data_dir / "admin-credentials"
    _write_private(path, f"user_id: {user_id}\npassword: {password}\n")
    return path
