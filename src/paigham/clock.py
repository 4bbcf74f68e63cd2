"""Time, in one place so tests can reason about it."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
