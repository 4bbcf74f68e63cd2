"""The data directory is the server user's alone: the database, the signing key, the shared secret,
the media master key and encrypted media live there, and nobody else on the machine may read them.

At start: the process creates files for its user only (umask 077), the data directory (and a media
store configured outside it) is made 0700, and files already in the data directory that others could
read (left by an older version, or copied in) are tightened to 0600.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from paigham.config import Config

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def prepare_data_dir(config: Config) -> None:
    os.umask(0o077)
    dirs = [config.data_path]
    if config.media_store_path:
        dirs.append(Path(config.media_store_path))
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        _tighten(d, PRIVATE_DIR)
    for entry in config.data_path.iterdir():
        if entry.is_file() and not entry.is_symlink():
            _tighten(entry, PRIVATE_FILE)
    sqlite_file = config.effective_database_url.removeprefix("sqlite:///")
    if config.effective_database_url.startswith("sqlite:///") and Path(sqlite_file).is_file():
        _tighten(Path(sqlite_file), PRIVATE_FILE)


def _tighten(path: Path, mode: int) -> None:
    """Drop the group's and others' bits (never widen what is there)."""
    with contextlib.suppress(OSError):  # not ours to change (a mount): leave it, the umask still holds
        current = stat.S_IMODE(path.stat().st_mode)
        if current & 0o077:
            path.chmod(current & mode)
