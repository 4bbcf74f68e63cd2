"""Push rules: one JSON document per user with their own rules and their changes to the server's
defaults (the effective ruleset is derived in domain/push_rules.py); a change is a stream position."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.storage.database import Database
from paigham.storage.schema import push_rules
from paigham.types import JsonDict

_decode = msgspec.json.decode


class StoredRules(NamedTuple):
    rules: JsonDict  # the user's document as stored (not the effective ruleset)
    stream: int  # where it last changed


class PushRuleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: str) -> StoredRules | None:
        row = await self.db.fetchrow("SELECT json, stream FROM push_rules WHERE user_id = $1", user_id)
        return StoredRules(_decode(row[0]), int(row[1])) if row else None

    async def of_users(self, user_ids: Sequence[str], *, conn: AsyncConnection | None = None) -> dict[str, JsonDict]:
        """user → their stored document, for those of `user_ids` who have one."""
        if not user_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT user_id, json FROM push_rules WHERE user_id = ANY($1::text[])", list(user_ids), conn=conn
        )
        return {r[0]: _decode(r[1]) for r in rows}

    async def put(self, user_id: str, rules: JsonDict) -> int:
        async with self.db.write() as conn:
            pos = await self.db.next_position(conn)
            values = {"user_id": user_id, "json": msgspec.json.encode(rules).decode(), "stream": pos}
            await conn.execute(self.db.upsert(push_rules, values, ["user_id"]))
            # Rooms the user is in now read their rules with every write (schema.memberships); the
            # position above, taken first, orders this against a membership written concurrently.
            await self.db.run(
                "UPDATE memberships SET own_push_rules = TRUE WHERE user_id = $1 AND NOT own_push_rules",
                user_id,
                conn=conn,
            )
        return pos
