"""Send-to-device messaging: queue per device, deliver in order through /sync, delete once the device
has synced past them (so nothing is lost across a restart or a dropped response)."""

from __future__ import annotations

from typing import Any

import structlog

from paigham.bus.base import StreamUpdate
from paigham.domain.canonical_json import encode
from paigham.errors import Codes, MatrixError
from paigham.ids import is_valid_user_id
from paigham.requester import Requester
from paigham.services.publisher import Publisher
from paigham.storage.e2ee_inbox import InboxStore
from paigham.storage.sync_probe import TO_DEVICE
from paigham.sync.model import Events, SyncRequest, SyncResponse
from paigham.types import JsonDict

log = structlog.get_logger(__name__)
SYNC_LIMIT = 100  # messages per /sync response (the spec's recommendation)
MAX_TARGETS = 10_000
MAX_MESSAGE_BYTES = 65_536


class ToDeviceService:
    def __init__(self, server_name: str, inbox: InboxStore, publisher: Publisher) -> None:
        self.server_name = server_name
        self.inbox = inbox
        self.publisher = publisher

    async def send(self, rq: Requester, event_type: str, txn_id: str, messages: Any) -> None:
        _check_ids(event_type, txn_id)
        local = self._validate(messages)
        done = await self.inbox.enqueue(rq.user_id, rq.device_id, txn_id, event_type, local)
        if done is not None and done.position:
            await self.publisher.publish(StreamUpdate(done.position, users=done.users))

    def _validate(self, messages: Any) -> dict[str, dict[str, dict[str, Any]]]:
        if not isinstance(messages, dict):
            raise MatrixError(400, Codes.BAD_JSON, "messages must map user IDs to device IDs to contents")
        local: dict[str, dict[str, dict[str, Any]]] = {}
        targets = 0
        for user_id, by_device in messages.items():
            if not is_valid_user_id(user_id):
                raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid user ID {user_id!r}"[:300])
            if not isinstance(by_device, dict):
                raise MatrixError(400, Codes.BAD_JSON, "messages must map user IDs to device IDs to contents")
            for device_id, content in by_device.items():
                _check_message(device_id, content)
            targets += len(by_device)
            if targets > MAX_TARGETS:
                raise MatrixError(400, Codes.TOO_LARGE, f"At most {MAX_TARGETS} recipient devices per request")
            if user_id.split(":", 1)[1] == self.server_name:
                local[user_id] = by_device
            else:
                log.debug("to_device.remote_dropped", user_id=user_id)  # no federation (yet)
        return local

    async def sync_section(self, req: SyncRequest, response: SyncResponse) -> None:
        """/sync extension: syncing from `since` acknowledges what the previous response delivered;
        then the oldest pending messages (at most SYNC_LIMIT) are delivered, and the rest deferred
        past this response's next_batch."""
        if not req.probe.has(TO_DEVICE):  # the device's inbox is empty: nothing to acknowledge or deliver
            return
        rq = req.requester
        response.to_device = Events(await self.deliver(rq.user_id, rq.device_id, req.since, req.upto, SYNC_LIMIT))

    async def deliver(self, user_id: str, device_id: str, since: int | None, upto: int, limit: int) -> list[JsonDict]:
        """Acknowledge what was delivered up to `since`, then give the oldest `limit` pending messages;
        those that do not fit move past `upto` (so a later `since` of `upto` does not acknowledge them).
        /sync and the sliding sync `to_device` extension both deliver through here."""
        if since is not None:
            await self.inbox.acknowledge(user_id, device_id, since)
        pending = await self.inbox.pending(user_id, device_id, upto, limit + 1)
        if len(pending) > limit:
            pending = pending[:limit]
            await self.inbox.defer(user_id, device_id, upto, pending[-1].seq)
        return [m.to_json() for m in pending]


def _check_ids(event_type: str, txn_id: str) -> None:
    if not event_type or len(event_type) > 255:
        raise MatrixError(400, Codes.INVALID_PARAM, "The event type must be 1 to 255 characters")
    if not txn_id or len(txn_id) > 255:
        raise MatrixError(400, Codes.INVALID_PARAM, "The transaction ID must be 1 to 255 characters")


def _check_message(device_id: Any, content: Any) -> None:
    if not isinstance(device_id, str) or not device_id or len(device_id) > 255:
        raise MatrixError(400, Codes.INVALID_PARAM, "Device IDs must be 1 to 255 characters")
    if not isinstance(content, dict):
        raise MatrixError(400, Codes.BAD_JSON, "Each message content must be an object")
    if len(encode(content)) > MAX_MESSAGE_BYTES:
        raise MatrixError(400, Codes.TOO_LARGE, f"A to-device message is limited to {MAX_MESSAGE_BYTES} bytes")
