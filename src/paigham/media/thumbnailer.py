"""Runs the thumbnail worker (thumbnail_worker.py) in a separate, resource-limited process per image,
a few at a time; a worker that overruns its time is abandoned (and ended by its own limits). The server
never decodes an image itself.

Workers are forked from a zygote: a fresh `python -I` interpreter with Pillow preloaded, so a worker
starts in milliseconds yet inherits nothing of the server (keys, database connections, memory).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import math
import socket
import subprocess
import sys
import threading
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
    return ThumbnailFailed(
        400, Codes.UNKNOWN, "Cannot generate thumbnails for the requested content" + why, permanent=True
    )


class Thumbnailer:
    def __init__(self, limits: ThumbnailLimits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(max(1, limits.concurrency))

    async def make(self, data: bytes, width: int, height: int, method: str, animated: bool) -> Thumbnail:
        lim = self.limits
        args = [
            width,
            height,
            method,
            animated,
            lim.max_pixels,
            lim.memory_mb,
            max(1, math.ceil(lim.timeout_s)),
            len(data),
        ]
        async with self._slots:
            reply = await asyncio.to_thread(_ZYGOTE.run, args, data, lim.timeout_s)
        return _result(reply)


def _result(reply: bytes | None) -> Thumbnail:
    if reply is None:
        log.warning("media.thumbnail.timeout")
        raise cannot_thumbnail(" (it took too long)")
    head, sep, blob = reply.partition(b"\n")
    code, _, rest = head.decode("utf-8", "replace").partition(" ")
    if code == str(worker.EXIT_TOO_LARGE):
        raise ThumbnailFailed(413, Codes.TOO_LARGE, "The image is too large to thumbnail", permanent=True)
    parts = rest.split()
    if code != "0" or not sep or len(parts) != 3:
        if code != str(worker.EXIT_UNDECODABLE):
            log.warning("media.thumbnail.worker_failed", reply=head[:300].decode("utf-8", "replace"))
        raise cannot_thumbnail()
    return Thumbnail(parts[0], int(parts[1]), int(parts[2]), blob)


class Zygote:
    """The process that forks the workers; started on first use, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def _ensure(self) -> socket.socket:
        if self._proc is not None and self._proc.poll() is None and self._control is not None:
            return self._control
        if self._control is not None:
            self._control.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # EOF when we go
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "-m", worker.__name__, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        theirs.close()
        self._control = ours
        return ours

    def run(self, args: list[object], data: bytes, timeout_s: float) -> bytes | None:
        """One job: the reply, or None if the worker died or overran its time."""
        ours, theirs = socket.socketpair()
        try:
            with self._lock:
                control = self._ensure()
                try:
                    socket.send_fds(control, [json.dumps(args).encode()], [theirs.fileno()])
                except OSError:  # the zygote died: start a new one
                    self._proc = None
                    socket.send_fds(self._ensure(), [json.dumps(args).encode()], [theirs.fileno()])
            theirs.close()
            ours.settimeout(timeout_s)
            return _exchange(ours, data)
        except (OSError, TimeoutError):
            return None
        finally:
            ours.close()
            theirs.close()

    def stop(self) -> None:
        with self._lock:
            if self._control is not None:
                self._control.close()  # the zygote sees end of file and exits
                self._control = None
            if self._proc is not None:
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None


def _exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    parts = []
    while chunk := sock.recv(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


_ZYGOTE = Zygote()
atexit.register(_ZYGOTE.stop)
