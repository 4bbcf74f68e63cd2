"""Pure rules of the content repository: media IDs, content types, filenames, ranges, thumbnail sizes.

No I/O here; every function either returns a value or raises a MatrixError with the right code.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from dataclasses import dataclass

from paigham.errors import Codes, MatrixError

MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
MAX_CONTENT_TYPE = 255
MAX_FILENAME_BYTES = 255
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE_RE = re.compile(rf"^({_TOKEN})/({_TOKEN})\s*(;.*)?$")
_PARAM_RE = re.compile(rf"^\s*{_TOKEN}\s*=\s*({_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\")\s*$")

# The spec's list of types that are safe to serve with `Content-Disposition: inline`.
INLINE_TYPES = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)

# Image types Paigham thumbnails, with the magic bytes that must start such a file.
THUMBNAILABLE = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/apng": (b"\x89PNG\r\n\x1a\n",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}

# Sizes the spec recommends; requests are snapped up to one of these so the cache stays small.
STANDARD_THUMBNAILS: tuple[tuple[int, int, str], ...] = (
    (32, 32, "crop"),
    (96, 96, "crop"),
    (320, 240, "scale"),
    (640, 480, "scale"),
    (800, 600, "scale"),
)
MAX_THUMBNAIL_DIMENSION = 2048

# Characters that make a filename lie about itself: bidi overrides/isolates and invisible marks.
_DECEPTIVE = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def check_media_id(media_id: str) -> str:
    """The spec allows only A-Za-z0-9, `_` and `-` (this also rules out any path traversal)."""
    if not MEDIA_ID_RE.match(media_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid media ID: only A-Za-z0-9, _ and - are allowed")
    return media_id


def parse_content_type(header: str | None) -> str:
    """The upload's content type, normalised (`type/subtype` lower-cased, parameters kept).

    A missing header means application/octet-stream (spec v1.12); a malformed one is refused.
    """
    if header is None or not header.strip():
        return "application/octet-stream"
    value = header.strip()
    m = _CONTENT_TYPE_RE.match(value)
    if len(value) > MAX_CONTENT_TYPE or not m or not _params_ok(m.group(3)):
        raise MatrixError(400, Codes.INVALID_PARAM, "Content-Type must be a valid media type such as image/png")
    params = m.group(3) or ""
    return f"{m.group(1).lower()}/{m.group(2).lower()}{params}"


def _params_ok(params: str | None) -> bool:
    if not params:
        return True
    return all(_PARAM_RE.match(p) for p in params[1:].split(";") if p.strip())


def essence(content_type: str) -> str:
    """`type/subtype` without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def type_allowed(content_type: str, patterns: list[str]) -> bool:
    """Match against configured patterns: exact types, `type/*` or `*/*`."""
    kind = essence(content_type)
    major = kind.split("/", 1)[0]
    for p in patterns:
        p = p.strip().lower()
        if p in ("*", "*/*", kind) or (p.endswith("/*") and p[:-2] == major):
            return True
    return False


def parse_patterns(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def check_filename(name: str | None) -> str | None:
    """A filename a client may later save under: no paths, control characters or spoofing marks."""
    if name is None or name == "":
        return None
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, f"filename is longer than {MAX_FILENAME_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise MatrixError(400, Codes.INVALID_PARAM, "filename must not contain control characters")
    if any(c in _DECEPTIVE for c in name):
        raise MatrixError(400, Codes.INVALID_PARAM, "filename must not contain bidirectional override characters")
    if "/" in name or "\\" in name or name.strip() in (".", ".."):
        raise MatrixError(400, Codes.INVALID_PARAM, "filename must not contain a path")
    return name


def served_type(content_type: str, head: bytes) -> str:
    """What to serve as Content-Type: the upload's, unless it claims an image its bytes are not."""
    magic = THUMBNAILABLE.get(essence(content_type))
    if magic is not None and not any(head.startswith(m) for m in magic):
        return "application/octet-stream"
    if essence(content_type) == "image/webp" and head[8:12] != b"WEBP":
        return "application/octet-stream"
    return content_type


def content_disposition(content_type: str, filename: str | None, *, force_inline: bool = False) -> str:
    """RFC 6266: `inline` only for the spec's safe types; a quoted ASCII name or an RFC 5987 one."""
    kind = "inline" if force_inline or essence(content_type) in INLINE_TYPES else "attachment"
    if not filename:
        return kind
    if all(0x20 <= ord(c) < 0x7F for c in filename) and not any(c in filename for c in '"\\;%'):
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename*=utf-8''{urllib.parse.quote(filename, safe='')}"


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One `bytes=` range (RFC 9110). None means "send everything" (no header, several ranges, or
    another unit); an unsatisfiable range raises 416."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not (first + last).isascii() or len(first) > 19 or len(last) > 19:
        return None
    if (
        not dash
        or not (first.isdigit() or last.isdigit())
        or (first and not first.isdigit())
        or (last and not last.isdigit())
    ):
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise _unsatisfiable(size)
    return ByteRange(start, end)


class RangeNotSatisfiable(MatrixError):
    """416, served with `Content-Range: bytes */size`."""

    def __init__(self, size: int) -> None:
        super().__init__(416, Codes.INVALID_PARAM, f"Requested range is not satisfiable (size {size})")
        self.size = size


def _unsatisfiable(size: int) -> MatrixError:
    return RangeNotSatisfiable(size)


def thumbnail_size(width: int, height: int, method: str) -> tuple[int, int, str]:
    """The thumbnail to produce for a request: the smallest standard size at least as large, with
    the method asked for where one exists; requests beyond every standard size are made as asked."""
    if method not in ("crop", "scale"):
        raise MatrixError(400, Codes.INVALID_PARAM, "method must be crop or scale")
    if not (1 <= width <= MAX_THUMBNAIL_DIMENSION and 1 <= height <= MAX_THUMBNAIL_DIMENSION):
        raise MatrixError(400, Codes.INVALID_PARAM, f"width and height must be between 1 and {MAX_THUMBNAIL_DIMENSION}")
    fits = [s for s in STANDARD_THUMBNAILS if s[0] >= width and s[1] >= height]
    same = [s for s in fits if s[2] == method]
    if same:
        return same[0]
    if fits and method == "scale":
        w, h, _ = fits[0]
        return w, h, "scale"
    return width, height, method
