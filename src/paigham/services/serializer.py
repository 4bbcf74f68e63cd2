"""Stored PDUs → the client event format: pruned when redacted, with unsigned data and bundled
aggregations (m.replace, m.thread) attached."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paigham.clock import now_ms
from paigham.domain.redaction import prune_event
from paigham.domain.room_versions import RoomVersion, get_room_version
from paigham.domain.stored_event import StoredEvent
from paigham.requester import Requester
from paigham.storage.events import EventStore

_CLIENT_KEYS = ("event_id", "type", "sender", "origin_server_ts", "content", "state_key", "room_id", "redacts")
# Room ID → its version (which never changes): bounded, started afresh when full (one read per room then).
VERSION_CACHE_ROOMS = 100_000
_version_cache: dict[str, RoomVersion] = {}


class EventSerializer:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def room_version(self, room_id: str) -> RoomVersion:
        v = _version_cache.get(room_id)
        if v is None:
            room = await self.store.get_room(room_id)
            found = get_room_version(room.room_version) if room else None
            if found is None:
                raise LookupError(room_id)
            if len(_version_cache) >= VERSION_CACHE_ROOMS:
                _version_cache.clear()
            v = _version_cache[room_id] = found
        return v

    async def serialize(
        self,
        evs: Sequence[StoredEvent],
        requester: Requester | None,
        *,
        bundle: bool = True,
        related: Sequence[StoredEvent] | None = None,
    ) -> list[dict[str, Any]]:
        """Client-format events; `related`, if given, holds the m.replace/m.thread relations of
        (at least) these events, already read with them (EventStore.recent_with_relations)."""
        if not evs:
            return []
        redaction_ids = [e.redacted_by for e in evs if e.redacted_by]
        redactions = await self.store.get_events(redaction_ids) if redaction_ids else {}
        relations = (
            await self._aggregations([e for e in evs if not e.redacted_by], requester, related) if bundle else {}
        )
        now = now_ms()
        out = []
        for e in evs:
            because = redactions.get(e.redacted_by) if e.redacted_by else None
            out.append(await self.one(e, requester, now, because, relations.get(e.event_id)))
        return out

    async def one(
        self,
        e: StoredEvent,
        requester: Requester | None,
        now: int,
        redacted_because: StoredEvent | None = None,
        relations: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        pdu = e.pdu
        if e.redacted_by:
            pdu = prune_event(pdu, await self.room_version(e.room_id))
        ev: dict[str, Any] = {k: pdu[k] for k in _CLIENT_KEYS if k in pdu}
        ev["event_id"] = e.event_id
        ev["room_id"] = e.room_id
        if e.type == "m.room.redaction":
            target = pdu.get("redacts") or e.content.get("redacts")
            if isinstance(target, str):
                ev["redacts"] = target
                if "redacts" not in ev["content"] and not e.redacted_by:
                    ev["content"] = {**ev["content"], "redacts": target}
        unsigned: dict[str, Any] = {"age": max(0, now - e.origin_server_ts)}
        if e.unsigned:
            unsigned.update(e.unsigned)
        if requester is not None and e.txn_id and e.sender == requester.user_id and e.device_id == requester.device_id:
            unsigned["transaction_id"] = e.txn_id
        if redacted_because is not None:
            unsigned["redacted_because"] = await self.one(redacted_because, None, now)
        if relations:
            unsigned["m.relations"] = relations
        ev["unsigned"] = unsigned
        return ev

    async def _aggregations(
        self, evs: Sequence[StoredEvent], requester: Requester | None, known: Sequence[StoredEvent] | None
    ) -> dict[str, dict[str, Any]]:
        originals = {e.event_id: e for e in evs}
        if known is None:
            related = await self.store.relation_summaries(list(originals))
        else:
            related = [r for r in known if _relates_to(r) in originals]
        if not related:
            return {}
        out: dict[str, dict[str, Any]] = {}
        threads: dict[str, list[StoredEvent]] = {}
        for r in related:
            parent_id = _relates_to(r)
            if parent_id is None or r.redacted_by:
                continue
            if r.pdu.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace":
                parent = originals.get(parent_id)
                if parent is not None and r.sender == parent.sender and r.type == parent.type:
                    out.setdefault(parent_id, {})["m.replace"] = r  # oldest first: the newest wins
            else:
                threads.setdefault(parent_id, []).append(r)
        now = now_ms()
        for aggs in out.values():
            edit = aggs.get("m.replace")
            if isinstance(edit, StoredEvent):
                aggs["m.replace"] = await self.one(edit, requester, now)
        for parent_id, replies in threads.items():
            latest = replies[-1]
            me = requester.user_id if requester else None
            out.setdefault(parent_id, {})["m.thread"] = {
                "latest_event": await self.one(latest, requester, now),
                "count": len(replies),
                "current_user_participated": any(r.sender == me for r in replies) or originals[parent_id].sender == me,
            }
        return out


def _relates_to(e: StoredEvent) -> str | None:
    rel = e.content.get("m.relates_to")
    if isinstance(rel, dict) and isinstance(rel.get("event_id"), str):
        return str(rel["event_id"])
    return None


def strip_room_id(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for ev in evs:
        ev.pop("room_id", None)
    return evs
