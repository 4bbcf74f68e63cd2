"""Matching primitives shared by filters and push rules (spec appendices).

* dot-separated property paths, with `\\.` and `\\\\` escapes;
* glob-style matching (`*`, `?`), optionally case-insensitive or on word boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=4096)
def split_dotted_path(path: str) -> tuple[str, ...]:
    """Split a dot-separated property path; `\\.` is a literal dot, `\\\\` a backslash.

    Other escape sequences are kept as-is (`\\x` is a backslash followed by `x`).
    """
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


MISSING: Any = object()
"""Sentinel returned by `lookup_path` for an absent property."""


def lookup_path(obj: Mapping[str, Any], path: str | Sequence[str]) -> Any:
    """The value at `path` in `obj`, or `MISSING` if any step is absent or not an object."""
    keys = split_dotted_path(path) if isinstance(path, str) else path
    value: Any = obj
    for key in keys:
        if not isinstance(value, Mapping):
            return MISSING
        value = value.get(key, MISSING)
        if value is MISSING:
            return MISSING
    return value


_WORD = "(?-i:[A-Za-z0-9_])"


@lru_cache(maxsize=8192)
def compile_glob(
    pattern: str,
    *,
    ignore_case: bool = False,
    single_char_wildcard: bool = False,
    word_boundary: bool = False,
) -> Callable[[str], bool]:
    """Compile a Matrix glob (`*`, and `?` if `single_char_wildcard`) into a predicate.

    Without `word_boundary` the glob must match the whole value; with it, any substring that
    starts and ends at a word boundary (push rules' `content.body` semantics). The regex commits
    to the leftmost occurrence of each `*`-separated segment (atomic groups), which is exact for
    globs and keeps matching linear instead of exponential on hostile patterns.
    """
    segments = pattern.split("*")
    if len(segments) > 2:  # "a**b" is "a*b"
        segments = [segments[0], *[s for s in segments[1:-1] if s], segments[-1]]

    def seg(text: str) -> str:
        escaped = re.escape(text)
        return escaped.replace(r"\?", ".") if single_char_wildcard else escaped

    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    if len(segments) == 1:
        if word_boundary:
            rx = re.compile(f"(?<!{_WORD}){seg(pattern)}(?!{_WORD})", flags)
            return lambda value: rx.search(value) is not None
        if not single_char_wildcard and not ignore_case:
            return pattern.__eq__
        rx = re.compile(seg(pattern), flags)
        return lambda value: rx.fullmatch(value) is not None
    first, *middle, last = segments
    body = "".join(f"(?>.*?{seg(s)})" for s in middle)
    if word_boundary:
        source = f"(?>.*?(?<!{_WORD}){seg(first)}){body}.*{seg(last)}(?!{_WORD})"
    else:
        source = f"{seg(first)}{body}.*{seg(last)}\\Z"
    rx = re.compile(source, flags)
    return lambda value: rx.match(value) is not None
