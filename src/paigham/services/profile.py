"""Profiles (display name, avatar) and the user directory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from paigham.errors import Codes, MatrixError
from paigham.services.rooms import RoomService
from paigham.services.writer import EventSpec
from paigham.storage.accounts import AccountStore
from paigham.storage.events import EventStore
from paigham.types import JsonDict

FIELDS = {"displayname": 256, "avatar_url": 1024}


ExtraFields = Callable[[str], Awaitable[JsonDict]]
Guard = Callable[[str, str], Awaitable[None]]
DirectorySearch = Callable[[str, str, int], Awaitable[tuple[list[JsonDict], bool]]]


class ProfileService:
    def __init__(
        self,
        accounts: AccountStore,
        events: EventStore,
        rooms: RoomService,
        *,
        directory: DirectorySearch | None = None,
        extra_fields: Sequence[ExtraFields] = (),
        guards: Sequence[Guard] = (),
    ) -> None:
        self.accounts = accounts
        self.events = events
        self.rooms = rooms
        # Other areas extend profiles: the user directory's search (instead of a search of all
        # accounts), extra (extended) fields, and checks before a change (in this order).
        self.directory = directory
        self.extra_fields = tuple(extra_fields)
        self.guards = tuple(guards)

    async def get(self, user_id: str) -> dict[str, Any]:
        user = await self.accounts.get_user(user_id)
        if user is None or user.deactivated:
            raise MatrixError(404, Codes.NOT_FOUND, "Profile not found")
        out: dict[str, Any] = {}
        if user.displayname is not None:
            out["displayname"] = user.displayname
        if user.avatar_url is not None:
            out["avatar_url"] = user.avatar_url
        for extra in self.extra_fields:
            for k, v in (await extra(user_id)).items():
                out.setdefault(k, v)
        return out

    async def set(self, user_id: str, key: str, value: Any, *, check: bool = True) -> None:
        """Change a field; `check=False` for the server's own changes (admin, organisation)."""
        if check:
            for guard in self.guards:
                await guard(user_id, key)
        if key not in FIELDS:
            raise MatrixError(400, Codes.UNRECOGNIZED, f"Profile field {key!r} is not supported"[:200])
        if value is not None and (not isinstance(value, str) or len(value) > FIELDS[key]):
            raise MatrixError(400, Codes.BAD_JSON, f"{key} must be a string of at most {FIELDS[key]} characters")
        if key == "avatar_url" and value and not value.startswith("mxc://"):
            raise MatrixError(400, Codes.BAD_JSON, "avatar_url must be an mxc:// URI")
        if await self.accounts.get_user(user_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown user")
        await self.accounts.update_user(user_id, **{key: value})
        # Spec: the new profile is propagated to the user's membership in every joined room.
        for room_id in await self.events.user_rooms(user_id):
            content = await self.rooms.member_content(user_id, "join")
            try:
                await self.rooms.writer.send(room_id, EventSpec(user_id, "m.room.member", content, user_id))
            except MatrixError:
                continue

    async def search(self, searcher: str, term: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        term = term.strip()
        if not term:
            return [], False
        if self.directory is not None:
            return await self.directory(searcher, term, limit)
        found = await self.accounts.search_users(term, limit + 1)
        results = []
        for u in found[:limit]:
            entry: dict[str, Any] = {"user_id": u.user_id}
            if u.displayname is not None:
                entry["display_name"] = u.displayname
            if u.avatar_url is not None:
                entry["avatar_url"] = u.avatar_url
            results.append(entry)
        return results, len(found) > limit
