"""The audit service: what happened, who did it, from where — appended to the hash chain.

Kinds recorded (the `kind` field): auth.login, auth.login_failed, auth.locked_out, account.registered,
device.added, device.removed, keys.cross_signing, admin.<action>, policy.changed, room.created,
room.membership, media.uploaded (metadata only, never content), org.import, audit.purged, call.joined
(a call-membership state event that takes its sender into a call), call.token (a LiveKit token
granted by services/rtc.py): metadata only, never content or keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from signedjson.key import get_verify_key
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json

from paigham.clock import now_ms
from paigham.domain.audit_chain import Broken, Record, Verifier
from paigham.domain.rtc import joins_call
from paigham.domain.stored_event import StoredEvent
from paigham.requester import Requester
from paigham.services.ports import DeviceHooks
from paigham.storage.audit import AuditStore, Entry

log = structlog.get_logger(__name__)

MAX_STR = 512
MAX_ITEMS = 50
DAY_MS = 86_400_000


def _clean(value: Any, depth: int = 0) -> Any:
    """Details are bounded and canonical-JSON safe: short strings, few items, no floats."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, str):
        return value[:MAX_STR]
    if depth >= 4:
        return str(value)[:MAX_STR]
    if isinstance(value, dict):
        return {str(k)[:64]: _clean(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
    if isinstance(value, (list, tuple, set)):
        return [_clean(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
    return str(value)[:MAX_STR]


def _short(v: str | None, n: int) -> str | None:
    return v[:n] if v is not None else None


def entry(
    kind: str,
    actor: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    device: str | None = None,
    details: dict[str, Any] | None = None,
    ts: int | None = None,
) -> Entry:
    return Entry(
        ts if ts is not None else now_ms(),
        kind[:64],
        _short(actor, 255),
        _short(target, 512),
        _short(ip, 64),
        _short(device, 255),
        _clean(details or {}),
    )


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    first_seq: int
    head_seq: int
    broken: Broken | None
    start: str = "the chain starts at its first record"  # where it starts, and why it may

    @property
    def ok(self) -> bool:
        return self.broken is None


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditService:
    """The audit log. A retention purge removes the oldest records and moves the chain's anchor; it
    writes a checkpoint signed with the server's ed25519 key that vouches for the new anchor, so
    `verify` can tell a purge from records deleted (and the anchor moved) by someone with database
    access but not the key."""

    def __init__(self, store: AuditStore, retention_days: int, *, signing_key: Any, server_name: str) -> None:
        self.store = store
        self.retention_days = retention_days
        self.signing_key = signing_key
        self.server_name = server_name

    async def record(
        self,
        kind: str,
        actor: str | None = None,
        target: str | None = None,
        ip: str | None = None,
        device: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self.store.append([entry(kind, actor, target, ip, device, details)])

    async def record_many(self, entries: Sequence[Entry]) -> None:
        await self.store.append(entries)

    # -- hooks ----------------------------------------------------------------------------------
    def device_hooks(self) -> DeviceHooks:
        return _DeviceAudit(self)

    async def cross_signing_changed(self, rq: Requester, keys: list[str]) -> None:
        """CrossSigningService hook: the user uploaded new cross-signing keys (their types)."""
        await self.record("keys.cross_signing", rq.user_id, rq.user_id, None, rq.device_id, {"keys": keys})

    async def on_events(self, events: list[StoredEvent]) -> None:
        """Writer commit hook: room creation, membership changes and joining calls (after commit; never
        fails the request)."""
        entries = []
        for ev in events:
            if ev.state_key is not None and joins_call(ev.type, ev.content, (ev.unsigned or {}).get("prev_content")):
                entries.append(_call_joined(ev))
                continue
            if ev.type == "m.room.create" and ev.state_key == "":
                room_type = ev.content.get("type")
                entries.append(
                    entry(
                        "room.created",
                        ev.sender,
                        ev.room_id,
                        device=ev.device_id,
                        details={
                            "room_version": ev.content.get("room_version"),
                            **({"type": room_type} if isinstance(room_type, str) else {}),
                        },
                        ts=ev.origin_server_ts,
                    )
                )
            elif ev.type == "m.room.member" and ev.state_key is not None:
                membership = ev.content.get("membership")
                prev = (ev.unsigned or {}).get("prev_content") or {}
                before = prev.get("membership") if isinstance(prev, dict) else None
                if membership == before:
                    continue  # a profile update, not a membership change
                entries.append(
                    entry(
                        "room.membership",
                        ev.sender,
                        ev.state_key,
                        device=ev.device_id,
                        details={
                            "room_id": ev.room_id,
                            "membership": membership,
                            "previous": before,
                            "event_id": ev.event_id,
                        },
                        ts=ev.origin_server_ts,
                    )
                )
        if entries:
            try:
                await self.store.append(entries)
            except Exception:  # the events are committed: log loudly, never fail the request
                log.exception("audit.append_failed", count=len(entries))

    # -- export, verify, retention ----------------------------------------------------------------
    async def export(
        self, since_ts: int | None = None, kinds: Sequence[str] | None = None, limit: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        async for r in self.store.records(since_ts=since_ts, kinds=kinds, limit=limit):
            yield {"time": iso(r.ts), **r.to_json()}

    async def verify(self) -> VerifyReport:
        """Check the hash chain from its anchor to its head, and that the anchor itself is vouched
        for: the genesis, or a retention purge's signed checkpoint."""
        head = await self.store.head()
        v = Verifier(head.anchor_seq + 1, head.anchor_hash)
        first = 0
        voucher: Record | None = None
        async for r in self.store.records(after_seq=0):
            first = first or r.seq
            if not v.feed([r]):
                break
            if voucher is None and self._vouches(r, head.anchor_seq, head.anchor_hash):
                voucher = r
        broken = v.finish(head.seq, head.hash)
        if head.anchor_seq == 0:
            return VerifyReport(v.checked, first, head.seq, broken)
        if voucher is None:
            why = (
                f"the chain starts after record {head.anchor_seq}, but no checkpoint signed by this server "
                "vouches for that start: records were removed outside a retention purge (or purged before "
                "checkpoints were signed)"
            )
            return VerifyReport(v.checked, first, head.seq, broken or Broken(head.anchor_seq + 1, why), why)
        start = (
            f"the chain starts after record {head.anchor_seq}, removed by the retention purge of "
            f"{iso(voucher.ts)} (signed checkpoint: record {voucher.seq})"
        )
        return VerifyReport(v.checked, first, head.seq, broken, start)

    async def purge_expired(self, now: int | None = None) -> int:
        """Remove records older than the retention period (0 days: keep for ever)."""
        if self.retention_days <= 0:
            return 0
        removed, anchor = await self.store.purge_before((now or now_ms()) - self.retention_days * DAY_MS)
        if removed:
            head = await self.store.head()
            checkpoint = sign_json(
                {"anchor_seq": head.anchor_seq, "anchor_hash": head.anchor_hash}, self.server_name, self.signing_key
            )
            await self.record(
                "audit.purged",
                details={
                    "removed": removed,
                    "anchor_seq": anchor,
                    "retention_days": self.retention_days,
                    "checkpoint": checkpoint,
                },
            )
        return removed

    def _vouches(self, record: Record, anchor_seq: int, anchor_hash: str) -> bool:
        """Whether `record` is a purge checkpoint, signed by this server, for this anchor."""
        checkpoint = record.details.get("checkpoint") if record.kind == "audit.purged" else None
        if not isinstance(checkpoint, dict):
            return False
        if checkpoint.get("anchor_seq") != anchor_seq or checkpoint.get("anchor_hash") != anchor_hash:
            return False
        try:
            verify_signed_json(dict(checkpoint), self.server_name, get_verify_key(self.signing_key))
        except SignatureVerifyException:
            return False
        return True


def _call_joined(ev: StoredEvent) -> Entry:
    """Which room, which device, which call application: the membership's transports, keys and
    anything else it carries stay out of the log."""
    application, device = ev.content.get("application"), ev.content.get("device_id")
    return entry(
        "call.joined",
        ev.sender,
        ev.room_id,
        # State events carry no sending device; the membership names the device that joins.
        device=ev.device_id or (device if isinstance(device, str) else None),
        details={
            "event_id": ev.event_id,
            "application": application if isinstance(application, str) else None,
        },
        ts=ev.origin_server_ts,
    )


class _DeviceAudit(DeviceHooks):
    def __init__(self, audit: AuditService) -> None:
        self.audit = audit

    async def device_added(self, user_id: str, device_id: str) -> None:
        await self.audit.record("device.added", user_id, user_id, device=device_id)

    async def devices_removed(self, user_id: str, device_ids: list[str]) -> None:
        await self.audit.record_many([entry("device.removed", user_id, user_id, device=d) for d in device_ids])
