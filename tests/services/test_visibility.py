"""History visibility (services/visibility.py), rule by rule, over an in-memory room history: which
events a user may see depends on the visibility setting and their membership when each was sent."""

from __future__ import annotations

import pytest

from paigham.services.visibility import filter_visible
from tests.services.fakes import History

ALICE, BOB = "@alice:t", "@bob:t"
ROOM = "!room:t"


def room(visibility: str | None) -> History:
    h = History()
    h.add(ROOM, "m.room.create", ALICE, {"creator": ALICE}, "")
    h.join(ROOM, ALICE)
    if visibility is not None:
        h.add(ROOM, "m.room.history_visibility", ALICE, {"history_visibility": visibility}, "")
    return h


async def visible(h: History, user: str = BOB) -> list[str]:
    """The bodies of the messages `user` may see."""
    evs = await filter_visible(h, user, ROOM, h.events)
    return [e.content["body"] for e in evs if e.type == "m.room.message"]


@pytest.mark.parametrize(
    ("visibility", "expected"),
    [
        ("world_readable", ["before", "invited", "joined", "left"]),
        ("shared", ["before", "invited", "joined"]),
        ("invited", ["invited", "joined"]),
        ("joined", ["joined"]),
    ],
)
async def test_what_a_member_who_came_and_went_sees(visibility: str, expected: list[str]) -> None:
    h = room(visibility)
    h.say(ROOM, ALICE, "before")
    h.member(ROOM, ALICE, BOB, "invite")
    h.say(ROOM, ALICE, "invited")
    h.join(ROOM, BOB)
    h.say(ROOM, ALICE, "joined")
    h.member(ROOM, BOB, BOB, "leave")
    h.say(ROOM, ALICE, "left")
    assert await visible(h) == expected


async def test_without_a_setting_history_is_shared() -> None:
    h = room(None)
    h.say(ROOM, ALICE, "before")
    h.join(ROOM, BOB)
    assert await visible(h) == ["before"]


async def test_shared_history_stays_hidden_from_someone_who_never_joined() -> None:
    h = room("shared")
    h.say(ROOM, ALICE, "secret")
    h.member(ROOM, ALICE, BOB, "invite")  # invited, never joined
    assert await visible(h) == []
    assert await visible(h, ALICE) == ["secret"]


async def test_the_setting_in_force_when_an_event_was_sent_applies() -> None:
    h = room("joined")
    h.say(ROOM, ALICE, "private")
    h.add(ROOM, "m.room.history_visibility", ALICE, {"history_visibility": "world_readable"}, "")
    h.say(ROOM, ALICE, "public")
    assert await visible(h) == ["public"]  # Bob was never in the room


async def test_a_users_own_membership_events_are_always_visible() -> None:
    h = room("joined")
    h.member(ROOM, ALICE, BOB, "invite")
    h.member(ROOM, ALICE, BOB, "ban")
    own = [e for e in await filter_visible(h, BOB, ROOM, h.events) if e.state_key == BOB]
    assert [e.content["membership"] for e in own] == ["invite", "ban"]


async def test_nothing_to_filter_reads_nothing() -> None:
    class Unreadable(History):
        async def membership_history(self, user_id: str, room_id: str) -> list[tuple[int, str]]:
            raise AssertionError("read")

    assert await filter_visible(Unreadable(), BOB, ROOM, []) == []
