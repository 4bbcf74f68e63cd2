"""The thumbnail worker: one short-lived process per image, run as
`python -I -m paigham.media.thumbnail_worker WIDTH HEIGHT METHOD ANIMATED MAX_PIXELS MEMORY_MB CPU_S`.

It limits its own address space, CPU time, file writes and open files BEFORE it reads a byte of the
(untrusted) image from stdin, then decodes it with Pillow restricted to JPEG, PNG, GIF and WebP.
A decompression bomb, a malformed file or a decoder bug can only kill this process.

Output on stdout: one line `content_type width height`, then the thumbnail's bytes.
Exit codes: 0 done, 3 too large (bomb), 4 not a decodable image; anything else is a crash.
"""

from __future__ import annotations

import io
import resource
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
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   quality=80)
    return "image/webp", frames[0], buf.getvalue()


def thumbnail(data: bytes, want: tuple[int, int], method: str, animated: bool,
              max_pixels: int) -> tuple[str, int, int, bytes]:
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


def main(argv: list[str]) -> int:
    width, height, method, animated, max_pixels, memory_mb, cpu_s = argv
    limit(int(memory_mb), int(cpu_s))
    data = sys.stdin.buffer.read()
    try:
        kind, w, h, blob = thumbnail(data, (int(width), int(height)), method, animated == "1", int(max_pixels))
    except TooLarge as exc:
        print(f"too large: {exc}", file=sys.stderr)
        return EXIT_TOO_LARGE
    except MemoryError:
        print("too large: out of memory", file=sys.stderr)
        return EXIT_TOO_LARGE
    except Exception as exc:  # any decoder failure: truncated, malformed, unsupported
        print(f"cannot decode: {type(exc).__name__}: {exc}"[:500], file=sys.stderr)
        return EXIT_UNDECODABLE
    sys.stdout.buffer.write(f"{kind} {w} {h}\n".encode() + blob)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
