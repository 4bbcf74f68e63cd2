"""Account data: a user's JSON documents by (room or "" for global, type), each change a stream
position (tags and m.fully_read are account data too)."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from paigham.storage.database import Database
from paigham.storage.schema import account_data
from paigham.types import JsonDict

_decode = msgspec.json.decode


class AccountData(NamedTuple):
    room_id: str  # "" for global account data
    type: str
    content: JsonDict


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, user_id: str, room_id: str, type_: str, content: JsonDict) -> int:
        async with self.db.write() as conn:
            pos = await self.db.next_position(conn)
            values = {
                "user_id": user_id,
                "room_id": room_id,
                "type": type_,
                "content": msgspec.json.encode(content).decode(),
                "stream": pos,
            }
            await conn.execute(self.db.upsert(account_data, values, ["user_id", "room_id", "type"]))
        return pos

    async def get(self, user_id: str, room_id: str, type_: str) -> JsonDict | None:
        row = await self.db.fetchrow(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
            user_id,
            room_id,
            type_,
        )
        return _decode(row[0]) if row else None

    async def since(self, user_id: str, after: int | None, upto: int) -> list[AccountData]:
        """What changed in (after, upto]; everything when after is None."""
        rows = await self.db.fetch(
            "SELECT room_id, type, content FROM account_data WHERE user_id = $1 AND stream > $2 AND stream <= $3",
            user_id,
            -1 if after is None else after,
            upto,
        )
        return [AccountData(r[0], r[1], _decode(r[2])) for r in rows]
