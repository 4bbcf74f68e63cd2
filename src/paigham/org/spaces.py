"""A Matrix Space per unit, with an announcements room, and officials joined to their unit's.

The server's own account (`org_system_localpart`, a bot) creates and administers these rooms:

* the unit's space (`m.space`), a child of its parent unit's space (`m.space.child`/`m.space.parent`);
* the unit's announcements room, a child of the space; officials may read, only moderators post.

Both use the `restricted` join rule, each allowing members of the other: the server joins active
officials itself (one `join` event per room, authorised by the bot — no invitation needed), and an
official who left one of them can join it again from their client. Memberships are reconciled in
bulk (one transaction per room) after every import: new officials join, officials who moved unit
leave their old unit's rooms and join the new ones. Rooms created by the server are not end-to-end
encrypted (the server posts announcements in them) unless `org_encrypt_unit_rooms` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from paigham.config import Config
from paigham.domain.org import Unit, pick
from paigham.errors import Codes, MatrixError
from paigham.i18n import translate
from paigham.ids import make_user_id
from paigham.messages import N_
from paigham.services.auth import AuthService
from paigham.services.rooms import MEGOLM, CreateRoomRequest, RoomService
from paigham.services.writer import EventSpec
from paigham.storage.events import EventStore
from paigham.storage.org import OrgStore, UnitRow

log = structlog.get_logger(__name__)
Progress = Callable[[str, int, int], None]
BATCH = 2000  # membership events per transaction
SPACE_PL = {"events_default": 100, "state_default": 100, "invite": 100, "kick": 100, "ban": 100, "redact": 100}
ROOM_PL = {"events_default": 50, "state_default": 100, "invite": 100, "kick": 100, "ban": 100, "redact": 50}


def system_user_id(config: Config) -> str:
    """The server's own account, which creates and administers the unit rooms."""
    return make_user_id(config.org_system_localpart, config.server_name)


def _restricted(allow: list[str]) -> dict[str, Any]:
    return {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": r} for r in allow]}


class SystemAccountTaken(MatrixError):
    def __init__(self, user_id: str) -> None:
        super().__init__(
            409,
            Codes.EXCLUSIVE,
            f"{user_id} exists and was not created by the server, so it cannot be the system account that "
            "owns unit rooms and sends notices: deactivate or rename it (paigham user deactivate), or set "
            "org_system_localpart to a free name",
        )


class UnitSpaces:
    def __init__(
        self, config: Config, store: OrgStore, rooms: RoomService, events: EventStore, auth: AuthService
    ) -> None:
        self.config = config
        self.store = store
        self.rooms = rooms
        self.writer = rooms.writer
        self.events = events
        self.auth = auth
        self.system_user = system_user_id(config)
        self.lang = config.org_default_language

    async def ensure_system_user(self) -> str:
        """The server's own account (creator of unit rooms, sender of notices), created on first use.
        An account of that name that the server did not create is never adopted: it would own every
        unit room. Such a name was registered before it was reserved; the server refuses to go on."""
        if await self.auth.store.get_user(self.system_user) is None:
            await self.auth.create_user(self.config.org_system_localpart, None, displayname="Paigham", system=True)
        else:
            await self.check_system_account()
        return self.system_user

    async def check_system_account(self) -> None:
        """At start and before use: an existing account of the system name must be the server's own."""
        exists = await self.auth.store.get_user(self.system_user) is not None
        if exists and await self.auth.store.user_type(self.system_user) != "bot":
            raise SystemAccountTaken(self.system_user)

    # -- rooms ------------------------------------------------------------------------------------
    def _names(self, unit: Unit) -> tuple[str, str]:
        name = pick(unit.names, self.lang)[:200]
        return name, translate(N_("{unit} — Announcements", unit=name), self.lang)[:255]

    async def _create(self, unit: Unit, parent_space: str | None) -> tuple[str, str]:
        bot = self.system_user
        space_name, room_name = self._names(unit)
        state: list[dict[str, Any]] = [{"type": "m.room.join_rules", "content": _restricted([])}]
        if parent_space:
            state.append(
                {
                    "type": "m.space.parent",
                    "state_key": parent_space,
                    "content": {"via": [self.config.server_name], "canonical": True},
                }
            )
        space = await self.rooms.create_room(
            CreateRoomRequest(
                creator=bot,
                name=space_name,
                preset="public_chat",
                creation_content={"type": "m.space"},
                initial_state=state,
                power_level_content_override={**SPACE_PL, "users": {bot: 100}},
            )
        )
        room_state: list[dict[str, Any]] = [
            {"type": "m.room.join_rules", "content": _restricted([space])},
            {
                "type": "m.space.parent",
                "state_key": space,
                "content": {"via": [self.config.server_name], "canonical": True},
            },
        ]
        if self.config.org_encrypt_unit_rooms:
            room_state.append({"type": "m.room.encryption", "content": {"algorithm": MEGOLM}})
        room = await self.rooms.create_room(
            CreateRoomRequest(
                creator=bot,
                name=room_name,
                preset="public_chat",
                initial_state=room_state,
                power_level_content_override={**ROOM_PL, "users": {bot: 100}},
            )
        )
        via = {"via": [self.config.server_name]}
        await self.writer.send_many(
            space,
            [
                EventSpec(bot, "m.space.child", {**via, "order": "0"}, room),
                EventSpec(bot, "m.room.join_rules", _restricted([room]), ""),
            ],
        )
        if parent_space:
            await self.writer.send_many(
                parent_space, [EventSpec(bot, "m.space.child", {**via, "order": unit.unit_id[:50]}, space)]
            )
        await self.store.set_unit_rooms(unit.unit_id, space, room)
        return space, room

    async def _update(self, row: UnitRow, parent_space: str | None) -> None:
        """Names follow the unit; a moved unit's space moves under its new parent's space."""
        assert row.space_id is not None and row.announcements_id is not None
        bot, via = self.system_user, [self.config.server_name]
        space_name, room_name = self._names(row.unit)
        for room_id, name in ((row.space_id, space_name), (row.announcements_id, room_name)):
            current = await self.events.current_state_event(room_id, "m.room.name", "")
            if current is None or current.content.get("name") != name:
                await self.writer.send_many(room_id, [EventSpec(bot, "m.room.name", {"name": name}, "")])
        parents = await self.events.current_state(row.space_id, ["m.space.parent"])
        old = [e.state_key for e in parents if e.content.get("via") and e.state_key]
        if old == ([parent_space] if parent_space else []):
            return
        specs = [EventSpec(bot, "m.space.parent", {}, p) for p in old if p != parent_space]
        if parent_space and parent_space not in old:
            specs.append(EventSpec(bot, "m.space.parent", {"via": via, "canonical": True}, parent_space))
        await self.writer.send_many(row.space_id, specs)
        for p in old:
            if p != parent_space:
                await self._try_send(p, [EventSpec(bot, "m.space.child", {}, row.space_id)])
        if parent_space and parent_space not in old:
            await self._try_send(
                parent_space,
                [EventSpec(bot, "m.space.child", {"via": via, "order": row.unit.unit_id[:50]}, row.space_id)],
            )

    async def _try_send(self, room_id: str, specs: list[EventSpec]) -> None:
        try:
            await self.writer.send_many(room_id, specs)
        except MatrixError as exc:
            log.warning("org.space_link_failed", room_id=room_id, error=exc.error)

    async def announce(self, unit_id: str, body: str, actor: str | None) -> str:
        """Post a message from the server's account in a unit's announcements room."""
        row = await self.store.unit(unit_id)
        if row is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unit not found")
        if row.announcements_id is None:
            raise MatrixError(400, Codes.INVALID_PARAM, "The unit has no announcements room yet (run paigham org sync)")
        if self.config.org_encrypt_unit_rooms:
            raise MatrixError(
                400,
                Codes.INVALID_PARAM,
                "Announcement rooms are end-to-end encrypted "
                "(org_encrypt_unit_rooms): post announcements from a client",
            )
        event = await self.writer.send(
            row.announcements_id, EventSpec(self.system_user, "m.room.message", {"msgtype": "m.text", "body": body})
        )
        return event.event_id

    async def unit_deleted(self, row: UnitRow) -> None:
        """OrgService hook: the deleted unit's space leaves its parent's space."""
        if row.space_id is None:
            return
        for e in await self.events.current_state(row.space_id, ["m.space.parent"]):
            if e.state_key:
                await self._try_send(e.state_key, [EventSpec(self.system_user, "m.space.child", {}, row.space_id)])

    # -- reconciliation ---------------------------------------------------------------------------
    async def reconcile(self, _applied: Any = None, progress: Progress | None = None) -> dict[str, int]:
        """Bring every unit's rooms and memberships in line with the organisation (idempotent)."""
        await self.ensure_system_user()
        units = await self.store.units()
        ordered = _tree_order(units)
        spaces: dict[str, str] = {}
        created = 0
        for i, uid in enumerate(ordered):
            row = units[uid]
            parent = row.unit.parent_id
            parent_space = spaces.get(parent) if parent else None
            if row.space_id is None or row.announcements_id is None:
                space, room = await self._create(row.unit, parent_space)
                units[uid] = UnitRow(row.unit, space, room)
                created += 1
            else:
                await self._update(row, parent_space)
            spaces[uid] = units[uid].space_id  # type: ignore[assignment]
            if progress:
                progress("unit spaces", i + 1, len(ordered))
        joined, left = await self._memberships(units, progress)
        return {"units_created": created, "joined": joined, "left": left}

    async def _memberships(self, units: dict[str, UnitRow], progress: Progress | None) -> tuple[int, int]:
        """A unit at a time: its active officials join its rooms, officials of other units leave them."""
        joined = left = 0
        for i, (uid, unit_row) in enumerate(sorted(units.items())):
            members = await self.store.unit_members(uid)
            names = dict(members)
            for room_id in (unit_row.space_id, unit_row.announcements_id):
                if room_id is None:
                    continue
                current = set(await self.events.room_members(room_id))
                unit_of = await self.store.units_of(sorted(current))
                leaving = sorted(u for u, unit in unit_of.items() if unit != uid)
                joining = sorted(names.keys() - current)
                specs = [EventSpec(u, "m.room.member", {"membership": "leave"}, u) for u in leaving]
                for u in joining:
                    content: dict[str, Any] = {
                        "membership": "join",
                        "join_authorised_via_users_server": self.system_user,
                    }
                    if names[u] is not None:
                        content["displayname"] = names[u]
                    specs.append(EventSpec(u, "m.room.member", content, u))
                for start in range(0, len(specs), BATCH):
                    await self.writer.send_many(room_id, specs[start : start + BATCH])
                joined, left = joined + len(joining), left + len(leaving)
                if room_id == unit_row.space_id and joining:
                    await self.store.set_joined_unit(joining, uid)
            if progress:
                progress("memberships", i + 1, len(units))
        return joined, left


def _tree_order(units: dict[str, UnitRow]) -> list[str]:
    """Parents before children (units whose parent is missing count as top level)."""
    children: dict[str | None, list[str]] = {}
    for uid, row in units.items():
        parent = row.unit.parent_id if row.unit.parent_id in units else None
        children.setdefault(parent, []).append(uid)
    out: list[str] = []
    stack = sorted(children.get(None, []), reverse=True)
    while stack:
        uid = stack.pop()
        out.append(uid)
        stack.extend(sorted(children.get(uid, []), reverse=True))
    return out
