"""matrix-nio helpers: token registration through User-Interactive Auth, sync-until-condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    LoginResponse,
    MegolmEvent,
    SyncResponse,
)

SYNC_POLL_MS = 2000
DEFAULT_WAIT_S = 20.0


class RegistrationFailed(AssertionError):
    pass


@dataclass
class Account:
    user_id: str
    password: str
    localpart: str
    device_id: str
    access_token: str


async def register_with_token(
    base_url: str,
    localpart: str,
    password: str,
    token: str,
    device_name: str = "acceptance",
) -> Account:
    """Register through the spec's UIA flow, following the flows the server advertises.

    1. POST /register without ``auth`` -> 401 {flows, params, session}
    2. for each stage of the first flow made only of stages we can do
       (m.login.registration_token, m.login.dummy), POST with ``auth={type, session, ...}``
       until the server answers 200.
    """
    url = f"{base_url}/_matrix/client/v3/register"
    body: dict[str, Any] = {
        "username": localpart,
        "password": password,
        "initial_device_display_name": device_name,
    }
    trace: list[str] = []
    async with aiohttp.ClientSession() as http:

        async def post(payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            async with http.post(url, json=payload) as resp:
                data = await resp.json(content_type=None)
                trace.append(f"POST /register auth={payload.get('auth')} -> {resp.status} {data}")
                return resp.status, data

        status, data = await post(body)
        if status != 401 or "session" not in data or "flows" not in data:
            raise RegistrationFailed(
                "expected 401 with a UIA session and flows from POST /register without auth\n" + "\n".join(trace)
            )
        session = data["session"]
        doable = {"m.login.registration_token", "m.login.dummy"}
        flows = [f.get("stages", []) for f in data["flows"]]
        flow = next((f for f in flows if set(f) <= doable and "m.login.registration_token" in f), None)
        if flow is None:
            flow = next((f for f in flows if set(f) <= doable), None)
        if flow is None:
            raise RegistrationFailed(f"no UIA flow we can complete in {flows}\n" + "\n".join(trace))
        completed = set(data.get("completed", []))
        for stage in flow:
            if stage in completed:
                continue
            auth: dict[str, Any] = {"type": stage, "session": session}
            if stage == "m.login.registration_token":
                auth["token"] = token
            status, data = await post({**body, "auth": auth})
            if status == 200:
                break
            if status != 401:
                raise RegistrationFailed(f"stage {stage} failed\n" + "\n".join(trace))
            completed = set(data.get("completed", []))
            if stage not in completed:
                raise RegistrationFailed(f"stage {stage} not marked completed\n" + "\n".join(trace))
        if status != 200:
            raise RegistrationFailed("all stages done but registration did not finish\n" + "\n".join(trace))
        for key in ("user_id", "access_token", "device_id"):
            if not data.get(key):
                raise RegistrationFailed(f"200 response lacks {key}\n" + "\n".join(trace))
        return Account(
            user_id=data["user_id"],
            password=password,
            localpart=localpart,
            device_id=data["device_id"],
            access_token=data["access_token"],
        )


@dataclass
class Tracked:
    """A nio client plus everything it has seen in sync, for ordered / no-duplicate assertions."""

    client: AsyncClient
    account: Account
    timeline: dict[str, list[Any]] = field(default_factory=dict)  # room_id -> events in order
    seen_ids: dict[str, set[str]] = field(default_factory=dict)
    first_seen: dict[str, str] = field(default_factory=dict)  # event_id -> "since -> next_batch"
    duplicates: list[str] = field(default_factory=list)
    e2ee: bool = False

    @property
    def user_id(self) -> str:
        return self.account.user_id

    def record(self, resp: SyncResponse, since: str | None = None) -> None:
        for room_id, room in list(resp.rooms.join.items()) + list(resp.rooms.leave.items()):
            seen = self.seen_ids.setdefault(room_id, set())
            tl = self.timeline.setdefault(room_id, [])
            for ev in room.timeline.events:
                eid = getattr(ev, "event_id", None)
                if eid and eid in seen:
                    body = str(ev.source.get("content", {}).get("body", ""))[:20]
                    self.duplicates.append(
                        f"{eid} ({ev.source.get('type')} {body!r}) in {room_id} again in /sync since={since} "
                        f"-> {resp.next_batch} limited={room.timeline.limited}; "
                        f"first delivered by /sync {self.first_seen.get(eid)}"
                    )
                    continue
                if eid:
                    seen.add(eid)
                    self.first_seen[eid] = f"since={since} -> {resp.next_batch} limited={room.timeline.limited}"
                tl.append(ev)

    async def sync_once(self, timeout_ms: int = SYNC_POLL_MS) -> SyncResponse:
        since = self.client.next_batch
        resp = await self.client.sync(timeout=timeout_ms, full_state=False)
        if not isinstance(resp, SyncResponse):
            raise AssertionError(f"{self.user_id}: /sync failed: {resp!r}")
        self.record(resp, since)
        if self.e2ee:
            await self.crypto_housekeeping()
            self.retry_decryption()
        return resp

    def retry_decryption(self) -> None:
        """Room keys can arrive (to-device) in a later sync than the message: decrypt again."""
        for events in self.timeline.values():
            for i, ev in enumerate(events):
                if isinstance(ev, MegolmEvent):
                    with contextlib.suppress(EncryptionError):
                        events[i] = self.client.decrypt_event(ev)

    async def crypto_housekeeping(self) -> None:
        c = self.client
        if c.should_upload_keys:
            r = await c.keys_upload()
            assert type(r).__name__ == "KeysUploadResponse", f"keys_upload failed: {r!r}"
        if c.should_query_keys:
            r = await c.keys_query()
            assert type(r).__name__ == "KeysQueryResponse", f"keys_query failed: {r!r}"
        if c.should_claim_keys:
            r = await c.keys_claim(c.get_users_for_key_claiming())
            assert type(r).__name__ == "KeysClaimResponse", f"keys_claim failed: {r!r}"
        await c.send_to_device_messages()

    async def sync_until(
        self,
        predicate: Callable[[SyncResponse], Any],
        what: str,
        timeout: float = DEFAULT_WAIT_S,
    ) -> Any:
        """Sync until ``predicate(response)`` is truthy; return its value. Fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.user_id}: timed out after {timeout}s waiting for {what}")
            resp = await asyncio.wait_for(
                self.sync_once(timeout_ms=min(SYNC_POLL_MS, max(0, int(remaining * 1000) - 200))),
                timeout=remaining + 5,
            )
            value = predicate(resp)
            if value:
                return value

    async def wait_timeline(
        self, room_id: str, cond: Callable[[Any], bool], what: str, timeout: float = DEFAULT_WAIT_S
    ) -> Any:
        """Wait until an event satisfying ``cond`` is in the accumulated timeline of ``room_id``."""

        def check(_: SyncResponse | None = None) -> Any:
            for ev in self.timeline.get(room_id, []):
                if cond(ev):
                    return ev
            return None

        found = check()
        if found:
            return found
        return await self.sync_until(check, what, timeout)

    def event_ids(self, room_id: str) -> list[str]:
        return [e.event_id for e in self.timeline.get(room_id, []) if getattr(e, "event_id", None)]


def make_client(
    base_url: str,
    user_id: str,
    device_id: str | None = None,
    store_path: Path | None = None,
    e2ee: bool = False,
) -> AsyncClient:
    config = AsyncClientConfig(
        encryption_enabled=e2ee,
        store_sync_tokens=False,
        max_timeouts=3,
        request_timeout=30,
    )
    return AsyncClient(
        base_url,
        user_id,
        device_id=device_id,
        store_path=str(store_path) if store_path else "",
        config=config,
    )


async def login_tracked(
    base_url: str,
    account: Account,
    store_path: Path | None = None,
    e2ee: bool = False,
    device_name: str = "nio-acceptance",
) -> Tracked:
    """Log in with nio's own ``login`` (password) and wrap the client."""
    if e2ee:
        assert store_path is not None
        store_path.mkdir(parents=True, exist_ok=True)
    client = make_client(base_url, account.user_id, store_path=store_path, e2ee=e2ee)
    resp = await client.login(account.password, device_name=device_name)
    if not isinstance(resp, LoginResponse):
        await client.close()
        raise AssertionError(f"nio login of {account.user_id} failed: {resp!r}")
    assert resp.user_id == account.user_id, (resp.user_id, account.user_id)
    logged = Account(account.user_id, account.password, account.localpart, resp.device_id, resp.access_token)
    return Tracked(client=client, account=logged, e2ee=e2ee)
