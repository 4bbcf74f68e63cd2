"""Server notices: messages from the server to one user (account suspended, renewed, …), written in
that user's language, in a room the server's account keeps with them (tagged `m.server_notice`).

A user's language is, in order: their own choice (account data `org.paigham.language`, e.g.
{"language": "hi"}, which any client can set), the `language` of their entry in the directory,
then the organisation's default language.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from paigham.config import Config
from paigham.i18n import LANGUAGES, translate
from paigham.messages import N_
from paigham.services.rooms import CreateRoomRequest, RoomService
from paigham.services.writer import EventSpec
from paigham.storage.account_data import AccountDataStore
from paigham.storage.org import OrgStore

LANGUAGE_TYPE = "org.paigham.language"


class ServerNotices:
    def __init__(
        self,
        config: Config,
        rooms: RoomService,
        account_data: AccountDataStore,
        org: OrgStore,
        system_user: Callable[[], Awaitable[str]],
    ) -> None:
        self.config = config
        self.rooms = rooms
        self.account_data = account_data
        self.org = org
        self.ensure_system_user = system_user
        self.system_user = ""

    async def language_of(self, user_id: str) -> str:
        chosen = await self.account_data.get(user_id, "", LANGUAGE_TYPE)
        lang = chosen.get("language") if isinstance(chosen, dict) else None
        if isinstance(lang, str) and lang.lower().split("-")[0] in LANGUAGES:
            return lang.lower().split("-")[0]
        row = await self.org.official_by_user(user_id)
        if row is not None and row.official.language and row.official.language.split("-")[0] in LANGUAGES:
            return row.official.language.split("-")[0]
        return self.config.org_default_language

    async def _room(self, user_id: str, lang: str) -> str:
        existing = await self.org.notice_room(user_id)
        if existing is not None:
            membership = await self.rooms.events.membership(user_id, existing)
            if membership is not None and membership.membership == "join":
                return existing
        # Not end-to-end encrypted: the server writes these messages itself.
        room_id = await self.rooms.create_room(
            CreateRoomRequest(
                creator=self.system_user,
                name=translate(N_("Server notices"), lang),
                preset="public_chat",
                initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "invite"}}],
                invite=[user_id],
                power_level_content_override={"events_default": 100, "invite": 100, "users": {self.system_user: 100}},
            )
        )
        await self.rooms.writer.send_many(
            room_id, [EventSpec(user_id, "m.room.member", await self.rooms.member_content(user_id, "join"), user_id)]
        )
        await self.account_data.put(user_id, room_id, "m.tag", {"tags": {"m.server_notice": {"order": 0}}})
        await self.org.set_notice_room(user_id, room_id)
        return room_id

    async def send(self, user_id: str, message: str, content: dict[str, Any] | None = None) -> str:
        """Send a notice (a marked message is translated into the user's language); returns the event ID."""
        self.system_user = await self.ensure_system_user()
        lang = await self.language_of(user_id)
        room_id = await self._room(user_id, lang)
        body = content or {"msgtype": "m.notice", "body": translate(message, lang)}
        event = await self.rooms.writer.send(room_id, EventSpec(self.system_user, "m.room.message", body))
        return event.event_id
