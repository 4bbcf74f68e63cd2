"""Room tags (spec "Room Tagging"): a user's tags of a room, kept as the room's `m.tag` account data
(so /sync delivers them with the rest of the room's account data); at most MAX_TAGS per room."""

from __future__ import annotations

from paigham.errors import Codes, MatrixError
from paigham.services.ephemeral import EphemeralService
from paigham.storage.account_data import AccountDataStore
from paigham.types import JsonDict

MAX_TAGS = 100
MAX_TAG_BYTES = 255
TAG_TYPE = "m.tag"


class TagService:
    def __init__(self, store: AccountDataStore, account_data: EphemeralService) -> None:
        self.store = store
        self.account_data = account_data  # writes go through it: its checks, its stream update

    async def tags(self, user_id: str, room_id: str) -> JsonDict:
        """The room's tags: name → content (e.g. {"order": 0.5}); empty when there are none."""
        current = await self.store.get(user_id, room_id, TAG_TYPE)
        tags = (current or {}).get("tags")
        return dict(tags) if isinstance(tags, dict) else {}

    async def put(self, user_id: str, room_id: str, tag: str, content: JsonDict) -> None:
        if not tag or len(tag.encode()) > MAX_TAG_BYTES:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid tag")
        if "order" in content and not isinstance(content["order"], int | float):
            raise MatrixError(400, Codes.BAD_JSON, "order must be a number")
        tags = await self.tags(user_id, room_id)
        if tag not in tags and len(tags) >= MAX_TAGS:
            raise MatrixError(400, Codes.INVALID_PARAM, "Too many tags")
        tags[tag] = content
        await self.account_data.account_data(user_id, room_id, TAG_TYPE, {"tags": tags})

    async def delete(self, user_id: str, room_id: str, tag: str) -> None:
        """Remove the tag (removing one that is not there changes nothing but is no error)."""
        tags = await self.tags(user_id, room_id)
        tags.pop(tag, None)
        await self.account_data.account_data(user_id, room_id, TAG_TYPE, {"tags": tags})
