"""Room creation and membership: presets, invites, joins, leaves, kicks, bans, knocks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from paigham.config import Config
from paigham.domain.room_versions import RoomVersion, get_room_version
from paigham.domain.rtc import CALL_MEMBER
from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.ids import check_alias, check_room_id, is_valid_user_id, random_string
from paigham.services.writer import EventSpec, EventWriter, Txn
from paigham.storage.accounts import AccountStore
from paigham.storage.aliases import AliasStore
from paigham.storage.events import EventStore
from paigham.types import JsonDict

MEGOLM = "m.megolm.v1.aes-sha2"
PRESETS = ("private_chat", "public_chat", "trusted_private_chat")
MAX_INVITES = 100
MAX_INITIAL_STATE = 100
MEMBERSHIPS = ("join", "invite", "leave", "ban", "knock")


@dataclass
class CreateRoomRequest:
    creator: str
    visibility: str = "private"
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: list[str] = field(default_factory=list)
    room_version: str | None = None
    creation_content: dict[str, Any] = field(default_factory=dict)
    initial_state: list[dict[str, Any]] = field(default_factory=list)
    preset: str | None = None
    is_direct: bool = False
    power_level_content_override: dict[str, Any] | None = None


def default_power_levels(creator: str, version: RoomVersion, preset: str, invitees: list[str]) -> dict[str, Any]:
    users: dict[str, int] = {} if version.creators_have_infinite_power else {creator: 100}
    if preset == "trusted_private_chat":
        for u in invitees:
            users[u] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
            "m.room.topic": 50,
            "m.room.pinned_events": 50,
            # Joining a call is a state event every member sends (MatrixRTC, matrix-js-sdk's
            # MembershipManager); Element and Synapse give it level 0 as well.
            CALL_MEMBER: 0,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == "public_chat" else 0,
        "historical": 100,
        "notifications": {"room": 50},
    }


class RoomService:
    def __init__(
        self,
        config: Config,
        writer: EventWriter,
        events: EventStore,
        accounts: AccountStore,
        aliases: AliasStore,
        *,
        creation_hooks: Sequence[Callable[[CreateRoomRequest], Awaitable[None]]] = (),
    ) -> None:
        self.config = config
        self.writer = writer
        self.events = events
        self.accounts = accounts
        self.aliases = aliases
        # Policies may adjust a room before it is created (e.g. require encryption).
        self.creation_hooks = tuple(creation_hooks)

    # -- creation -------------------------------------------------------------------------------
    async def create_room(self, req: CreateRoomRequest) -> str:
        for ev in req.initial_state:  # malformed entries are a 400 before any creation hook reads them
            _initial_state_spec(req.creator, ev)
        for hook in self.creation_hooks:
            await hook(req)
        version = get_room_version(req.room_version or self.config.default_room_version)
        if version is None:
            raise MatrixError(400, Codes.UNSUPPORTED_ROOM_VERSION, "Unsupported room version")
        if req.visibility not in ("public", "private"):
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be public or private")
        preset = req.preset or ("public_chat" if req.visibility == "public" else "private_chat")
        if preset not in PRESETS:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown preset {preset!r}")
        if len(req.invite) > MAX_INVITES or len(req.initial_state) > MAX_INITIAL_STATE:
            raise MatrixError(400, Codes.INVALID_PARAM, "Too many invites or initial state events")
        for u in req.invite:
            if not is_valid_user_id(u):
                raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid user ID {u!r}"[:200])
        alias = await self._new_alias(req.room_alias_name)
        specs = await self._creation_events(req, version, preset, alias)
        room_id = None if version.room_id_is_create_hash else f"!{random_string(18)}:{self.config.server_name}"
        room_id, _ = await self.writer.create_room(
            version, specs, is_public=req.visibility == "public", room_id=room_id
        )
        if alias is not None:
            await self.aliases.create(alias, room_id, req.creator)
        return room_id

    async def _new_alias(self, name: str | None) -> str | None:
        if name is None:
            return None
        alias = f"#{name}:{self.config.server_name}"
        if not name or ":" in name or any(c.isspace() for c in name) or len(alias.encode()) > 255:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room_alias_name")
        check_alias(alias)
        if await self.aliases.resolve(alias) is not None:
            raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")
        return alias

    async def _creation_events(
        self, req: CreateRoomRequest, version: RoomVersion, preset: str, alias: str | None
    ) -> list[EventSpec]:
        me = req.creator
        create_content = {k: v for k, v in req.creation_content.items() if k != "creator"}
        create_content["room_version"] = version.identifier
        if not version.creator_removed_from_create:
            create_content["creator"] = me
        specs = [EventSpec(me, "m.room.create", create_content, "")]
        specs.append(EventSpec(me, "m.room.member", await self.member_content(me, "join"), me))
        pl = default_power_levels(me, version, preset, req.invite)
        if req.power_level_content_override:
            pl.update(req.power_level_content_override)
        specs.append(EventSpec(me, "m.room.power_levels", pl, ""))
        if alias is not None:
            specs.append(EventSpec(me, "m.room.canonical_alias", {"alias": alias}, ""))
        # Validated first: a malformed entry (e.g. a non-string type) is a 400, not an unhashable key below.
        initial = [_initial_state_spec(me, ev) for ev in req.initial_state]
        given = {(spec.type, spec.state_key) for spec in initial}
        join_rule = "public" if preset == "public_chat" else "invite"
        for type_, content in (
            ("m.room.join_rules", {"join_rule": join_rule}),
            ("m.room.history_visibility", {"history_visibility": "shared"}),
            ("m.room.guest_access", {"guest_access": "forbidden" if preset == "public_chat" else "can_join"}),
        ):
            if (type_, "") not in given:
                specs.append(EventSpec(me, type_, content, ""))
        if self.config.encryption_by_default and preset != "public_chat" and ("m.room.encryption", "") not in given:
            specs.append(EventSpec(me, "m.room.encryption", {"algorithm": MEGOLM}, ""))
        specs.extend(initial)
        if req.name is not None:
            specs.append(EventSpec(me, "m.room.name", {"name": req.name}, ""))
        if req.topic is not None:
            specs.append(EventSpec(me, "m.room.topic", _topic_content(req.topic), ""))
        for invitee in req.invite:
            invite: dict[str, Any] = await self.member_content(invitee, "invite")
            if req.is_direct:
                invite["is_direct"] = True
            specs.append(EventSpec(me, "m.room.member", invite, invitee))
        return specs

    async def member_content(self, user_id: str, membership: str, reason: str | None = None) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership}
        user = await self.accounts.get_user(user_id)
        if user is not None and membership in ("join", "invite", "knock"):
            if user.displayname is not None:
                content["displayname"] = user.displayname
            if user.avatar_url is not None:
                content["avatar_url"] = user.avatar_url
        if reason:
            content["reason"] = reason[:1024]
        return content

    # -- events, state, and the user's rooms --------------------------------------------------
    async def send_event(self, sender: str, room_id: str, event_type: str, content: JsonDict, txn: Txn) -> str:
        """Send a non-state event (PUT /send, a delayed event firing); its ID. A redaction sent this
        way names its target in `content.redacts`."""
        redacts = None
        if event_type == "m.room.redaction":
            redacts = content.get("redacts")
            if not isinstance(redacts, str):
                raise MatrixError(400, Codes.BAD_JSON, "m.room.redaction needs content.redacts")
        return (
            await self.writer.send(room_id, EventSpec(sender, event_type, content, None, redacts=redacts), txn)
        ).event_id

    async def send_state(
        self, sender: str, room_id: str, event_type: str, state_key: str, content: JsonDict, txn: Txn | None = None
    ) -> str:
        """Send a state event; its ID. Sending the same content again as the same sender sends
        nothing and answers the current event's ID, as other servers do (membership excepted).
        `txn` makes the send idempotent (a delayed event fired twice sends once)."""
        if event_type == "m.room.member" and content.get("membership") not in MEMBERSHIPS:
            raise MatrixError(400, Codes.BAD_JSON, "Invalid membership")
        existing = await self.events.current_state_event(room_id, event_type, state_key)
        if (
            existing is not None
            and existing.sender == sender
            and existing.content == content
            and event_type != "m.room.member"
        ):
            return existing.event_id
        return (await self.writer.send(room_id, EventSpec(sender, event_type, content, state_key), txn)).event_id

    async def joined_rooms(self, user_id: str) -> list[str]:
        return sorted(await self.events.user_rooms(user_id))

    # -- membership ---------------------------------------------------------------------------
    async def resolve_room(self, room_id_or_alias: str) -> str:
        if room_id_or_alias.startswith("#"):
            check_alias(room_id_or_alias)
            room_id = await self.aliases.resolve(room_id_or_alias)
            if room_id is None:
                raise MatrixError(404, Codes.NOT_FOUND, "Room alias not found")
            return room_id
        return check_room_id(room_id_or_alias)

    async def join(self, user_id: str, room_id_or_alias: str, reason: str | None = None) -> str:
        room_id = await self.resolve_room(room_id_or_alias)
        current = await self._membership(user_id, room_id)
        if await self.events.get_room(room_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if current == "join":
            return room_id  # joining again is a no-op (profile changes go through the profile API)
        content = await self.member_content(user_id, "join", reason)
        if current != "invite":
            via = await self._restricted_authoriser(user_id, room_id)
            if via is not None:
                content["join_authorised_via_users_server"] = via
        await self.writer.send(room_id, EventSpec(user_id, "m.room.member", content, user_id))
        return room_id

    async def _restricted_authoriser(self, user_id: str, room_id: str) -> str | None:
        """For a restricted room (spec: restricted rooms) whose `allow` list the user meets — joined to
        one of the listed rooms — a local joined member who may invite, to authorise the join."""
        rules = await self.events.current_state_event(room_id, "m.room.join_rules", "")
        if rules is None or rules.content.get("join_rule") not in ("restricted", "knock_restricted"):
            return None
        allow = rules.content.get("allow")
        mine = await self.events.user_rooms(user_id)
        if not isinstance(allow, list) or not any(
            isinstance(a, dict) and a.get("type") == "m.room_membership" and a.get("room_id") in mine for a in allow
        ):
            return None
        pl = await self.events.current_state_event(room_id, "m.room.power_levels", "")
        content = pl.content if pl else {}
        needed, users = content.get("invite", 0), content.get("users", {})
        room = await self.events.get_room(room_id)
        # Who may invite: the creator (v12 creators are not in `users`), those `users` raises high
        # enough and, when the default level is enough, anyone. Looked up among those few, never by
        # reading every member of the room.
        levels = {u: lv for u, lv in users.items() if isinstance(lv, int)} if isinstance(users, dict) else {}
        default = content.get("users_default", 0)
        if not isinstance(needed, int) or not isinstance(default, int):
            needed, default = 1, 0  # (malformed levels: only the creator)
            levels = {}
        able = ([room.creator] if room is not None else []) + sorted(u for u, lv in levels.items() if lv >= needed)
        suffix = ":" + self.config.server_name
        local = [u for u in dict.fromkeys(able) if u.endswith(suffix)]
        found = await self.events.first_joined(room_id, local)
        if found is None and default >= needed:
            unable = sorted(u for u, lv in levels.items() if lv < needed)
            found = await self.events.any_joined(room_id, suffix, excluding=unable)
        return found

    async def set_membership(
        self,
        sender: str,
        room_id: str,
        target: str,
        membership: str,
        reason: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> StoredEvent:
        check_room_id(room_id)
        if not is_valid_user_id(target):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user ID")
        if membership == "invite" and await self.accounts.get_user(target) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown user")
        content = await self.member_content(target, membership, reason)
        if extra:
            content.update(extra)
        return await self.writer.send(room_id, EventSpec(sender, "m.room.member", content, target))

    # "May this membership change be sent?" beyond the auth rules: what the action needs the target's
    # current membership to be. Here rather than a writer check because kick and unban send the same
    # event (a leave by someone else) and differ only in this precondition; leave and forget may need
    # no event at all.
    async def _membership(self, user_id: str, room_id: str) -> str | None:
        current = await self.events.membership(user_id, room_id)
        return current[0] if current is not None else None

    async def _require_joined(self, sender: str, room_id: str) -> None:
        """Whoever is not in the room learns nothing about its members: the same answer for every
        target, before any precondition on the target is looked at."""
        if await self._membership(sender, room_id) != "join":
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a member of this room")

    async def kick(self, sender: str, room_id: str, target: str, reason: str | None = None) -> None:
        await self._require_joined(sender, room_id)
        if await self._membership(target, room_id) in (None, "leave", "ban"):
            raise MatrixError(403, Codes.FORBIDDEN, "The user is not in the room")
        await self.set_membership(sender, room_id, target, "leave", reason)

    async def unban(self, sender: str, room_id: str, target: str, reason: str | None = None) -> None:
        await self._require_joined(sender, room_id)
        if await self._membership(target, room_id) != "ban":
            raise MatrixError(403, Codes.FORBIDDEN, "The user is not banned")
        await self.set_membership(sender, room_id, target, "leave", reason)

    async def leave(self, user_id: str, room_id: str, reason: str | None = None) -> None:
        """Leave (or reject an invitation, withdraw a knock); no event when already gone."""
        current = await self._membership(user_id, room_id)
        if current in (None, "leave", "ban"):
            if await self.events.get_room(room_id) is None:
                raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
            if current is None:
                raise MatrixError(403, Codes.FORBIDDEN, "You are not a member of this room")
            return
        await self.set_membership(user_id, room_id, user_id, "leave", reason)

    async def forget(self, user_id: str, room_id: str) -> None:
        current = await self._membership(user_id, room_id)
        if current is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Not a member of this room")
        if current in ("join", "invite", "knock"):
            raise MatrixError(400, Codes.UNKNOWN, "Leave the room before forgetting it")
        await self.events.forget(user_id, room_id)

    async def leave_all(self, user_id: str) -> None:
        rooms = await self.events.user_rooms(user_id, ("join", "invite", "knock"))
        for room_id in rooms:
            try:
                await self.set_membership(user_id, room_id, user_id, "leave")
            except MatrixError:
                continue


def _topic_content(topic: str) -> dict[str, Any]:
    return {"topic": topic, "m.topic": {"m.text": [{"body": topic, "mimetype": "text/plain"}]}}


def _initial_state_spec(sender: str, ev: Any) -> EventSpec:
    if not isinstance(ev, dict) or not isinstance(ev.get("type"), str) or not isinstance(ev.get("content"), dict):
        raise MatrixError(400, Codes.BAD_JSON, "initial_state entries need a type and a content object")
    state_key = ev.get("state_key", "")
    if not isinstance(state_key, str):
        raise MatrixError(400, Codes.BAD_JSON, "state_key must be a string")
    if ev["type"] in ("m.room.create", "m.room.member", "m.room.power_levels"):
        raise MatrixError(400, Codes.BAD_JSON, f"{ev['type']} cannot be set in initial_state")
    return EventSpec(sender, ev["type"], ev["content"], state_key)
