"""GET /sync: what changed for one device between two stream positions, long-polling when nothing did.

One read (storage/sync_probe.py) says where the streams stand and which have news; the sections
(sync/sections.py) build the response from it; extensions (E2EE) fill the fields they own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from paigham.requester import Requester
from paigham.services.filtering import SyncFilterView
from paigham.storage.database import Database
from paigham.storage.sync_probe import ProbeBatcher, SyncProbe, probe
from paigham.storage.sync_rooms import RoomListCache
from paigham.sync.model import SyncRequest, SyncResponse
from paigham.sync.notifier import Notifier
from paigham.sync.sections import MEMBERSHIPS, Sections
from paigham.sync.sources import PushRulesProvider, RoomReads, Serializer, StreamReads

# Rooms whose news wakes a long-poll: those the user is in or is offered.
WAKING = ("join", "invite", "knock")

# An extension fills the response fields it owns (SyncResponse.has_news counts them).
Extension = Callable[[SyncRequest, SyncResponse], Awaitable[None]]


@dataclass
class SyncResult:
    response: SyncResponse
    has_news: bool
    since: int | None  # as used: a token from the future is taken as "now"
    upto: int
    found: SyncProbe | None = field(default=None, repr=False)


class SyncService:
    def __init__(
        self,
        db: Database,
        events: RoomReads,
        streams: StreamReads,
        serializer: Serializer,
        notifier: Notifier,
        push_rules: PushRulesProvider,
        *,
        presence_enabled: bool,
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.db = db
        self.notifier = notifier
        # The users' rooms as of their last sync here, checked against the database at each probe.
        self.rooms = RoomListCache()
        # The probes of syncs woken together (one message into a big room) go as one statement.
        self.probes = ProbeBatcher(db)
        self.sections = Sections(events, streams, serializer, push_rules, presence_enabled=presence_enabled)
        # Sections other areas add to each response (E2EE: to-device, device lists, key counts).
        self.extensions = tuple(extensions)

    async def sync(
        self, requester: Requester, since: int | None, timeout_ms: int, flt: SyncFilterView, full_state: bool
    ) -> SyncResponse:
        deadline = time.monotonic() + timeout_ms / 1000
        held = False  # a big room's membership news is held at most once per request
        while True:
            found, since = await self._probe(requester, since, full_state)
            if not held and since is not None and not full_state and self.notifier.holds_news:
                # News of a join storm only, for a device answered moments ago: held (sync/notifier.py).
                held = await self.notifier.held(
                    _wake_keys(requester.user_id, found), since, found.position, deadline - time.monotonic()
                )
                if held:
                    continue
            result = await self._answer(requester, since, found, flt, full_state)
            del found
            remaining = deadline - time.monotonic()
            if result.has_news or since is None or full_state or remaining <= 0:
                return result.response
            keys = _wake_keys(requester.user_id, result.found)
            upto = result.upto
            # Nothing of this pass is needed while waiting: a held long-poll keeps its keys alone, not
            # the empty response and the probe's rows (every room of the user) for up to its timeout.
            del result
            if not await self.notifier.wait(keys, upto, remaining):
                # Time is up: one last look, so an update racing the timeout is not lost.
                return (await self.compute(requester, since, flt, full_state)).response
            # On SQLite the reads run in the event loop's thread without suspending, and wait()
            # returns at once for an update it already saw: let other tasks run before looking
            # again. On PostgreSQL the look suspends anyway; yielding first would cost one more
            # pass of the event loop for every woken sync (under load a pass is every ready task).
            if not self.db.reads_suspend:
                await asyncio.sleep(0)

    async def compute(
        self, requester: Requester, since: int | None, flt: SyncFilterView, full_state: bool
    ) -> SyncResult:
        found, since = await self._probe(requester, since, full_state)
        return await self._answer(requester, since, found, flt, full_state)

    async def _probe(self, requester: Requester, since: int | None, full_state: bool) -> tuple[SyncProbe, int | None]:
        """One read says where the streams stand and which have news for this device (sync_probe.py);
        with `since` as used (a token from the future is taken as "now")."""
        found = await probe(
            self.db,
            requester.user_id,
            requester.device_id,
            since,
            MEMBERSHIPS,
            every_room=full_state,
            rooms=self.rooms,
            batcher=self.probes,
        )
        if since is not None and since > found.position:
            since = found.position  # a token from a rolled-back or restored database: treat as "now"
        return found, since

    async def _answer(
        self, requester: Requester, since: int | None, found: SyncProbe, flt: SyncFilterView, full_state: bool
    ) -> SyncResult:
        req = SyncRequest(requester, since, found.position, flt, full_state, found)
        response = await self.sections.build(req)
        for extension in self.extensions:
            await extension(req, response)
        return SyncResult(response, response.has_news(), since, req.upto, found)


def _wake_keys(user_id: str, found: SyncProbe | None) -> set[str]:
    """The notifier keys of news for this user: their own, and the rooms whose news should wake a
    long-poll (joined, invited, knocked), from the probe (built only to wait: every room of the user)."""
    keys = {f"u:{user_id}"}
    if found is not None:
        keys.update(f"r:{r}" for r, (m, _) in found.memberships.items() if m in WAKING)
        keys.update(f"r:{r}" for r in found.quiet)
    return keys
