"""Paigham: a sovereign, self-hosted, end-to-end encrypted Matrix homeserver."""

import importlib.util
import sys

__version__ = "0.1.0"


def _load_structlog_without_rich() -> None:
    """structlog imports rich (and rich's pygments) when it is installed, for a console renderer Paigham
    does not use (its logs are JSON lines): ~4 MB of resident memory in every server process. rich is
    installed for the command line (typer's help, progress bars), so it is hidden only while structlog
    loads; imported later, it loads as usual."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    if importlib.util.find_spec("structlog") is None:  # bench/ reads paigham.org.sample without the dependencies
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # (an import of it raises ImportError meanwhile)
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_load_structlog_without_rich()
