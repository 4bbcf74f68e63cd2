"""The thumbnail worker: one short-lived process per image, forked from a zygote — a separate, fresh
interpreter (`python -I -B -m paigham.media.thumbnail_worker FD`) with Pillow preloaded that never held
the server's keys, database connections or memory.

A worker limits its own address space, CPU time, wall-clock time, file writes and open files BEFORE it
reads a byte of the (untrusted) image from its socket, then decodes it with Pillow restricted to JPEG,
PNG, GIF and WebP. A decompression bomb, a malformed file or a decoder bug can only kill this process.

Reply: `0 content_type width height\n` then the thumbnail's bytes, or `3 reason` (too large, a bomb)
or `4 reason` (not a decodable image). No reply (the process died) is a crash.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import socket
import sys
import warnings
from typing import Any

EXIT_TOO_LARGE = 3
EXIT_UNDECODABLE = 4
MAX_FRAMES = 100
FORMATS = ("JPEG", "PNG", "GIF", "WEBP")


def limit(memory_mb: int, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))


class TooLarge(Exception):
    pass


def _target(src: tuple[int, int], want: tuple[int, int], method: str) -> tuple[tuple[int, int], bool]:
    """The size to scale to (never up), and whether to centre-crop to `want` afterwards."""
    sw, sh = src
    w, h = want
    if method == "crop":
        ratio = min(1.0, max(w / sw, h / sh))
        return (max(1, round(sw * ratio)), max(1, round(sh * ratio))), True
    ratio = min(1.0, w / sw, h / sh)
    return (max(1, round(sw * ratio)), max(1, round(sh * ratio))), False


def _resize(img: Any, want: tuple[int, int], method: str) -> Any:
    from PIL import Image

    size, crop = _target(img.size, want, method)
    out = img.resize(size, Image.Resampling.LANCZOS) if size != img.size else img.copy()
    if crop:
        cw, ch = min(want[0], out.width), min(want[1], out.height)
        left, top = (out.width - cw) // 2, (out.height - ch) // 2
        out = out.crop((left, top, left + cw, top + ch))
    return out


def _still(img: Any, want: tuple[int, int], method: str) -> tuple[str, Any, bytes]:
    from PIL import ImageOps

    fmt = img.format
    img.load()
    img = ImageOps.exif_transpose(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    img = img.convert("RGBA" if has_alpha else "RGB")
    out = _resize(img, want, method)
    buf = io.BytesIO()
    if fmt == "JPEG" and not has_alpha:
        out.save(buf, "JPEG", quality=82, optimize=True)
        return "image/jpeg", out, buf.getvalue()
    out.save(buf, "PNG", compress_level=6)
    return "image/png", out, buf.getvalue()


def _animated(img: Any, want: tuple[int, int], method: str) -> tuple[str, Any, bytes]:
    from PIL import ImageSequence

    if img.n_frames > MAX_FRAMES:
        raise TooLarge(f"more than {MAX_FRAMES} frames")
    frames, durations = [], []
    for frame in ImageSequence.Iterator(img):
        durations.append(int(frame.info.get("duration", 100)))
        frames.append(_resize(frame.convert("RGBA"), want, method))
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=durations, loop=0, quality=80)
    return "image/webp", frames[0], buf.getvalue()


def thumbnail(
    data: bytes, want: tuple[int, int], method: str, animated: bool, max_pixels: int
) -> tuple[str, int, int, bytes]:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(str(exc)) from None
    if img.width * img.height > max_pixels:
        raise TooLarge(f"{img.width}x{img.height} is more than {max_pixels} pixels")
    if animated and getattr(img, "is_animated", False):
        kind, out, blob = _animated(img, want, method)
    else:
        kind, out, blob = _still(img, want, method)
    return kind, out.width, out.height, blob


def job(sock: socket.socket, args: list[Any]) -> None:
    """In a freshly forked worker: limit first, then read the image (until EOF) and reply."""
    width, height, method, animated, max_pixels, memory_mb, timeout_s, max_input = args
    signal.alarm(int(timeout_s) + 1)  # wall-clock limit: SIGALRM ends the process
    limit(int(memory_mb), int(timeout_s))
    sock.settimeout(timeout_s)
    try:
        data = _read_all(sock, int(max_input))
        kind, w, h, blob = thumbnail(data, (int(width), int(height)), str(method), bool(animated), int(max_pixels))
    except TooLarge as exc:
        reply = f"{EXIT_TOO_LARGE} too large: {exc}".encode()[:500]
    except MemoryError:
        reply = f"{EXIT_TOO_LARGE} too large: out of memory".encode()
    except Exception as exc:  # any decoder failure: truncated, malformed, unsupported
        reply = f"{EXIT_UNDECODABLE} cannot decode: {type(exc).__name__}: {exc}".encode()[:500]
    else:
        reply = f"0 {kind} {w} {h}\n".encode() + blob
    sock.sendall(reply)
    sock.close()


def _read_all(sock: socket.socket, limit_bytes: int) -> bytes:
    parts, size = [], 0
    while chunk := sock.recv(1 << 16):
        size += len(chunk)
        if size > limit_bytes:
            raise TooLarge("more input than announced")
        parts.append(chunk)
    return b"".join(parts)


def zygote(control: socket.socket) -> None:
    """Preload Pillow, then fork one worker per job request: `args as JSON` plus the job's socket (SCM_RIGHTS).
    Ends when the server closes the control socket. Children are reaped by the kernel (SIGCHLD ignored)."""
    from PIL import Image, ImageOps, ImageSequence  # noqa: F401

    Image.init()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        msg, fds, _, _ = socket.recv_fds(control, 4096, 1)
        if not msg:
            return
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            control.close()
            try:
                job(socket.socket(fileno=fds[0]), json.loads(msg))
            finally:
                os._exit(0)
        os.close(fds[0])


if __name__ == "__main__":
    zygote(socket.socket(fileno=int(sys.argv[1])))
