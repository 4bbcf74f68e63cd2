"""Device-list tracking: who must re-query whose keys.

A user's devices or keys changing is recorded at a stream position (KeyStore); who shares a room
with whom comes from the memberships. For a syncing user, `changed` holds the users sharing a room
with them whose keys changed, plus users they newly share a room with; `left` the users they no
longer share any room with. Both are computed from the stream range, so nothing extra is written
when memberships change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paigham.bus.base import StreamUpdate
from paigham.services.ports import DeviceHooks
from paigham.services.publisher import Publisher
from paigham.storage.e2ee_keys import KeyStore
from paigham.storage.e2ee_lists import SHARING, DeviceListStore
from paigham.storage.sync_probe import DEVICE_LISTS
from paigham.sync.model import DeviceLists, SyncRequest, SyncResponse


@dataclass
class DeviceListDelta:
    changed: set[str] = field(default_factory=set)
    left: set[str] = field(default_factory=set)


class DeviceListService(DeviceHooks):
    def __init__(self, lists: DeviceListStore, keys: KeyStore, publisher: Publisher) -> None:
        self.lists = lists
        self.keys = keys
        self.publisher = publisher

    async def notify(self, pos: int, user_id: str) -> None:
        """Wake the user's own syncs and those of everyone sharing a room with them."""
        await self.publisher.publish(StreamUpdate(pos, users=[user_id]), rooms_of=user_id)

    # -- AuthService.device_hooks -----------------------------------------------------------------
    async def device_added(self, user_id: str, device_id: str) -> None:
        return None  # a new device has no keys yet; its /keys/upload records the change

    async def devices_removed(self, user_id: str, device_ids: list[str]) -> None:
        pos = await self.keys.delete_devices(user_id, device_ids)
        await self.notify(pos, user_id)

    async def user_deactivated(self, user_id: str) -> None:
        pos = await self.keys.delete_cross_signing(user_id)
        await self.notify(pos, user_id)

    # -- reading ----------------------------------------------------------------------------------
    async def delta(self, user_id: str, since: int, upto: int) -> DeviceListDelta:
        found = await self.lists.list_changes(user_id, since, upto)
        key_changes, mine, others = found.keys, found.mine, found.others
        if not (key_changes or mine or others):
            return DeviceListDelta()
        # Who shares a room with the user is asked of the users in question only, never listed: the
        # user's rooms may hold tens of thousands of members (a join storm wakes every syncing member).
        changed = await self.lists.sharing(user_id, key_changes)
        changed |= {u for u, m in others if m in SHARING}  # (in a room the user is joined to)
        changed |= await self.lists.members_of(r for r, m in mine if m == "join")
        changed.discard(user_id)
        if user_id in key_changes:  # (the user's own devices, rooms or none)
            changed.add(user_id)
        candidates = {u for u, m in others if m not in SHARING}
        candidates |= await self.lists.members_of(r for r, m in mine if m not in SHARING)
        candidates.discard(user_id)
        return DeviceListDelta(changed, candidates - await self.lists.sharing(user_id, candidates))

    async def changed_and_left(self, user_id: str, since: int, upto: int) -> tuple[list[str], list[str]]:
        """Sliding sync's `e2ee` extension: whose device lists changed, and who no longer shares a room."""
        d = await self.delta(user_id, since, upto)
        return sorted(d.changed), sorted(d.left)

    async def sync_section(self, req: SyncRequest, response: SyncResponse) -> None:
        """/sync extension: `device_lists` (incremental syncs only, as the spec asks)."""
        if req.since is None or not req.probe.has(DEVICE_LISTS):
            return
        d = await self.delta(req.requester.user_id, req.since, req.upto)
        response.device_lists = DeviceLists(sorted(d.changed), sorted(d.left))
