"""The room directory (spec "Room aliases", "Room directory"): aliases, whether a room is listed,
and the public room list with its search and pagination.

Who may do what: any joined member may add an alias of this server; its creator, a server admin or
anyone allowed to send `m.room.canonical_alias` may delete it or list and unlist the room. The
public list is every listed room's summary, most members first; `since` tokens are offsets.
"""

from __future__ import annotations

from paigham.domain.power_levels import event_level, user_level
from paigham.domain.room_versions import get_room_version
from paigham.errors import Codes, MatrixError
from paigham.ids import check_alias, check_room_id
from paigham.requester import Requester
from paigham.services import room_summary
from paigham.storage.aliases import AliasStore
from paigham.storage.events import EventStore
from paigham.types import JsonDict

VISIBILITIES = ("public", "private")
MAX_SINCE_DIGITS = 9


class RoomDirectoryService:
    def __init__(self, server_name: str, events: EventStore, aliases: AliasStore) -> None:
        self.server_name = server_name
        self.events = events
        self.aliases = aliases

    # -- aliases ----------------------------------------------------------------------------------
    async def resolve(self, alias: str) -> JsonDict:
        """The room an alias names and the servers to join it through."""
        check_alias(alias)
        room_id = await self.aliases.resolve(alias)
        if room_id is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found")
        return {"room_id": room_id, "servers": [self.server_name]}

    def local_alias(self, alias: str) -> str:
        """A well-formed alias of this server (the only ones it creates), else 400."""
        _, server = check_alias(alias)
        if server != self.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Aliases must be on this server")
        return alias

    async def create_alias(self, user_id: str, alias: str, room_id: str) -> None:
        self.local_alias(alias)
        check_room_id(room_id)
        if not await self._joined(user_id, room_id):
            raise MatrixError(403, Codes.FORBIDDEN, "You must be joined to the room to alias it")
        if not await self.aliases.create(alias, room_id, user_id):
            raise MatrixError(409, Codes.UNKNOWN, "Room alias already exists")

    async def delete_alias(self, requester: Requester, alias: str) -> None:
        check_alias(alias)
        found = await self.aliases.get(alias)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found")
        room_id, creator = found
        if creator != requester.user_id and not await self._may_edit(requester, room_id):
            raise MatrixError(403, Codes.FORBIDDEN, "You may not delete this alias")
        await self.aliases.delete(alias)

    async def room_aliases(self, user_id: str, room_id: str) -> list[str]:
        """The room's local aliases, for its joined members."""
        if not await self._joined(user_id, room_id):
            raise MatrixError(403, Codes.FORBIDDEN, "You are not joined to this room")
        return await self.aliases.for_room(room_id)

    # -- listing ----------------------------------------------------------------------------------
    async def visibility(self, room_id: str) -> str:
        room = await self.events.get_room(room_id)
        if room is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        return "public" if room.is_public else "private"

    async def set_visibility(self, requester: Requester, room_id: str, visibility: str) -> None:
        if visibility not in VISIBILITIES:
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be public or private")
        if await self.events.get_room(room_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if not await self._may_edit(requester, room_id):
            raise MatrixError(403, Codes.FORBIDDEN, "You may not change this room's visibility")
        await self.events.set_room_public(room_id, visibility == "public")

    async def public_rooms(
        self, limit: int, since: str | None, term: str | None, room_types: frozenset[str | None] | None = None
    ) -> JsonDict:
        """A page of the listed rooms (matching `term` in name, topic or alias, and of one of
        `room_types` — None: a room without a type), most members first."""
        if since and not (since.isascii() and since.isdigit() and len(since) <= MAX_SINCE_DIGITS):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid since token")
        entries = [await room_summary.summarise(self.events, r) for r in await self.events.public_rooms()]
        if term:
            entries = [e for e in entries if _matches(e, term.lower())]
        if room_types is not None:
            entries = [e for e in entries if e.get("room_type") in room_types]
        entries.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
        start = int(since) if since else 0
        out: JsonDict = {"chunk": entries[start : start + limit], "total_room_count_estimate": len(entries)}
        if start + limit < len(entries):
            out["next_batch"] = str(start + limit)
        if start > 0:
            out["prev_batch"] = str(max(0, start - limit))
        return out

    # -- rules ------------------------------------------------------------------------------------
    async def _joined(self, user_id: str, room_id: str) -> bool:
        m = await self.events.membership(user_id, room_id)
        return m is not None and m[0] == "join"

    async def _may_edit(self, requester: Requester, room_id: str) -> bool:
        """Server admins, and members whose power level lets them send `m.room.canonical_alias`."""
        return requester.is_admin or await self._can_send_state(requester.user_id, room_id, "m.room.canonical_alias")

    async def _can_send_state(self, user_id: str, room_id: str, event_type: str) -> bool:
        room = await self.events.get_room(room_id)
        version = get_room_version(room.room_version) if room else None
        if room is None or version is None:
            return False
        state = {
            (e.type, e.state_key): e
            for e in await self.events.current_state(room_id, ["m.room.create", "m.room.power_levels"])
        }
        pl = state.get(("m.room.power_levels", ""))
        create = state[("m.room.create", "")]
        pl_content = pl.content if pl else None
        return user_level(user_id, pl_content, create.pdu, version) >= event_level(event_type, True, pl_content)


def _matches(entry: JsonDict, term: str) -> bool:
    return any(term in (entry.get(field) or "").lower() for field in ("name", "topic", "canonical_alias"))
