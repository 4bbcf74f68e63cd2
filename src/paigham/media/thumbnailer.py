"""Runs the thumbnail worker (thumbnail_worker.py) in a separate, resource-limited process per image,
a few at a time, and kills it when it overruns its time. The server never decodes an image itself."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass

import structlog

from paigham.errors import Codes, MatrixError
from paigham.media import thumbnail_worker as worker

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Thumbnail:
    content_type: str
    width: int
    height: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ThumbnailLimits:
    max_pixels: int = 32_000_000
    memory_mb: int = 512
    timeout_s: float = 10.0
    concurrency: int = 2


class ThumbnailFailed(MatrixError):
    """The content cannot be thumbnailed; `permanent` failures are remembered for the media."""

    def __init__(self, status: int, errcode: str, error: str, *, permanent: bool) -> None:
        super().__init__(status, errcode, error)
        self.permanent = permanent


def cannot_thumbnail(why: str = "") -> ThumbnailFailed:
    return ThumbnailFailed(400, Codes.UNKNOWN, "Cannot generate thumbnails for the requested content" + why,
                           permanent=True)


class Thumbnailer:
    def __init__(self, limits: ThumbnailLimits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(max(1, limits.concurrency))

    async def make(self, data: bytes, width: int, height: int, method: str, animated: bool) -> Thumbnail:
        lim = self.limits
        args = [str(width), str(height), method, "1" if animated else "0", str(lim.max_pixels),
                str(lim.memory_mb), str(max(1, int(lim.timeout_s + 0.999)))]
        async with self._slots:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-B", "-m", worker.__name__, *args,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await asyncio.wait_for(proc.communicate(data), lim.timeout_s)
            except TimeoutError:
                log.warning("media.thumbnail.timeout", timeout_s=lim.timeout_s)
                raise cannot_thumbnail(" (it took too long)") from None
            finally:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        return self._result(proc.returncode or 0, out, err)

    def _result(self, code: int, out: bytes, err: bytes) -> Thumbnail:
        if code == worker.EXIT_TOO_LARGE:
            raise ThumbnailFailed(413, Codes.TOO_LARGE, "The image is too large to thumbnail", permanent=True)
        if code == worker.EXIT_UNDECODABLE:
            raise cannot_thumbnail()
        head, sep, blob = out.partition(b"\n")
        parts = head.decode("ascii", "replace").split()
        if code != 0 or not sep or len(parts) != 3:
            log.warning("media.thumbnail.worker_failed", code=code, stderr=err[-500:].decode("utf-8", "replace"))
            raise cannot_thumbnail()
        return Thumbnail(parts[0], int(parts[1]), int(parts[2]), blob)
