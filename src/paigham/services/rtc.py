"""The MatrixRTC authorization service (MSC4195), built in: what element-hq/lk-jwt-service does next to
a LiveKit SFU, answered by the homeserver itself under /_paigham/livekit.

A client (Element Call) asks its homeserver for an OpenID token, hands it to this service with the
room it wants to call in, and gets back the SFU's URL and a LiveKit JWT for that room. Here the token
is checked in-process (services/openid.py, no HTTP call to ourselves); then the user must be joined
to the room and allowed calls by their organisation's policy. Tokens are minted with the official
`livekit-api` package, short-lived (`livekit_token_lifetime_s`: the SFU renews the token of a
connected participant itself), and each grant is recorded in the audit log (metadata only).

Two request shapes, as lk-jwt-service has them: the legacy `POST /sfu/get` ({room, openid_token,
device_id}) and `POST /get_token` ({room_id, slot_id, openid_token, member: {id, claimed_user_id,
claimed_device_id}}). The LiveKit room and identity are derived as it derives them (domain/rtc.py).
Delegation of the delayed leave event (delay_id, delay_timeout) is accepted and not acted on: the
client keeps restarting its own delayed event, as matrix-js-sdk's MembershipManager does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.config import Config
from paigham.domain import rtc
from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.services.openid import OpenIdService
from paigham.services.ports import AuditLog
from paigham.services.stages import RoomCtx
from paigham.storage.events import EventStore
from paigham.types import JsonDict

SERVICE_PATH = "/_paigham/livekit"
MAX_TOKEN_LIFETIME_S = 24 * 3600

Str = Annotated[str, msgspec.Meta(max_length=255)]
UNAUTHORISED = "The request could not be authorised."
MISSING_MEMBER = "The request body `member` is missing `id`, `claimed_user_id` or `claimed_device_id`"
MISSING_OPENID = "The request body `openid_token` is missing `access_token` or `matrix_server_name`"


class OpenIdTokenBody(msgspec.Struct, kw_only=True):
    access_token: Str = ""
    token_type: Str = ""
    matrix_server_name: Str = ""
    expires_in: int = 0


class Member(msgspec.Struct, kw_only=True):
    id: Str = ""
    claimed_user_id: Str = ""
    claimed_device_id: Str = ""


class LegacyTokenRequest(msgspec.Struct, kw_only=True):
    """POST /sfu/get (deprecated in lk-jwt-service; Element Call still falls back to it)."""

    room: Str = ""
    openid_token: OpenIdTokenBody = msgspec.field(default_factory=OpenIdTokenBody)
    device_id: Str = ""
    delay_id: Str | None = None
    delay_timeout: int | None = None
    delay_cs_api_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None


class TokenRequest(msgspec.Struct, kw_only=True):
    """POST /get_token (MSC4195)."""

    room_id: Str = ""
    slot_id: Str = ""
    openid_token: OpenIdTokenBody = msgspec.field(default_factory=OpenIdTokenBody)
    member: Member = msgspec.field(default_factory=Member)
    delay_id: Str | None = None
    delay_timeout: int | None = None
    delay_cs_api_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None


@dataclass(frozen=True, slots=True)
class LiveKitSettings:
    url: str  # wss://… as clients reach the SFU
    api_key: str
    api_secret: str
    token_lifetime_s: int

    @classmethod
    def from_config(cls, config: Config) -> LiveKitSettings | None:
        """The SFU's settings, or None when no SFU is configured; bad settings stop the server."""
        if not config.livekit_url:
            return None
        if not config.livekit_url.startswith(("wss://", "ws://", "https://", "http://")):
            raise ValueError("livekit_url must be the SFU's wss:// (or ws:// for local tests) URL")
        secret = config.livekit_api_secret
        if config.livekit_api_secret_file:
            secret = Path(config.livekit_api_secret_file).read_text(encoding="utf-8").strip()
        if not config.livekit_api_key or not secret:
            raise ValueError("livekit_url is set: livekit_api_key and livekit_api_secret(_file) are needed too")
        if not 1 <= config.livekit_token_lifetime_s <= MAX_TOKEN_LIFETIME_S:
            raise ValueError(f"livekit_token_lifetime_s must be from 1 to {MAX_TOKEN_LIFETIME_S}")
        return cls(config.livekit_url, config.livekit_api_key, secret, config.livekit_token_lifetime_s)


def service_url(config: Config) -> str:
    """Where clients reach this service (the foci's `livekit_service_url`)."""
    return config.base_url.rstrip("/") + SERVICE_PATH


def transports(config: Config) -> list[JsonDict]:
    """The RTC transports (MSC4143) this server offers: its SFU, if one is configured."""
    if not config.livekit_url:
        return []
    return [{"type": "livekit", "livekit_service_url": service_url(config)}]


async def refuse_foreign_call_member(_: AsyncConnection, event: StoredEvent, __: RoomCtx) -> None:
    """Writer check: a call membership (org.matrix.msc3401.call.member) may only be written under a
    state key that begins with its sender's user ID (domain/rtc.py `owns_call_member_key`): the
    ownership rule of MSC3757, applied in every room version, so no member can put another into a
    call or take them out of one."""
    key = event.state_key
    if event.type == rtc.CALL_MEMBER and key is not None and not rtc.owns_call_member_key(key, event.sender):
        raise MatrixError(403, Codes.FORBIDDEN, "A call membership's state key must begin with your own user ID")


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token request asks for, once checked: who, in which Matrix room, as which LiveKit
    participant in which LiveKit room."""

    user_id: str
    device_id: str
    room_id: str
    livekit_room: str
    identity: str
    endpoint: str


class RtcService:
    def __init__(
        self,
        settings: LiveKitSettings | None,
        server_name: str,
        openid: OpenIdService,
        events: EventStore,
        calls_allowed: Callable[[str], Awaitable[bool]],
        audit: AuditLog,
    ) -> None:
        self.settings = settings
        self.server_name = server_name
        self.openid = openid
        self.events = events
        self.calls_allowed = calls_allowed
        self.audit = audit

    def require_configured(self) -> LiveKitSettings:
        if self.settings is None:
            raise MatrixError(404, Codes.UNRECOGNIZED, "No MatrixRTC (LiveKit) service is configured on this server")
        return self.settings

    async def legacy_token(self, req: LegacyTokenRequest, ip: str | None) -> JsonDict:
        """POST /sfu/get: {url, jwt} for the legacy request shape."""
        self.require_configured()
        if not req.room:
            raise MatrixError(400, Codes.BAD_JSON, "Missing room parameter")
        user_id = await self._verify(req.openid_token, claimed_user_id=None)
        device_id = req.device_id
        grant = Grant(
            user_id,
            device_id,
            req.room,
            rtc.livekit_room(req.room, rtc.LEGACY_SLOT),
            rtc.legacy_identity(user_id, device_id),
            "sfu/get",
        )
        return await self._grant(grant, ip)

    async def token(self, req: TokenRequest, ip: str | None) -> JsonDict:
        """POST /get_token: {url, jwt} for the MSC4195 request shape."""
        self.require_configured()
        if not req.room_id or not req.slot_id:
            raise MatrixError(400, Codes.BAD_JSON, "The request body is missing `room_id` or `slot_id`")
        m = req.member
        if not m.id or not m.claimed_user_id or not m.claimed_device_id:
            raise MatrixError(400, Codes.BAD_JSON, MISSING_MEMBER)
        user_id = await self._verify(req.openid_token, claimed_user_id=m.claimed_user_id)
        grant = Grant(
            user_id,
            m.claimed_device_id,
            req.room_id,
            rtc.livekit_room(req.room_id, req.slot_id),
            rtc.livekit_identity(user_id, m.claimed_device_id, m.id),
            "get_token",
        )
        return await self._grant(grant, ip)

    async def _verify(self, token: OpenIdTokenBody, claimed_user_id: str | None) -> str:
        """The user the OpenID token was issued to (401 M_UNAUTHORIZED as lk-jwt-service answers)."""
        if not token.access_token or not token.matrix_server_name:
            raise MatrixError(400, Codes.BAD_JSON, MISSING_OPENID)
        if token.matrix_server_name != self.server_name:
            # This server does not federate: another server's users have no calls here.
            raise MatrixError(401, Codes.UNAUTHORIZED, UNAUTHORISED)
        user_id = await self.openid.user_of(token.access_token)
        if user_id is None or (claimed_user_id is not None and claimed_user_id != user_id):
            raise MatrixError(401, Codes.UNAUTHORIZED, UNAUTHORISED)
        return user_id

    async def _grant(self, grant: Grant, ip: str | None) -> JsonDict:
        settings = self.require_configured()
        if not await self.calls_allowed(grant.user_id):
            raise MatrixError(403, Codes.FORBIDDEN, rtc.CALLS_REFUSED)
        membership = await self.events.membership(grant.user_id, grant.room_id)
        if membership is None or membership.membership != "join":
            raise MatrixError(403, Codes.FORBIDDEN, "You are not a member of this room")
        jwt = mint(settings, grant.livekit_room, grant.identity)
        await self.audit.record(
            "call.token",
            grant.user_id,
            grant.room_id,
            ip,
            grant.device_id or None,
            details={
                "endpoint": grant.endpoint,
                "livekit_room": grant.livekit_room,
                "expires_in": settings.token_lifetime_s,
            },
        )
        return {"url": settings.url, "jwt": jwt}


def mint(settings: LiveKitSettings, room: str, identity: str) -> str:
    """A LiveKit JWT to join `room` as `identity`: publish, subscribe, data and its own metadata (the
    grants lk-jwt-service gives), no room administration, no room creation."""
    # Imported here, not at start-up: the package brings aiohttp and protobuf (~14 MB of resident memory)
    # into every process, and only a server that hands out call tokens needs it.
    from livekit.api.access_token import AccessToken, VideoGrants

    grants = VideoGrants(
        room_join=True,
        room=room,
        room_create=False,
        can_publish=True,
        can_subscribe=True,
        can_publish_data=True,
        can_update_own_metadata=True,
    )
    token = (
        AccessToken(settings.api_key, settings.api_secret)
        .with_identity(identity)
        .with_grants(grants)
        .with_ttl(timedelta(seconds=settings.token_lifetime_s))
    )
    return token.to_jwt()
