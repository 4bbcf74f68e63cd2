"""Tests that change a setting of a running server. `Config` is immutable in the server (it is built
once and never changed); a test that wants another value on a live server says so explicitly here."""

from __future__ import annotations

from typing import Any

import msgspec

from paigham.config import Config


def reconfigure(config: Config, **changes: Any) -> None:
    for name, value in changes.items():
        msgspec.structs.force_setattr(config, name, value)
