"""Regenerate migrations/versions/0001_initial.py from the table definitions.

Only while Paigham has no deployed databases: after the first release, schema changes get new
revisions (`alembic revision --autogenerate`) and 0001 is frozen.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from paigham.storage.migrate import MIGRATIONS, alembic_config

target = MIGRATIONS / "versions" / "0001_initial.py"
target.unlink(missing_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    engine = create_engine(f"sqlite:///{Path(tmp) / 'empty.db'}")
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
generated = next((MIGRATIONS / "versions").glob("0001_*.py"))
generated.rename(target)
print(f"wrote {target}")
