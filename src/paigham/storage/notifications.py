"""A user's notifications: the events that notify them, read from the push actions
(storage/push_actions.py) — GET /notifications lists them, push delivery sends them.

Push actions are stored per event, not per recipient (docs/decisions.md, "Push actions per event,
not per recipient"): an event notifies user U if
- the room's shared row notifies (`room_push_actions`), U is joined to the room, joined before the
  event (its stream is past `memberships.joined_stream`), did not send it, and has no row of their
  own for it; or
- U's own row (`event_push_actions`) says it notifies, and U is joined (and joined before the event)
  or U is invited and the event is that invite or later (an invite notifies the invitee, who is not
  joined).
Highlight comes from whichever row applies. This is the same rule /sync's unread counts use
(push_actions.py, sync_probe.py), listed instead of counted. Rooms the user has left list nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from paigham.storage.database import Database

# The largest stream position (no upper bound).
NO_BOUND = 2**62


class NotificationRow(NamedTuple):
    """One event that notifies the user. The actions it had are `notify` plus the highlight tweak
    when `highlight` is set: the push action rows keep nothing else (no sound tweak)."""

    event_id: str
    room_id: str
    stream: int
    ts: int  # the event's origin_server_ts
    highlight: bool
    thread_id: str  # "" outside a thread, else the thread root's event ID


# $1 user, $2 after (exclusive), $3 upto (inclusive). Shared rows of the rooms the user is joined
# to, minus the events the user has an own row for; then the user's own rows that notify.
_SHARED = (
    "SELECT r.room_id, r.stream, r.thread_id, r.highlight FROM memberships m "
    "JOIN room_push_actions r ON r.room_id = m.room_id AND r.stream > m.joined_stream "
    "AND r.stream > $2 AND r.stream <= $3 "
    "WHERE m.user_id = $1 AND m.membership = 'join' AND r.sender <> $1 "
    "AND NOT EXISTS (SELECT 1 FROM event_push_actions o WHERE o.user_id = $1 AND o.room_id = r.room_id "
    "AND o.stream = r.stream){only}"
)
_OWN = (
    "SELECT o.room_id, o.stream, o.thread_id, o.highlight FROM event_push_actions o "
    "JOIN memberships m ON m.user_id = o.user_id AND m.room_id = o.room_id "
    "WHERE o.user_id = $1 AND o.notify AND o.stream > $2 AND o.stream <= $3 "
    "AND ((m.membership = 'join' AND o.stream > m.joined_stream) OR (m.membership = 'invite' AND o.stream >= m.stream))"
    "{only}"
)


def _query(only_highlight: bool, newest_first: bool) -> str:
    shared = _SHARED.format(only=" AND r.highlight" if only_highlight else "")
    own = _OWN.format(only=" AND o.highlight" if only_highlight else "")
    order = "DESC" if newest_first else "ASC"
    return (
        "SELECT e.event_id, n.room_id, n.stream, e.origin_server_ts, n.highlight, n.thread_id "
        f"FROM ({shared} UNION ALL {own}) n JOIN events e ON e.stream = n.stream "
        f"WHERE e.sender <> $1 ORDER BY n.stream {order} LIMIT $4"
    )


_QUERIES = {(h, n): _query(h, n) for h in (False, True) for n in (False, True)}

# The newest m.read / m.read.private receipt per (room, thread) of the user in the rooms $2.
_READ = (
    "SELECT room_id, thread_id, max(event_stream) FROM receipts WHERE user_id = $1 AND room_id = ANY($2::text[]) "
    "AND receipt_type IN ('m.read', 'm.read.private') GROUP BY room_id, thread_id"
)


class NotificationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def notifications(
        self,
        user_id: str,
        after_stream: int,
        upto: int | None,
        limit: int,
        only_highlight: bool = False,
        newest_first: bool = True,
    ) -> list[NotificationRow]:
        """The events that notify `user_id` with a stream position in (after_stream, upto] (upto None:
        no bound), at most `limit`, newest first (or oldest first, as delivery walks them)."""
        rows = await self.db.fetch(
            _QUERIES[(only_highlight, newest_first)],
            user_id,
            after_stream,
            NO_BOUND if upto is None else upto,
            limit,
        )
        return [NotificationRow(str(r[0]), str(r[1]), int(r[2]), int(r[3]), bool(r[4]), str(r[5] or "")) for r in rows]

    async def read_upto(self, user_id: str, room_ids: Sequence[str]) -> dict[tuple[str, str], int]:
        """(room, receipt thread) → the stream of the user's newest read receipt there (m.read or
        m.read.private). The thread is "" for an unthreaded receipt, "main" for the main timeline,
        else a thread root's event ID."""
        if not room_ids:
            return {}
        rows = await self.db.fetch(_READ, user_id, sorted(set(room_ids)))
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}


def is_read(n: NotificationRow, read: dict[tuple[str, str], int]) -> bool:
    """Whether the user's receipts cover the notification: an unthreaded receipt covers every event
    up to it; a threaded one, the events of its thread ("main": those outside any thread)."""
    thread = n.thread_id or "main"
    return n.stream <= max(read.get((n.room_id, ""), 0), read.get((n.room_id, thread), 0))
