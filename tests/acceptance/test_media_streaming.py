"""A real `paigham serve` process streams a 95 MiB upload and download while its resident memory is
watched: a server that buffered the file (in uvicorn, Starlette or Paigham) would grow by ~95 MiB."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from acc_support import ServerInfo
from nio_support import register_with_token

pytestmark = pytest.mark.acceptance

TOTAL = 95 * 1024 * 1024  # under the default 100 MiB upload limit
CHUNK = 256 * 1024
MAX_GROWTH = 40 * 1024 * 1024


def _rss(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


class PeakRss:
    """Samples the server's resident set size every few milliseconds in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = _rss(pid)
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss(self.pid))
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


async def _body(digest: hashlib._Hash) -> AsyncIterator[bytes]:
    block = secrets.token_bytes(CHUNK)
    for i in range(TOTAL // CHUNK):
        piece = i.to_bytes(8, "big") + block[8:]
        digest.update(piece)
        yield piece


async def test_large_upload_and_download_keep_server_memory_flat(server: ServerInfo, unique: str) -> None:
    if server.process is None or not Path(f"/proc/{server.process.pid}/status").exists():
        pytest.skip("needs the server process on this machine (/proc)")
    acct = await register_with_token(server.base_url, f"stream{unique}", "stream password 3", server.registration_token)
    auth = {"Authorization": f"Bearer {acct.access_token}"}
    sent = hashlib.sha256()
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        with PeakRss(server.process.pid) as up_mem:
            async with http.post(
                f"{server.base_url}/_matrix/media/v3/upload?filename=big.bin",
                data=_body(sent),
                headers={**auth, "Content-Type": "application/octet-stream", "Content-Length": str(TOTAL)},
            ) as resp:
                assert resp.status == 200, await resp.text()
                mxc = (await resp.json())["content_uri"][len("mxc://") :]
        got, size = hashlib.sha256(), 0
        with PeakRss(server.process.pid) as down_mem:
            async with http.get(f"{server.base_url}/_matrix/client/v1/media/download/{mxc}", headers=auth) as resp:
                assert resp.status == 200
                async for piece in resp.content.iter_chunked(CHUNK):
                    got.update(piece)
                    size += len(piece)
                    await asyncio.sleep(0)
    assert size == TOTAL and got.hexdigest() == sent.hexdigest()
    assert up_mem.growth < MAX_GROWTH, f"server grew by {up_mem.growth / 2**20:.1f} MiB during the upload"
    assert down_mem.growth < MAX_GROWTH, f"server grew by {down_mem.growth / 2**20:.1f} MiB during the download"
