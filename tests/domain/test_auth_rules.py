"""Authorisation rules: a table of allowed and forbidden events per rule branch and room version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from paigham.domain.auth_rules import auth_types_for_event, check_auth, check_auth_events
from paigham.domain.events import compute_event_id, compute_v12_room_id, create_event_id_for_room
from paigham.domain.room_versions import ROOM_V10, ROOM_V11, ROOM_V12, RoomVersion
from paigham.domain.signing import encode_verify_key_base64, generate_signing_key, sign_json
from paigham.errors import AuthError

V10, V11, V12 = ROOM_V10, ROOM_V11, ROOM_V12
ALL = (V10, V11, V12)
ALICE, BOB, CAROL, DAVE, EVE, FRANK = "@alice:x", "@bob:x", "@carol:x", "@dave:x", "@eve:x", "@frank:x"
REMOTE = "@zed:other"
State = dict[tuple[str, str], dict[str, Any]]


def create_event(version: RoomVersion, **content: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"room_version": version.identifier, **content}
    if not version.creator_removed_from_create:
        body.setdefault("creator", ALICE)
    event: dict[str, Any] = {
        "type": "m.room.create",
        "state_key": "",
        "sender": ALICE,
        "content": body,
        "prev_events": [],
        "auth_events": [],
        "depth": 1,
        "origin_server_ts": 1,
    }
    if not version.room_id_is_create_hash:
        event["room_id"] = "!r:x"
    return event


def room_id_of(create: dict[str, Any], version: RoomVersion) -> str:
    return compute_v12_room_id(create) if version.room_id_is_create_hash else str(create["room_id"])


@dataclass
class Room:
    version: RoomVersion
    create_content: dict[str, Any] = field(default_factory=dict)
    join_rule: str | None = "invite"
    power_levels: dict[str, Any] | None = None
    members: dict[str, str] = field(default_factory=dict)

    def build(self) -> tuple[str, State]:
        create = create_event(self.version, **self.create_content)
        room_id = room_id_of(create, self.version)
        state: State = {("m.room.create", ""): create}

        def put(event_type: str, state_key: str, content: dict[str, Any], sender: str = ALICE) -> None:
            state[(event_type, state_key)] = {
                "type": event_type,
                "state_key": state_key,
                "sender": sender,
                "room_id": room_id,
                "content": content,
            }

        for user, membership in {ALICE: "join", BOB: "join", CAROL: "join", EVE: "ban", **self.members}.items():
            if membership != "none":
                put("m.room.member", user, {"membership": membership})
        if self.power_levels is not None:
            put("m.room.power_levels", "", self.power_levels)
        if self.join_rule is not None:
            put("m.room.join_rules", "", {"join_rule": self.join_rule})
        return room_id, state


def default_pl(version: RoomVersion, **changes: Any) -> dict[str, Any]:
    users = {BOB: 50, FRANK: 50}
    if not version.creators_have_infinite_power:
        users[ALICE] = 100
    pl: dict[str, Any] = {
        "users": users,
        "users_default": 0,
        "events": {"m.room.power_levels": 100},
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "invite": 0,
        "redact": 50,
        "notifications": {"room": 50},
    }
    pl.update(changes)
    return pl


def event(
    room_id: str, event_type: str, sender: str, content: dict[str, Any], state_key: str | None = None, **extra: Any
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": content,
        "room_id": room_id,
        "prev_events": ["$prev"],
        "auth_events": [],
        "depth": 5,
        "origin_server_ts": 1,
    }
    if state_key is not None:
        ev["state_key"] = state_key
    ev.update(extra)
    return ev


def member(room_id: str, sender: str, target: str, membership: str, **content: Any) -> dict[str, Any]:
    return event(room_id, "m.room.member", sender, {"membership": membership, **content}, target)


def allowed(ev: dict[str, Any], state: State, version: RoomVersion) -> bool:
    try:
        check_auth(ev, state, version)
    except AuthError:
        return False
    return True


# -- a table of cases: (name, versions, room setup, event builder, allowed?) -----------------------

Builder = Callable[[str], dict[str, Any]]


@dataclass
class Case:
    name: str
    make: Builder
    expected: bool
    versions: tuple[RoomVersion, ...] = ALL
    join_rule: str | None = "invite"
    members: dict[str, str] = field(default_factory=dict)
    pl: dict[str, Any] | str | None = "default"
    create_content: dict[str, Any] = field(default_factory=dict)


CASES = [
    # Non-membership events
    Case("member sends message", lambda r: event(r, "m.room.message", CAROL, {"body": "hi"}), True),
    Case("non-member sends message", lambda r: event(r, "m.room.message", DAVE, {}), False),
    Case("invited user sends message", lambda r: event(r, "m.room.message", DAVE, {}), False, members={DAVE: "invite"}),
    Case("banned user sends message", lambda r: event(r, "m.room.message", EVE, {}), False),
    Case(
        "message below events_default",
        lambda r: event(r, "m.room.message", CAROL, {}),
        False,
        pl={"events_default": 10},
    ),
    Case(
        "message at events level",
        lambda r: event(r, "m.room.message", BOB, {}),
        True,
        pl={"events_default": 10, "users": {BOB: 10}},
    ),
    Case(
        "redaction below its events level",
        lambda r: event(r, "m.room.redaction", CAROL, {"redacts": "$x"}),
        False,
        pl={"events": {"m.room.redaction": 1}},
    ),
    Case(
        "redaction not gated by the redact level",
        lambda r: event(r, "m.room.redaction", CAROL, {}),
        True,
        pl={"redact": 100},
    ),
    Case("state below state_default", lambda r: event(r, "m.room.topic", CAROL, {"topic": "t"}, ""), False),
    Case("state at state_default", lambda r: event(r, "m.room.topic", BOB, {"topic": "t"}, ""), True),
    Case(
        "state with per-type level",
        lambda r: event(r, "m.room.name", CAROL, {}, ""),
        True,
        pl={"events": {"m.room.name": 0}},
    ),
    Case("own @-state key", lambda r: event(r, "org.custom", CAROL, {}, CAROL), True, pl={"state_default": 0}),
    Case("other's @-state key", lambda r: event(r, "org.custom", BOB, {}, CAROL), False, pl={"state_default": 0}),
    Case("third_party_invite with invite power", lambda r: event(r, "m.room.third_party_invite", CAROL, {}, "t"), True),
    Case(
        "third_party_invite below invite level",
        lambda r: event(r, "m.room.third_party_invite", BOB, {}, "t"),
        False,
        pl={"invite": 60},
    ),
    Case("third_party_invite by non-member", lambda r: event(r, "m.room.third_party_invite", DAVE, {}, "t"), False),
    Case("no power levels: creator sends state", lambda r: event(r, "m.room.name", ALICE, {}, ""), True, pl=None),
    Case("no power levels: member sends state", lambda r: event(r, "m.room.name", BOB, {}, ""), False, pl=None),
    Case("no power levels: member sends message", lambda r: event(r, "m.room.message", BOB, {}), True, pl=None),
    Case(
        "federate false: remote user",
        lambda r: member(r, REMOTE, REMOTE, "join"),
        False,
        join_rule="public",
        create_content={"m.federate": False},
    ),
    Case(
        "federate false: local user",
        lambda r: member(r, DAVE, DAVE, "join"),
        True,
        join_rule="public",
        create_content={"m.federate": False},
    ),
    Case("federate default: remote user", lambda r: member(r, REMOTE, REMOTE, "join"), True, join_rule="public"),
    # Membership: malformed
    Case(
        "member without state_key",
        lambda r: event(r, "m.room.member", DAVE, {"membership": "join"}),
        False,
        join_rule="public",
    ),
    Case("member without membership", lambda r: event(r, "m.room.member", DAVE, {}, DAVE), False, join_rule="public"),
    Case("unknown membership", lambda r: member(r, CAROL, CAROL, "sleep"), False),
    # Join
    Case("join public room", lambda r: member(r, DAVE, DAVE, "join"), True, join_rule="public"),
    Case("join for someone else", lambda r: member(r, BOB, DAVE, "join"), False, join_rule="public"),
    Case("banned user joins public room", lambda r: member(r, EVE, EVE, "join"), False, join_rule="public"),
    Case("join invite room uninvited", lambda r: member(r, DAVE, DAVE, "join"), False),
    Case("join invite room invited", lambda r: member(r, DAVE, DAVE, "join"), True, members={DAVE: "invite"}),
    Case("re-join (profile change)", lambda r: member(r, CAROL, CAROL, "join", displayname="C"), True),
    Case(
        "join knock room invited",
        lambda r: member(r, DAVE, DAVE, "join"),
        True,
        join_rule="knock",
        members={DAVE: "invite"},
    ),
    Case(
        "join knock room after knocking",
        lambda r: member(r, DAVE, DAVE, "join"),
        False,
        join_rule="knock",
        members={DAVE: "knock"},
    ),
    Case("join without join rules", lambda r: member(r, DAVE, DAVE, "join"), False, join_rule=None),
    Case("join private room", lambda r: member(r, DAVE, DAVE, "join"), False, join_rule="private"),
    Case(
        "restricted: invited",
        lambda r: member(r, DAVE, DAVE, "join"),
        True,
        join_rule="restricted",
        members={DAVE: "invite"},
    ),
    Case(
        "restricted: authorised by member who may invite",
        lambda r: member(r, DAVE, DAVE, "join", join_authorised_via_users_server=CAROL),
        True,
        join_rule="restricted",
    ),
    Case("restricted: no authorising user", lambda r: member(r, DAVE, DAVE, "join"), False, join_rule="restricted"),
    Case(
        "restricted: authoriser not joined",
        lambda r: member(r, DAVE, DAVE, "join", join_authorised_via_users_server=FRANK),
        False,
        join_rule="restricted",
    ),
    Case(
        "restricted: authoriser may not invite",
        lambda r: member(r, DAVE, DAVE, "join", join_authorised_via_users_server=CAROL),
        False,
        join_rule="restricted",
        pl={"invite": 50},
    ),
    Case(
        "restricted: banned",
        lambda r: member(r, EVE, EVE, "join", join_authorised_via_users_server=BOB),
        False,
        join_rule="restricted",
    ),
    Case(
        "knock_restricted: authorised",
        lambda r: member(r, DAVE, DAVE, "join", join_authorised_via_users_server=BOB),
        True,
        join_rule="knock_restricted",
    ),
    Case(
        "knock_restricted: invited",
        lambda r: member(r, DAVE, DAVE, "join"),
        True,
        join_rule="knock_restricted",
        members={DAVE: "invite"},
    ),
    Case("knock_restricted: neither", lambda r: member(r, DAVE, DAVE, "join"), False, join_rule="knock_restricted"),
    # Invite
    Case("member invites", lambda r: member(r, CAROL, DAVE, "invite"), True),
    Case("non-member invites", lambda r: member(r, DAVE, FRANK, "invite"), False),
    Case("invited user invites", lambda r: member(r, DAVE, FRANK, "invite"), False, members={DAVE: "invite"}),
    Case("invite a joined user", lambda r: member(r, CAROL, BOB, "invite"), False),
    Case("invite a banned user", lambda r: member(r, BOB, EVE, "invite"), False),
    Case("re-invite an invited user", lambda r: member(r, CAROL, DAVE, "invite"), True, members={DAVE: "invite"}),
    Case("invite a user who left", lambda r: member(r, CAROL, DAVE, "invite"), True, members={DAVE: "leave"}),
    Case("invite below invite level", lambda r: member(r, CAROL, DAVE, "invite"), False, pl={"invite": 10}),
    Case("invite at invite level", lambda r: member(r, BOB, DAVE, "invite"), True, pl={"invite": 50}),
    # Leave (self)
    Case("joined user leaves", lambda r: member(r, CAROL, CAROL, "leave"), True),
    Case("invited user rejects", lambda r: member(r, DAVE, DAVE, "leave"), True, members={DAVE: "invite"}),
    Case("knocking user rescinds", lambda r: member(r, DAVE, DAVE, "leave"), True, members={DAVE: "knock"}),
    Case("stranger leaves", lambda r: member(r, DAVE, DAVE, "leave"), False),
    Case("left user leaves again", lambda r: member(r, DAVE, DAVE, "leave"), False, members={DAVE: "leave"}),
    Case("banned user leaves", lambda r: member(r, EVE, EVE, "leave"), False),
    # Kick and unban
    Case("moderator kicks member", lambda r: member(r, BOB, CAROL, "leave"), True),
    Case("moderator revokes invite", lambda r: member(r, BOB, DAVE, "leave"), True, members={DAVE: "invite"}),
    Case("member kicks member", lambda r: member(r, CAROL, BOB, "leave"), False, members={DAVE: "join"}),
    Case(
        "kick needs a strictly higher level", lambda r: member(r, BOB, FRANK, "leave"), False, members={FRANK: "join"}
    ),
    Case("kick a higher user", lambda r: member(r, BOB, ALICE, "leave"), False),
    Case("non-member kicks", lambda r: member(r, FRANK, CAROL, "leave"), False),
    Case("kick below kick level", lambda r: member(r, BOB, CAROL, "leave"), False, pl={"kick": 60}),
    Case("moderator unbans", lambda r: member(r, BOB, EVE, "leave"), True),
    Case("unban below ban level", lambda r: member(r, BOB, EVE, "leave"), False, pl={"ban": 60}),
    Case("unban below kick level", lambda r: member(r, BOB, EVE, "leave"), False, pl={"kick": 60}),
    # Ban
    Case("moderator bans member", lambda r: member(r, BOB, CAROL, "ban"), True),
    Case("moderator bans stranger", lambda r: member(r, BOB, DAVE, "ban"), True),
    Case("member bans", lambda r: member(r, CAROL, DAVE, "ban"), False),
    Case("ban an equal", lambda r: member(r, BOB, FRANK, "ban"), False, members={FRANK: "join"}),
    Case("ban the creator", lambda r: member(r, BOB, ALICE, "ban"), False),
    Case("non-member bans", lambda r: member(r, DAVE, CAROL, "ban"), False, pl={"users": {DAVE: 100}}),
    Case("ban below ban level", lambda r: member(r, BOB, CAROL, "ban"), False, pl={"ban": 51}),
    Case("creator bans moderator", lambda r: member(r, ALICE, BOB, "ban"), True),
    # Knock
    Case("knock on knock room", lambda r: member(r, DAVE, DAVE, "knock"), True, join_rule="knock"),
    Case(
        "knock on knock_restricted room", lambda r: member(r, DAVE, DAVE, "knock"), True, join_rule="knock_restricted"
    ),
    Case("knock on invite room", lambda r: member(r, DAVE, DAVE, "knock"), False),
    Case("knock on public room", lambda r: member(r, DAVE, DAVE, "knock"), False, join_rule="public"),
    Case("knock for someone else", lambda r: member(r, CAROL, DAVE, "knock"), False, join_rule="knock"),
    Case("banned user knocks", lambda r: member(r, EVE, EVE, "knock"), False, join_rule="knock"),
    Case(
        "invited user knocks",
        lambda r: member(r, DAVE, DAVE, "knock"),
        False,
        join_rule="knock",
        members={DAVE: "invite"},
    ),
    Case("joined user knocks", lambda r: member(r, CAROL, CAROL, "knock"), False, join_rule="knock"),
    Case("knock again", lambda r: member(r, DAVE, DAVE, "knock"), True, join_rule="knock", members={DAVE: "knock"}),
]


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rule_table(case: Case, version: RoomVersion) -> None:
    if version not in case.versions:
        pytest.skip("not applicable to this room version")
    pl = default_pl(version) if case.pl == "default" else (None if case.pl is None else default_pl(version, **case.pl))  # type: ignore[arg-type]
    room_id, state = Room(version, case.create_content, case.join_rule, pl, case.members).build()
    assert allowed(case.make(room_id), state, version) is case.expected


# -- m.room.create ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
def test_create_allowed(version: RoomVersion) -> None:
    check_auth(create_event(version), {}, version)


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
@pytest.mark.parametrize(
    ("change", "applies"),
    [
        ({"prev_events": ["$x"]}, ALL),
        ({"content": {"room_version": "99", "creator": ALICE}}, ALL),
        ({"content": {"room_version": 10, "creator": ALICE}}, ALL),
        ({"state_key": "x"}, ALL),
        ({"content": "nope"}, ALL),
        ({"room_id": "!r:elsewhere"}, ALL),
        ({"room_id": "!no-domain"}, ALL),
        ({"room_id": "!r:x"}, (V12,)),
        ({"content": {}}, (V10,)),
        ({"content": {"creator": ALICE, "additional_creators": "@b:x"}}, (V12,)),
        ({"content": {"creator": ALICE, "additional_creators": ["@b:x", "nope"]}}, (V12,)),
        ({"content": {"creator": ALICE, "additional_creators": [5]}}, (V12,)),
    ],
)
def test_create_rejected(version: RoomVersion, change: dict[str, Any], applies: tuple[RoomVersion, ...]) -> None:
    ev = {**create_event(version), **change}
    assert allowed(ev, {}, version) is (version not in applies)


def test_create_details_per_version() -> None:
    # v11+ needs no creator; v12 validates additional_creators, older versions ignore them.
    check_auth({**create_event(V11), "content": {}}, {}, V11)
    check_auth({**create_event(V11), "content": {"additional_creators": "junk"}}, {}, V11)
    check_auth({**create_event(V12), "content": {"additional_creators": [BOB, "@:historical.example"]}}, {}, V12)
    check_auth({**create_event(V12), "content": {"additional_creators": []}}, {}, V12)


# -- room and create consistency --------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
def test_missing_create_or_wrong_room(version: RoomVersion) -> None:
    room_id, state = Room(version, power_levels=default_pl(version)).build()
    msg = event(room_id, "m.room.message", CAROL, {})
    check_auth(msg, state, version)
    without_create = {k: v for k, v in state.items() if k != ("m.room.create", "")}
    assert not allowed(msg, without_create, version)
    assert not allowed({**msg, "room_id": "!other:x"}, state, version)
    assert not allowed({k: v for k, v in msg.items() if k != "room_id"}, state, version)
    foreign = dict(state)
    foreign[("m.room.member", CAROL)] = {**state[("m.room.member", CAROL)], "room_id": "!other:x"}
    assert not allowed(msg, foreign, version)
    assert not allowed({**msg, "content": []}, state, version)
    assert not allowed({**msg, "sender": None}, state, version)


def test_v12_room_id_must_be_the_create_hash() -> None:
    room_id, state = Room(V12, power_levels=default_pl(V12)).build()
    check_auth(event(room_id, "m.room.message", CAROL, {}), state, V12)
    # A stored create event with the room ID added alongside still matches.
    state[("m.room.create", "")] = {**state[("m.room.create", "")], "room_id": room_id}
    check_auth(event(room_id, "m.room.message", CAROL, {}), state, V12)
    other_create = create_event(V12, **{"m.federate": True})
    state[("m.room.create", "")] = other_create
    assert not allowed(event(room_id, "m.room.message", CAROL, {}), state, V12)


# -- the creator's first join -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
def test_creator_first_join(version: RoomVersion) -> None:
    create = create_event(version)
    room_id = room_id_of(create, version)
    create_id = (
        create_event_id_for_room(room_id) if version.room_id_is_create_hash else compute_event_id(create, version)
    )
    state: State = {("m.room.create", ""): create}
    join = member(room_id, ALICE, ALICE, "join")
    join["prev_events"] = [create_id]
    check_auth(join, state, version)
    # Not right after the create event, or not the creator: the join rules apply (none exist yet).
    assert not allowed({**join, "prev_events": ["$other"]}, state, version)
    assert not allowed({**join, "prev_events": [create_id, "$other"]}, state, version)
    bob_join = member(room_id, BOB, BOB, "join")
    bob_join["prev_events"] = [create_id]
    assert not allowed(bob_join, state, version)


def test_v10_creator_is_content_creator() -> None:
    create = {**create_event(V10), "content": {"creator": BOB, "room_version": "10"}}
    create_id = compute_event_id(create, V10)
    join = member("!r:x", BOB, BOB, "join")
    join["prev_events"] = [create_id]
    check_auth(join, {("m.room.create", ""): create}, V10)
    # In v11 the content's creator means nothing: the sender is the creator.
    create11 = {**create_event(V11), "content": {"creator": BOB}}
    join["prev_events"] = [compute_event_id(create11, V11)]
    assert not allowed(join, {("m.room.create", ""): create11}, V11)


# -- power levels -----------------------------------------------------------------------------------


def _pl_room(version: RoomVersion, **changes: Any) -> tuple[str, State]:
    changes.setdefault("events", {"m.room.power_levels": 50})
    return Room(version, power_levels=default_pl(version, **changes), members={FRANK: "join"}).build()


def _pl_change(room_id: str, state: State, sender: str, **changes: Any) -> dict[str, Any]:
    content = {**state[("m.room.power_levels", "")]["content"], **changes}
    return event(room_id, "m.room.power_levels", sender, content, "")


def _with_user(state: State, user: str, level: int | None) -> dict[str, int]:
    users = dict(state[("m.room.power_levels", "")]["content"]["users"])
    if level is None:
        users.pop(user, None)
    else:
        users[user] = level
    return users


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
def test_power_level_changes(version: RoomVersion) -> None:
    room_id, state = _pl_room(version, notifications={"room": 60}, kick=60)

    def ok(**changes: Any) -> bool:
        return allowed(_pl_change(room_id, state, BOB, **changes), state, version)

    assert ok()
    assert ok(users=_with_user(state, CAROL, 50))  # up to own level
    assert not ok(users=_with_user(state, CAROL, 51))  # above own level
    assert not ok(users=_with_user(state, FRANK, 10))  # an equal's level
    assert not ok(users=_with_user(state, FRANK, None))
    assert ok(users=_with_user(state, BOB, 10))  # own entry may go down
    assert not ok(users=_with_user(state, BOB, 60))  # ...not up
    assert ok(ban=40)
    assert not ok(ban=60)
    assert not ok(kick=50)  # the current value is above the sender's level
    assert ok(users_default=50)
    assert not ok(users_default=51)
    assert ok(events={"m.room.power_levels": 50, "m.room.name": 50})
    assert not ok(events={"m.room.power_levels": 50, "m.room.name": 51})
    assert ok(events={})  # removing an entry at the sender's own level is fine
    assert not ok(notifications={"room": 10})  # current 60 is above the sender
    assert not ok(notifications={})
    assert ok(notifications={"room": 60})  # unchanged


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
def test_power_levels_remove_entry(version: RoomVersion) -> None:
    room_id, state = _pl_room(version, events={"m.room.power_levels": 50, "m.room.name": 20})
    content = dict(state[("m.room.power_levels", "")]["content"])
    content["events"] = {"m.room.power_levels": 50}
    assert allowed(event(room_id, "m.room.power_levels", BOB, content, ""), state, version)


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
@pytest.mark.parametrize(
    "bad",
    [
        {"ban": "50"},
        {"kick": 50.0},
        {"events": {"m.room.name": "1"}},
        {"notifications": []},
        {"users": {"nobody": 1}},
        {"users": {BOB: True}},
        {"invite": None},
    ],
)
def test_power_levels_must_be_integers(version: RoomVersion, bad: dict[str, Any]) -> None:
    room_id, state = _pl_room(version)
    assert not allowed(_pl_change(room_id, state, BOB, **bad), state, version)
    # Also for the first power levels event of the room.
    del state[("m.room.power_levels", "")]
    assert not allowed(event(room_id, "m.room.power_levels", ALICE, bad, ""), state, version)


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
def test_first_power_levels_event(version: RoomVersion) -> None:
    room_id, state = Room(version, power_levels=None).build()
    content = {"users": {CAROL: 1000}, "ban": 1000}
    assert allowed(event(room_id, "m.room.power_levels", ALICE, content, ""), state, version)
    assert not allowed(event(room_id, "m.room.power_levels", BOB, content, ""), state, version)


def test_v12_creators() -> None:
    room_id, state = Room(
        V12, create_content={"additional_creators": [DAVE]}, power_levels=default_pl(V12), members={DAVE: "join"}
    ).build()

    def pl_event(sender: str, **changes: Any) -> dict[str, Any]:
        return _pl_change(room_id, state, sender, **changes)

    # Creators have infinite power: they can raise anyone, to any level.
    assert allowed(pl_event(ALICE, users=_with_user(state, CAROL, 2**53 - 1)), state, V12)
    assert allowed(pl_event(DAVE, ban=9000), state, V12)
    # ...but can never be listed in the users map.
    assert not allowed(pl_event(ALICE, users=_with_user(state, ALICE, 100)), state, V12)
    assert not allowed(pl_event(ALICE, users=_with_user(state, DAVE, 100)), state, V12)
    # Nobody can kick or ban a creator, not even another creator; creators can kick anyone else.
    assert not allowed(member(room_id, DAVE, ALICE, "ban"), state, V12)
    assert not allowed(member(room_id, BOB, DAVE, "leave"), state, V12)
    assert allowed(member(room_id, DAVE, BOB, "ban"), state, V12)
    # An additional creator sends state needing any level; a moderator cannot.
    high = {"events": {"m.room.tombstone": 2**53 - 1}}
    room_id, state = Room(
        V12,
        create_content={"additional_creators": [DAVE]},
        power_levels=default_pl(V12, **high),
        members={DAVE: "join"},
    ).build()
    assert allowed(event(room_id, "m.room.tombstone", DAVE, {}, ""), state, V12)
    assert not allowed(event(room_id, "m.room.tombstone", BOB, {}, ""), state, V12)
    # In v11 additional_creators means nothing, and users may list the creator.
    room_id11, state11 = Room(
        V11, create_content={"additional_creators": [DAVE]}, power_levels=default_pl(V11), members={DAVE: "join"}
    ).build()
    assert not allowed(member(room_id11, DAVE, BOB, "ban"), state11, V11)
    assert allowed(_pl_change(room_id11, state11, ALICE, users=_with_user(state11, ALICE, 100)), state11, V11)


def test_v10_11_creator_has_no_special_power_with_power_levels() -> None:
    for version in (V10, V11):
        room_id, state = Room(version, power_levels=default_pl(version, users={BOB: 100})).build()
        assert not allowed(member(room_id, ALICE, BOB, "ban"), state, version)
        assert allowed(member(room_id, BOB, ALICE, "ban"), state, version)


# -- third-party invites ----------------------------------------------------------------------------


def _third_party_room(version: RoomVersion) -> tuple[str, State, dict[str, Any]]:
    room_id, state = Room(version, power_levels=default_pl(version)).build()
    id_key = generate_signing_key("0")
    state[("m.room.third_party_invite", "tok")] = {
        "type": "m.room.third_party_invite",
        "state_key": "tok",
        "sender": CAROL,
        "room_id": room_id,
        "content": {
            "display_name": "d...@example.com",
            "key_validity_url": "https://id/valid",
            "public_key": "bm90IGEga2V5",
            "public_keys": [{"public_key": encode_verify_key_base64(id_key)}],
        },
    }
    signed = sign_json({"mxid": DAVE, "token": "tok"}, "id.example", id_key)
    return room_id, state, signed


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
def test_third_party_invite(version: RoomVersion) -> None:
    room_id, state, signed = _third_party_room(version)

    def invite(sender: str, target: str, tpi: Any) -> bool:
        return allowed(member(room_id, sender, target, "invite", third_party_invite=tpi), state, version)

    assert invite(CAROL, DAVE, {"display_name": "d", "signed": signed})
    assert not invite(BOB, DAVE, {"signed": signed})  # not the third-party invite's sender
    assert not invite(CAROL, FRANK, {"signed": signed})  # mxid is not the target
    assert not invite(CAROL, DAVE, {"display_name": "d"})  # no signed
    assert not invite(CAROL, DAVE, "junk")
    assert not invite(CAROL, DAVE, {"signed": {k: v for k, v in signed.items() if k != "token"}})
    assert not invite(CAROL, DAVE, {"signed": {**signed, "token": "other"}})  # no such invite
    assert not invite(CAROL, DAVE, {"signed": {**signed, "mxid": DAVE, "extra": 1}})  # signature broken
    other = sign_json({"mxid": DAVE, "token": "tok"}, "id.example", generate_signing_key("0"))
    assert not invite(CAROL, DAVE, {"signed": other})  # signed by an unknown key
    signed_eve = sign_json({"mxid": EVE, "token": "tok"}, "id.example", generate_signing_key("0"))
    assert not invite(CAROL, EVE, {"signed": signed_eve})  # banned target


# -- auth events selection --------------------------------------------------------------------------


def test_auth_types_for_event() -> None:
    create, pl, jr = ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")
    assert auth_types_for_event("m.room.create", "", ALICE, {}, V10) == []
    assert auth_types_for_event("m.room.message", None, BOB, {}, V10) == [create, pl, ("m.room.member", BOB)]
    assert auth_types_for_event("m.room.message", None, BOB, {}, V11) == [create, pl, ("m.room.member", BOB)]
    assert auth_types_for_event("m.room.message", None, BOB, {}, V12) == [pl, ("m.room.member", BOB)]
    assert auth_types_for_event("m.room.member", BOB, BOB, {"membership": "join"}, V12) == [
        pl,
        ("m.room.member", BOB),
        jr,
    ]
    assert auth_types_for_event("m.room.member", CAROL, BOB, {"membership": "leave"}, V12) == [
        pl,
        ("m.room.member", BOB),
        ("m.room.member", CAROL),
    ]
    assert auth_types_for_event("m.room.member", CAROL, BOB, {"membership": "ban"}, V10) == [
        create,
        pl,
        ("m.room.member", BOB),
        ("m.room.member", CAROL),
    ]
    for membership in ("invite", "knock"):
        assert jr in auth_types_for_event("m.room.member", CAROL, BOB, {"membership": membership}, V11)
    tpi = {"membership": "invite", "third_party_invite": {"signed": {"token": "tok", "mxid": CAROL}}}
    assert auth_types_for_event("m.room.member", CAROL, BOB, tpi, V12)[-1] == ("m.room.third_party_invite", "tok")
    via = {"membership": "join", "join_authorised_via_users_server": DAVE}
    assert auth_types_for_event("m.room.member", BOB, BOB, via, V10)[-1] == ("m.room.member", DAVE)
    assert ("m.room.member", DAVE) not in auth_types_for_event(
        "m.room.member", BOB, BOB, {**via, "membership": "invite"}, V10
    )


@pytest.mark.parametrize("version", ALL, ids=lambda v: f"v{v.identifier}")
def test_check_auth_events(version: RoomVersion) -> None:
    room_id, state = Room(version, power_levels=default_pl(version)).build()
    msg = event(room_id, "m.room.message", CAROL, {})
    wanted = auth_types_for_event("m.room.message", None, CAROL, {}, version)
    auth = [state[k] for k in wanted]
    check_auth_events(msg, auth, version)
    with pytest.raises(AuthError):
        check_auth_events(msg, [*auth, auth[-1]], version)  # duplicate
    with pytest.raises(AuthError):
        check_auth_events(msg, [*auth, state[("m.room.join_rules", "")]], version)  # not selected
    with pytest.raises(AuthError):
        check_auth_events(msg, [*auth[:-1], {**auth[-1], "room_id": "!other:x"}], version)
    with pytest.raises(AuthError):
        check_auth_events(msg, [*auth, {"type": "m.room.member"}], version)
    if version.create_event_in_auth_events:
        with pytest.raises(AuthError):
            check_auth_events(msg, [a for a in auth if a["type"] != "m.room.create"], version)
    else:
        with pytest.raises(AuthError):
            check_auth_events(msg, [*auth, state[("m.room.create", "")]], version)
    check_auth_events(create_event(version), [], version)
    with pytest.raises(AuthError):
        check_auth_events(create_event(version), auth, version)
