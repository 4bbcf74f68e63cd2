"""Event authorisation rules for room versions 10, 11 and 12, as small pure functions.

``check_auth(event, auth_state, version)`` applies the room version's rules to one PDU against a
map of state (the event's auth events, the state before it, or the current state: the same rules
serve all three checks and state resolution). It raises :class:`paigham.errors.AuthError` with a
readable reason when the event is not allowed.

What the caller must do itself (these need more than the event and a state map):

* verify signatures, including the signature of the server of
  ``content.join_authorised_via_users_server`` on restricted joins;
* verify that a restricted join's user satisfies the ``allow`` list of the join rules (the rules
  here only require that the authorising user is joined and may invite);
* check that auth events were not themselves rejected, and for room v12 that the create event is
  accepted; :func:`check_auth_events` covers the rest of the "auth_events" rules for a PDU whose
  auth events are known.

For room v12 the create event is not among ``auth_events``, but ``auth_state`` must still hold it
under ``("m.room.create", "")``. Third-party invites are checked in full, including the
ed25519 signatures of their ``signed`` block against the ``m.room.third_party_invite`` keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paigham.domain import power_levels as pl
from paigham.domain.events import compute_event_id, compute_v12_room_id, create_event_id_for_room
from paigham.domain.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from paigham.domain.signing import verify_json_any_key
from paigham.errors import AuthError

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, Mapping[str, Any]]

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
CREATE_KEY: StateKey = (CREATE, "")


def _content(event: Mapping[str, Any] | None) -> Mapping[str, Any]:
    content = event.get("content") if event is not None else None
    return content if isinstance(content, Mapping) else {}


def _domain(identifier: object) -> str | None:
    if not isinstance(identifier, str):
        return None
    _, sep, domain = identifier.partition(":")
    return domain if sep else None


# -- auth events selection ------------------------------------------------------------------------


def auth_types_for_event(
    event_type: str, state_key: str | None, sender: str, content: Mapping[str, Any], version: RoomVersion
) -> list[StateKey]:
    """The ``(type, state_key)`` pairs of the state an event's ``auth_events`` must cite (server-server
    API, "Auth events selection"). Empty for ``m.room.create``; the create event is included only
    when the room version puts it in ``auth_events`` (not in room v12)."""
    if event_type == CREATE:
        return []
    keys: list[StateKey] = []
    if version.create_event_in_auth_events:
        keys.append(CREATE_KEY)
    keys += [(POWER_LEVELS, ""), (MEMBER, sender)]
    if event_type == MEMBER:
        membership = content.get("membership")
        if isinstance(state_key, str):
            keys.append((MEMBER, state_key))
        if membership in ("join", "invite", "knock"):
            keys.append((JOIN_RULES, ""))
        invite = content.get("third_party_invite")
        if membership == "invite" and isinstance(invite, Mapping):
            signed = invite.get("signed")
            token = signed.get("token") if isinstance(signed, Mapping) else None
            if isinstance(token, str):
                keys.append((THIRD_PARTY_INVITE, token))
        via = content.get("join_authorised_via_users_server")
        if membership == "join" and version.restricted_join_rule and isinstance(via, str):
            keys.append((MEMBER, via))
    return list(dict.fromkeys(keys))


def check_auth_events(event: Mapping[str, Any], auth_events: Sequence[Mapping[str, Any]], version: RoomVersion) -> None:
    """The "Considering the event's auth_events" rules for a PDU with its cited auth events: no
    duplicate keys, only keys from the selection algorithm, the create event present (v10/11) and
    every auth event in the same room. (Rejected auth events are the caller's to exclude.)"""
    if event.get("type") == CREATE:
        if auth_events:
            raise AuthError("m.room.create must have no auth events")
        return
    state_key = event.get("state_key")
    expected = set(
        auth_types_for_event(
            str(event.get("type")),
            state_key if isinstance(state_key, str) else None,
            str(event.get("sender")),
            _content(event),
            version,
        )
    )
    seen: set[StateKey] = set()
    for auth_event in auth_events:
        key = (auth_event.get("type"), auth_event.get("state_key"))
        if not (isinstance(key[0], str) and isinstance(key[1], str)):
            raise AuthError("an auth event is not a state event")
        if key in seen:
            raise AuthError(f"duplicate auth event for {key}")
        seen.add(key)  # type: ignore[arg-type]
        if key not in expected:
            raise AuthError(f"auth event {key} is not one the event needs")
        if not (version.room_id_is_create_hash and key == CREATE_KEY) and auth_event.get("room_id") != event.get(
            "room_id"
        ):
            raise AuthError("an auth event belongs to another room")
    if version.create_event_in_auth_events and CREATE_KEY not in seen:
        raise AuthError("no m.room.create event among the auth events")


# -- the rules -------------------------------------------------------------------------------------


def check_auth(event: Mapping[str, Any], auth_state: StateMap, version: RoomVersion) -> None:
    """Raise :class:`AuthError` unless ``event`` passes ``version``'s authorisation rules given
    ``auth_state`` (a ``(type, state_key) -> PDU`` map which must include the create event)."""
    etype = event.get("type")
    sender = event.get("sender")
    if not isinstance(etype, str) or not isinstance(sender, str):
        raise AuthError("event has no type or sender")
    if not isinstance(event.get("content"), Mapping):
        raise AuthError("event content is not an object")
    if etype == CREATE:
        check_create(event, version)
        return
    create = auth_state.get(CREATE_KEY)
    if create is None:
        raise AuthError("no m.room.create event in the room state")
    check_room_id(event, create, auth_state, version)
    check_federation(sender, create)
    if etype == MEMBER:
        check_membership(event, create, auth_state, version)
        return
    if _membership(auth_state, sender) != "join":
        raise AuthError(f"{sender} is not joined to the room")
    pl_content = _pl_content(auth_state)
    level = pl.user_level(sender, pl_content, create, version)
    if etype == THIRD_PARTY_INVITE:
        if level < pl.action_level(pl_content, "invite"):
            raise AuthError(f"{sender} may not invite (power level too low)")
        return
    state_key = event.get("state_key")
    if level < pl.event_level(etype, state_key is not None, pl_content):
        raise AuthError(f"{sender} may not send {etype} (power level too low)")
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        raise AuthError("state keys starting with '@' are reserved for that user")
    if etype == POWER_LEVELS:
        check_power_levels(event, create, auth_state, version)


def check_create(event: Mapping[str, Any], version: RoomVersion) -> None:
    """The ``m.room.create`` rules."""
    content = _content(event)
    if event.get("state_key") != "":
        raise AuthError("m.room.create must have an empty state key")
    if event.get("prev_events"):
        raise AuthError("m.room.create must have no prev_events")
    if version.room_id_is_create_hash:
        if "room_id" in event:
            raise AuthError("m.room.create must not have a room_id in this room version")
    elif _domain(event.get("room_id")) is None or _domain(event.get("room_id")) != _domain(event["sender"]):
        raise AuthError("the room ID's domain does not match the sender's")
    if "room_version" in content and content["room_version"] not in KNOWN_ROOM_VERSIONS:
        raise AuthError(f"unrecognised room version {content['room_version']!r}"[:200])
    if not version.creator_removed_from_create and "creator" not in content:
        raise AuthError("m.room.create has no creator")
    if version.creators_have_infinite_power and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(pl.is_user_id(u) for u in extra):
            raise AuthError("additional_creators must be a list of user IDs")


def check_room_id(
    event: Mapping[str, Any], create: Mapping[str, Any], auth_state: StateMap, version: RoomVersion
) -> None:
    """The event belongs to the create event's room, and so does every state event used."""
    room_id = event.get("room_id")
    if not isinstance(room_id, str):
        raise AuthError("event has no room_id")
    if version.room_id_is_create_hash and room_id != compute_v12_room_id(create, version):
        raise AuthError("the room ID is not the create event's")
    for key, state_event in auth_state.items():
        if version.room_id_is_create_hash and key == CREATE_KEY:
            continue
        if state_event.get("room_id") != room_id:
            raise AuthError(f"state {key} belongs to another room")


def check_federation(sender: str, create: Mapping[str, Any]) -> None:
    """``m.federate: false`` keeps other servers' users out."""
    if _content(create).get("m.federate") is False and _domain(sender) != _domain(create.get("sender")):
        raise AuthError("this room does not federate")


def _membership(auth_state: StateMap, user_id: object) -> str | None:
    if not isinstance(user_id, str):
        return None
    membership = _content(auth_state.get((MEMBER, user_id))).get("membership")
    return membership if isinstance(membership, str) else None


def _pl_content(auth_state: StateMap) -> Mapping[str, Any] | None:
    event = auth_state.get((POWER_LEVELS, ""))
    return _content(event) if event is not None else None


def _creator_first_join(event: Mapping[str, Any], create: Mapping[str, Any], version: RoomVersion) -> bool:
    """Rule "the only previous event is an m.room.create and the state_key is the creator"."""
    creator = create.get("sender") if version.creator_removed_from_create else _content(create).get("creator")
    prev = event.get("prev_events")
    if event.get("state_key") != creator or not isinstance(prev, list) or len(prev) != 1:
        return False
    if version.room_id_is_create_hash:
        create_id = create_event_id_for_room(str(event.get("room_id")))
    else:
        given = create.get("event_id")
        create_id = given if isinstance(given, str) else compute_event_id(create, version)
    return bool(prev[0] == create_id)


def check_membership(
    event: Mapping[str, Any], create: Mapping[str, Any], auth_state: StateMap, version: RoomVersion
) -> None:
    """The ``m.room.member`` rules."""
    content = _content(event)
    target = event.get("state_key")
    membership = content.get("membership")
    if not isinstance(target, str) or not isinstance(membership, str):
        raise AuthError("m.room.member needs a state key and a membership")
    sender: str = event["sender"]
    if membership == "join":
        _check_join(event, content, create, auth_state, version)
    elif membership == "invite":
        _check_invite(event, content, create, auth_state, version)
    elif membership == "leave":
        _check_leave(sender, target, create, auth_state, version)
    elif membership == "ban":
        _check_ban(sender, target, create, auth_state, version)
    elif membership == "knock" and version.knocking:
        _check_knock(sender, target, auth_state, version)
    else:
        raise AuthError(f"unknown membership {membership!r}"[:100])


def _join_rule(auth_state: StateMap) -> object:
    return _content(auth_state.get((JOIN_RULES, ""))).get("join_rule")


def _check_join(
    event: Mapping[str, Any],
    content: Mapping[str, Any],
    create: Mapping[str, Any],
    auth_state: StateMap,
    version: RoomVersion,
) -> None:
    if _creator_first_join(event, create, version):
        return
    sender, target = event["sender"], event["state_key"]
    if sender != target:
        raise AuthError("users can only join for themselves")
    current = _membership(auth_state, sender)
    if current == "ban":
        raise AuthError(f"{sender} is banned from the room")
    rule = _join_rule(auth_state)
    if rule == "invite" or (rule == "knock" and version.knocking):
        if current in ("invite", "join"):
            return
        raise AuthError("the room is invite-only")
    if rule == "restricted" or (rule == "knock_restricted" and version.knock_restricted):
        if current in ("join", "invite"):
            return
        via = content.get("join_authorised_via_users_server")
        if not isinstance(via, str):
            raise AuthError("a restricted join needs join_authorised_via_users_server")
        if _membership(auth_state, via) != "join":
            raise AuthError("the authorising user is not in the room")
        pl_content = _pl_content(auth_state)
        if pl.user_level(via, pl_content, create, version) < pl.action_level(pl_content, "invite"):
            raise AuthError("the authorising user may not invite")
        return
    if rule == "public":
        return
    raise AuthError("the room's join rules do not allow joining")


def _check_invite(
    event: Mapping[str, Any],
    content: Mapping[str, Any],
    create: Mapping[str, Any],
    auth_state: StateMap,
    version: RoomVersion,
) -> None:
    sender, target = event["sender"], event["state_key"]
    if "third_party_invite" in content:
        if _membership(auth_state, target) == "ban":
            raise AuthError(f"{target} is banned from the room")
        _check_third_party_invite(sender, target, content["third_party_invite"], auth_state)
        return
    if _membership(auth_state, sender) != "join":
        raise AuthError(f"{sender} is not joined to the room")
    if _membership(auth_state, target) in ("join", "ban"):
        raise AuthError(f"{target} is already joined or banned")
    pl_content = _pl_content(auth_state)
    if pl.user_level(sender, pl_content, create, version) < pl.action_level(pl_content, "invite"):
        raise AuthError(f"{sender} may not invite (power level too low)")


def _check_third_party_invite(sender: str, target: str, invite: object, auth_state: StateMap) -> None:
    signed = invite.get("signed") if isinstance(invite, Mapping) else None
    if not isinstance(signed, Mapping):
        raise AuthError("third_party_invite has no signed object")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third_party_invite.signed needs mxid and token")
    if mxid != target:
        raise AuthError("third_party_invite.signed.mxid is not the invited user")
    tp_event = auth_state.get((THIRD_PARTY_INVITE, token))
    if tp_event is None:
        raise AuthError("no m.room.third_party_invite for this token")
    if tp_event.get("sender") != sender:
        raise AuthError("only the sender of the third-party invite may complete it")
    tp_content = _content(tp_event)
    keys = [tp_content.get("public_key")]
    listed = tp_content.get("public_keys")
    if isinstance(listed, list):
        keys += [k.get("public_key") for k in listed if isinstance(k, Mapping)]
    if not verify_json_any_key(signed, [k for k in keys if isinstance(k, str)]):
        raise AuthError("third_party_invite is not signed by any of the invite's keys")


def _check_leave(
    sender: str, target: str, create: Mapping[str, Any], auth_state: StateMap, version: RoomVersion
) -> None:
    target_membership = _membership(auth_state, target)
    if sender == target:
        if target_membership in ("invite", "join", "knock"):
            return
        raise AuthError(f"{sender} cannot leave: not invited, joined or knocking")
    if _membership(auth_state, sender) != "join":
        raise AuthError(f"{sender} is not joined to the room")
    pl_content = _pl_content(auth_state)
    level = pl.user_level(sender, pl_content, create, version)
    if target_membership == "ban" and level < pl.action_level(pl_content, "ban"):
        raise AuthError(f"{sender} may not unban (power level too low)")
    if level < pl.action_level(pl_content, "kick"):
        raise AuthError(f"{sender} may not kick (power level too low)")
    if pl.user_level(target, pl_content, create, version) >= level:
        raise AuthError(f"{sender} may only kick users with a lower power level")


def _check_ban(sender: str, target: str, create: Mapping[str, Any], auth_state: StateMap, version: RoomVersion) -> None:
    if _membership(auth_state, sender) != "join":
        raise AuthError(f"{sender} is not joined to the room")
    pl_content = _pl_content(auth_state)
    level = pl.user_level(sender, pl_content, create, version)
    if level < pl.action_level(pl_content, "ban"):
        raise AuthError(f"{sender} may not ban (power level too low)")
    if pl.user_level(target, pl_content, create, version) >= level:
        raise AuthError(f"{sender} may only ban users with a lower power level")


def _check_knock(sender: str, target: str, auth_state: StateMap, version: RoomVersion) -> None:
    rule = _join_rule(auth_state)
    if not (rule == "knock" or (rule == "knock_restricted" and version.knock_restricted)):
        raise AuthError("the room's join rules do not allow knocking")
    if sender != target:
        raise AuthError("users can only knock for themselves")
    if _membership(auth_state, sender) in ("ban", "invite", "join"):
        raise AuthError(f"{sender} cannot knock: banned, invited or joined")


def check_power_levels(
    event: Mapping[str, Any], create: Mapping[str, Any], auth_state: StateMap, version: RoomVersion
) -> None:
    """The ``m.room.power_levels`` rules: valid integer content, no creators in ``users`` (v12),
    and no change to a level above the sender's own."""
    content = _content(event)
    reason = pl.power_levels_content_error(content)
    if reason is not None:
        raise AuthError(reason)
    users = content.get("users")
    users = users if isinstance(users, Mapping) else {}
    if version.creators_have_infinite_power and any(u in users for u in pl.creators(create, version)):
        raise AuthError("room creators cannot be given a power level")
    old = _pl_content(auth_state)
    if old is None:
        return
    sender: str = event["sender"]
    level = pl.user_level(sender, old, create, version)
    for key in pl.LEVEL_KEYS:
        _check_change(key, _int(old.get(key)), _int(content.get(key)), level)
    for key in pl.MAP_KEYS:
        old_map, new_map = _int_map(old.get(key)), _int_map(content.get(key))
        for name in old_map.keys() | new_map.keys():
            _check_change(f"{key}.{name}", old_map.get(name), new_map.get(name), level)
    old_users, new_users = _int_map(old.get("users")), _int_map(users)
    for user in old_users.keys() | new_users.keys():
        before, after = old_users.get(user), new_users.get(user)
        if before == after:
            continue
        if before is not None and user != sender and before >= level:
            raise AuthError(f"{sender} may not change the level of {user}, who is not below them")
        if after is not None and after > level:
            raise AuthError(f"{sender} may not raise {user} above their own level")


def _int(value: object) -> int | None:
    return value if pl.is_level(value) else None  # type: ignore[return-value]


def _int_map(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if pl.is_level(v)}


def _check_change(name: str, before: int | None, after: int | None, level: int | float) -> None:
    if before == after:
        return
    if before is not None and before > level:
        raise AuthError(f"cannot change power levels '{name}': its level is above the sender's")
    if after is not None and after > level:
        raise AuthError(f"cannot set power levels '{name}' above the sender's own level")
