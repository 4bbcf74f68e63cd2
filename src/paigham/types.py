"""Shared type aliases (a leaf module): what JSON looks like once decoded."""

from __future__ import annotations

from typing import Any, TypeAlias

# A decoded JSON object. Values stay `Any`: Matrix content is open-ended and checked where it is read.
JsonDict: TypeAlias = dict[str, Any]
JsonList: TypeAlias = list[Any]
