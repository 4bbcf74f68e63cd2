"""Nobody else on the machine can read the server's data (issue 14 #11: on 81fc255 the database and
media files were world-readable)."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

from paigham.app import Server
from paigham.config import Config
from paigham.media.service import Upload


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_data_dir_and_everything_the_server_writes_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    old = data / "paigham.db-backup"
    old.write_text("an older file")
    old.chmod(0o644)
    server = Server(Config(data_dir=str(data), create_admin=True, nats_url=""))
    await server.start()
    try:

        async def body() -> AsyncIterator[bytes]:
            yield b"secret document"

        mxc = await server.media.upload("@admin:localhost", Upload("text/plain", "memo.txt", 15, body()))
        assert mxc.startswith("mxc://")
    finally:
        await server.stop()
    assert mode(data) == 0o700
    assert mode(old) == 0o600
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {"paigham.db", "signing.key", "registration-shared-secret", "admin-credentials", "media.key"} <= {
        p.name for p in files
    }
    loose = {str(p.relative_to(data)): oct(mode(p)) for p in files if mode(p) & 0o077}
    assert not loose, loose
    dirs = {str(p.relative_to(data)): oct(mode(p)) for p in data.rglob("*") if p.is_dir() and mode(p) & 0o077}
    assert not dirs, dirs
