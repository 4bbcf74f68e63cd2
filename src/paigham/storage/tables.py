"""Every table of every area, registered on one MetaData (Alembic's target)."""

from __future__ import annotations

from paigham.storage import (
    audit_schema,  # noqa: F401
    delayed_events_schema,  # noqa: F401
    directory_schema,  # noqa: F401
    e2ee_schema,  # noqa: F401
    media_schema,  # noqa: F401
    openid_schema,  # noqa: F401
    org_schema,  # noqa: F401
    pushers_schema,  # noqa: F401
    reports_schema,  # noqa: F401
    schema,
    sliding_sync,  # noqa: F401
)
from paigham.storage.schema import metadata

__all__ = ["metadata", "schema"]
