"""What the server keeps about itself in its database (`server_state`, key → text): its name, so that
every process and every command works for the same server as the data."""

from __future__ import annotations

from sqlalchemy import select

from paigham.storage.database import Database
from paigham.storage.schema import server_keys as server_state
from paigham.storage.schema import users


class ServerStateStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> str | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(server_state.c.value).where(server_state.c.key == key))).first()
        return None if row is None else str(row[0])

    async def put_once(self, key: str, value: str) -> str:
        """Store `value` unless the key has one already; returns what is stored now."""
        async with self.db.write() as conn:
            await conn.execute(self.db.insert_ignore(server_state, {"key": key, "value": value}, ["key"]))
            row = (await conn.execute(select(server_state.c.value).where(server_state.c.key == key))).first()
        assert row is not None
        return str(row[0])

    async def any_user_id(self) -> str | None:
        """One account's user ID, if there is any (the server name of data older than the stored name)."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(users.c.user_id).limit(1))).first()
        return None if row is None else str(row[0])
