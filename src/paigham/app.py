"""Composition root: config and secrets → storage and the bus → what the core consults (plug-in
parts) → the core services → what acts through them (plug-in services) → routes. Each object is built
once, with what it needs as constructor arguments."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api import ops
from paigham.api.admin import media as admin_media
from paigham.api.admin import moderation, registration_tokens, synapse_rooms, synapse_users
from paigham.api.admin import org as admin_org
from paigham.api.admin import policy as admin_policy
from paigham.api.admin import pushers as admin_pushers
from paigham.api.admin import reports as admin_reports
from paigham.api.client import (
    account_data,
    devices,
    discovery,
    ephemeral,
    keys,
    login,
    profile,
    push_rules,
    register,
    relations,
    reports,
    room_directory,
    room_events,
    room_info,
    room_keys,
    rooms,
    sliding_sync,
    spaces,
    sync,
    to_device,
    voip,
)
from paigham.api.client import delayed_events as delayed_api
from paigham.api.client import media as media_api
from paigham.api.client import openid as openid_api
from paigham.api.client import pushers as pushers_api
from paigham.api.client import rtc as rtc_api
from paigham.api.compression import CompressResponses
from paigham.api.http import RejectNul, error_response, ok
from paigham.api.routing import grouped
from paigham.audit.service import AuditService
from paigham.bus.base import Bus, InMemoryBus, Listener
from paigham.config import Config
from paigham.data_dir import prepare_data_dir
from paigham.e2ee.wiring import E2EE
from paigham.errors import Codes, MatrixError
from paigham.i18n import negotiate, translate
from paigham.media.service import MediaService
from paigham.metrics import HTTP_COMPRESSED, MetricsMiddleware, settle_garbage_collector
from paigham.org.wiring import OrgRules, OrgServices
from paigham.services import passwords, server_identity
from paigham.services.admin import AdminService
from paigham.services.admin_messages import AdminMessages
from paigham.services.admin_rooms import AdminRooms
from paigham.services.admin_users import AdminUsers
from paigham.services.auth import AuthService, CredentialChanges, TokenCache
from paigham.services.delayed_events import DelayedEventHooks, DelayedEvents
from paigham.services.devices import DeviceService
from paigham.services.ephemeral import EphemeralService
from paigham.services.filtering import FilterService
from paigham.services.jobs import Every, Jobs
from paigham.services.login_guard import LoginGuard
from paigham.services.moderation_checks import ModerationChecks
from paigham.services.openid import OpenIdService
from paigham.services.outbound import OutboundClient, OutboundPolicy
from paigham.services.ports import AccountHooks
from paigham.services.presence import PresenceService
from paigham.services.profile import ProfileService
from paigham.services.provisioning import Provisioning
from paigham.services.publisher import Publisher
from paigham.services.push import PushService
from paigham.services.push_delivery import PushDelivery, PushWakeups
from paigham.services.pushers import NotificationService, PusherService
from paigham.services.registration import RegistrationService
from paigham.services.registration_tokens import RegistrationTokens
from paigham.services.relations import RelationService
from paigham.services.reports import ReportService
from paigham.services.room_directory import RoomDirectoryService
from paigham.services.room_info import RoomInfo
from paigham.services.rooms import RoomService
from paigham.services.rtc import LiveKitSettings, RtcService, refuse_foreign_call_member
from paigham.services.serializer import EventSerializer
from paigham.services.spaces import SpaceHierarchy
from paigham.services.stages import Stages
from paigham.services.tags import TagService
from paigham.services.timeline import TimelineService
from paigham.services.uia import UIAService
from paigham.services.voip import TurnService
from paigham.services.writer import EventWriter
from paigham.signing_keys import Secrets, write_admin_credentials
from paigham.storage.account_data import AccountDataStore
from paigham.storage.accounts import AccountStore
from paigham.storage.admin import AdminStore
from paigham.storage.aliases import AliasStore
from paigham.storage.audit import AuditStore
from paigham.storage.database import Database
from paigham.storage.delayed_events import DelayedEventStore
from paigham.storage.event_writes import EventWriteStore
from paigham.storage.events import EventStore
from paigham.storage.filters import FilterStore
from paigham.storage.logins import LoginStore
from paigham.storage.media import MediaStore
from paigham.storage.migrate import migrate
from paigham.storage.notifications import NotificationStore
from paigham.storage.openid import OpenIdStore
from paigham.storage.presence import PresenceStore
from paigham.storage.push_actions import PushActionStore
from paigham.storage.push_delivery import PushDeliveryStore
from paigham.storage.push_rules import PushRuleStore
from paigham.storage.pushers import PusherStore
from paigham.storage.receipts import ReceiptStore
from paigham.storage.reports import ReportStore
from paigham.storage.room_info import RoomInfoStore
from paigham.storage.server_state import ServerStateStore
from paigham.storage.sliding_sync import SlidingSyncStore
from paigham.storage.typing_notices import TypingStore
from paigham.storage.unavailable import RETRY_AFTER_S, database_unreachable
from paigham.sync.notifier import Holding, Notifier
from paigham.sync.service import SyncService
from paigham.sync.sliding import SlidingSyncService
from paigham.sync.sources import StreamReads

ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]

log = structlog.get_logger(__name__)
# server_state key: the directory index was given every account that lacked terms (App.index_directory)
DIRECTORY_INDEXED = "directory_indexed"


class Server:
    """Holds what the process shares; built once by `create_app`, never passed into handlers whole.

    The composition root. Each object is built once, in dependency order, and is given what it needs
    as constructor arguments; nothing is patched afterwards (docs/architecture.md, "Wiring").
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        prepare_data_dir(config)  # 0700, files 0600, umask 077
        passwords.configure(config.password_argon2_time_cost, config.password_argon2_memory_kib)
        self.secrets = Secrets.load(config.data_path, config.registration_shared_secret)
        self._storage_and_bus()
        self._what_the_core_consults()
        self._core_services()
        self._what_acts_through_the_core()
        self._what_the_handlers_call()

    def _storage_and_bus(self) -> None:
        """The database, the core's stores, and the bus (every worker's token cache forgets the users
        another worker announces; the account store announces the changes made here)."""
        self.db = Database(self.config.effective_database_url)
        self.events, self.aliases = EventStore(self.db), AliasStore(self.db)
        self.server_state = ServerStateStore(self.db)
        # What moves besides room events, one store per area.
        self.account_data, self.receipts = AccountDataStore(self.db), ReceiptStore(self.db)
        self.typing, self.presence_store = TypingStore(self.db), PresenceStore(self.db)
        self.push_rules, self.push_actions = PushRuleStore(self.db), PushActionStore(self.db)
        holding = Holding(self.config.sync_member_news_hold_ms / 1000, self.config.sync_big_room_watchers)
        self.notifier, tokens, self.push_wakeups = Notifier(holding), TokenCache(), PushWakeups()
        listeners = [self.notifier.on_update, tokens.on_update, self.push_wakeups.on_update]
        on_resume = [self.notifier.wake_all, tokens.clear, self.push_wakeups.on_resume]
        self.bus = _bus(self.config, listeners, on_resume)
        self.publisher = Publisher(self.bus, self.events)
        self.credentials = CredentialChanges(tokens, self.publisher.credentials_changed)
        self.accounts = AccountStore(self.db, self.credentials)

    def _what_the_core_consults(self) -> None:
        """Plug-in parts the core services call, built before them: the audit log, E2EE, the
        organisation's policies and directory, and moderation (suspensions, blocked rooms)."""
        config = self.config
        self.audit = AuditService(
            AuditStore(self.db),
            config.audit_retention_days,
            signing_key=self.secrets.signing_key,
            server_name=config.server_name,
        )
        self.uia = UIAService(config.server_name, self.accounts)
        self.e2ee = E2EE(
            config,
            self.db,
            self.accounts,
            self.uia,
            self.publisher,
            cross_signing_changed=self.audit.cross_signing_changed,
        )
        self.org_rules = OrgRules(config, self.db, self.accounts, self.events, self.audit)
        self.policies, self.enforcer = self.org_rules.policies, self.org_rules.enforcer
        self.directory = self.org_rules.directory
        self.admin_store = AdminStore(self.db)
        self.moderation = ModerationChecks(self.admin_store, self.events, self.accounts)
        self.push = PushService(self.push_rules, self.events, self.publisher)
        self.pushers = PusherService(
            config, PusherStore(self.db), self.accounts, self.audit, on_added=self.push_wakeups.pusher_added
        )
        self.openid = OpenIdService(
            config.server_name, OpenIdStore(self.db), self.accounts, config.openid_token_lifetime_s
        )
        self.delayed_store = DelayedEventStore(self.db)
        self.delayed_hooks = DelayedEventHooks(self.delayed_store, enabled=config.delayed_events_enabled)

    def _stages(self) -> Stages:
        """What the writer runs for every event besides the auth rules, in this order (the stage
        table is in docs/architecture.md): refusals first, then the rows effects add, then what
        follows the commit."""
        return Stages(
            checks=(
                ("blocked room", self.moderation.refuse_blocked),
                ("suspended sender", self.moderation.refuse_suspended),
                ("encryption lock", self.e2ee.lock.check),
                ("organisation policy", self.org_rules.event_policy.check),
                ("call membership keys", refuse_foreign_call_member),
            ),
            effects=(("push actions", self.push.push_actions),),
            after_commit=(
                ("publish to sync", self.publisher.events_committed),
                ("count events", ops.count_events),
                ("audit", self.audit.on_events),
                ("delayed state overrides", self.delayed_hooks.on_events),
            ),
        )

    def _core_services(self) -> None:
        config = self.config
        self.writer = EventWriter(
            self.db, self.events, EventWriteStore(self.db), config.server_name, self.secrets.signing_key, self._stages()
        )
        self.rooms = RoomService(
            config, self.writer, self.events, self.accounts, self.aliases, creation_hooks=[self.enforcer.room_creation]
        )
        self.auth = AuthService(
            config, self.accounts, self.credentials, cache_usable=self.bus.is_ready, hooks=self._account_hooks()
        )
        self.serializer = EventSerializer(self.events)
        self.timeline = TimelineService(self.db, self.events, self.serializer)
        self.profiles = ProfileService(
            self.accounts,
            self.events,
            self.rooms,
            directory=self.directory.search,
            extra_fields=[self.directory.profile_fields],
            guards=[self.directory.guard_profile, self.moderation.guard_profile],
        )
        self.presence = PresenceService(self.presence_store, self.publisher, enabled=config.presence_enabled)
        self.ephemeral = EphemeralService(self.events, self.receipts, self.typing, self.account_data, self.publisher)
        self.filters = FilterService(FilterStore(self.db))
        self.sync = SyncService(
            self.db,
            self.events,
            StreamReads(self.account_data, self.receipts, self.push_actions, self.typing, self.presence_store),
            self.serializer,
            self.notifier,
            self.push.rules_for_sync,
            presence_enabled=config.presence_enabled,
            extensions=self.e2ee.sync_sections,
        )
        self.sliding_sync = SlidingSyncService(
            self.db,
            self.events,
            StreamReads(self.account_data, self.receipts, self.push_actions, self.typing, self.presence_store),
            self.account_data,
            self.receipts,
            self.serializer,
            self.notifier,
            self.push.rules_for_sync,
            SlidingSyncStore(self.db),
            self.e2ee.sliding_parts,
        )
        self.login_guard = LoginGuard(config, LoginStore(self.db), self.audit)

    def _account_hooks(self) -> AccountHooks:
        """What AuthService calls when devices and accounts change, and the limits it applies."""
        return AccountHooks(
            devices=[self.e2ee.lists, self.audit.device_hooks(), self.pushers],
            deactivated=[
                self.delayed_hooks.user_deactivated,  # first: none fires while the account leaves its rooms
                self.rooms.leave_all,
                self.e2ee.user_deactivated,
                self.directory.account_deactivated,
                self.pushers.user_deactivated,
                self.openid.user_deactivated,
            ],
            policy=self.enforcer,
        )

    def _what_acts_through_the_core(self) -> None:
        """Plug-in parts built from the core services: the organisation's import, spaces, notices and
        renewals; admin actions; media; and the background jobs."""
        org = OrgServices(
            self.config,
            self.db,
            self.org_rules,
            auth=self.auth,
            rooms=self.rooms,
            events=self.events,
            profiles=self.profiles,
            account_data=self.account_data,
            audit=self.audit,
            moderation=self.moderation,
        )
        self.org, self.spaces, self.notices, self.renewals = org.service, org.spaces, org.notices, org.renewals
        self.admin = AdminService(
            self.config.server_name,
            self.auth,
            self.rooms,
            self.events,
            self.profiles,
            self.admin_store,
            self.org_rules.store,
            self.audit,
            moderation=self.moderation,
            clear_login_failures=self.login_guard.clear,
            notify=self.notices.send,
        )
        self.provisioning = Provisioning(self.auth, self.audit)
        self.media = MediaService(
            self.config,
            MediaStore(self.db),
            upload_checks=[self.enforcer.media_check],
            uploaded_hooks=[self.enforcer.media_uploaded],
            audit=self.audit,
        )
        self.push_delivery = PushDelivery(
            self.config,
            PushDeliveryStore(self.db),
            self.events,
            self.push.rules_for_sync,
            self.push_wakeups,
            OutboundClient(
                OutboundPolicy(self.config.push_gateway_allowlist, self.config.ip_range_whitelist),
                self.config.push_request_timeout_s,
            ),
        )
        self.delayed = DelayedEvents(self.config, self.delayed_store, self.rooms)
        self.jobs = Jobs(
            [
                Every("audit-retention", 3600, self.audit.purge_expired),
                Every("login-failures", 3600, self.login_guard.purge),
                Every("retention", 3600, self.enforcer.purge_history),
                Every("uia-sessions", 600, self.uia.purge_expired),
                Every("sliding-sync-connections", 3600, self.sliding_sync.purge),
                Every("openid-tokens", 3600, self.openid.purge_expired),
                Every("delayed-events", 3600, self.delayed.purge_finalised),
            ]
        )

    def _what_the_handlers_call(self) -> None:
        """Services only the HTTP handlers call: the admin's views and actions, and the client API's
        rules that need no other service to consult them."""
        config = self.config
        self.admin_users = AdminUsers(self.admin, self.admin_store, self.accounts, self.org_rules.store)
        self.admin_rooms = AdminRooms(config.server_name, self.admin_store)
        self.registration_tokens = RegistrationTokens(self.auth, self.accounts, self.admin_store, self.audit)
        self.admin_messages = AdminMessages(self.admin, self.notices.send, self.spaces.announce, self.audit)
        self.hierarchy = SpaceHierarchy(self.events)
        self.room_directory = RoomDirectoryService(config.server_name, self.events, self.aliases)
        self.registration = RegistrationService(
            self.auth,
            self.uia,
            self.accounts,
            open_registration=config.enable_registration,
            shared_secret=self.secrets.registration_shared_secret,
        )
        self.devices = DeviceService(self.accounts, self.auth, self.uia)
        self.relations = RelationService(self.events, self.serializer, self.timeline)
        self.tags = TagService(self.account_data, self.ephemeral)
        self.room_info = RoomInfo(self.events, self.aliases, RoomInfoStore(self.db))
        self.reports = ReportService(self.events, self.accounts, ReportStore(self.db), self.audit)
        self.notifications = NotificationService(NotificationStore(self.db), self.events, self.serializer)
        self.turn = TurnService(config, self.policies.calls_allowed)
        # MatrixRTC's authorization service; `calls_allowed` is the organisation's policy (TURN asks it too).
        self.rtc = RtcService(
            LiveKitSettings.from_config(config),
            config.server_name,
            self.openid,
            self.events,
            self.policies.calls_allowed,
            self.audit,
        )

    def routes(self) -> list[Route]:
        c = self.config
        return [
            Route("/health", _health, methods=["GET"]),
            *ops.routes(self.db.ping, self.bus.is_ready),
            *discovery.routes(c, self.auth),
            *login.routes(c, self.auth, self.audit, self.login_guard),
            *register.routes(c, self.auth, self.uia, self.registration, self.devices, self.audit),
            *rooms.routes(self.auth, self.rooms),
            *room_events.routes(self.auth, self.writer, self.rooms, self.timeline, self.serializer, self.delayed),
            *delayed_api.routes(self.auth, self.delayed),
            *sync.routes(c, self.auth, self.sync, self.filters, self.presence),
            *sliding_sync.routes(c, self.auth, self.sliding_sync),
            *ephemeral.routes(self.auth, self.ephemeral, self.presence),
            *account_data.routes(self.auth, self.ephemeral, self.tags),
            *profile.routes(self.auth, self.profiles),
            *devices.routes(self.auth, self.devices),
            *room_directory.routes(self.auth, self.room_directory),
            *spaces.routes(self.auth, self.hierarchy),
            *relations.routes(self.auth, self.relations),
            *room_info.routes(self.auth, self.room_info),
            *reports.routes(self.auth, self.reports),
            *admin_reports.routes(self.auth, self.reports),
            *keys.routes(self.auth, self.e2ee.keys, self.e2ee.cross_signing, self.e2ee.lists, self.db.current_position),
            *to_device.routes(self.auth, self.e2ee.to_device),
            *voip.routes(self.auth, self.turn),
            *room_keys.routes(self.auth, self.e2ee.backups),
            *push_rules.routes(self.auth, self.push),
            *pushers_api.routes(self.auth, self.pushers, self.notifications),
            *admin_pushers.routes(self.auth, self.pushers),
            *media_api.routes(c, self.auth, self.media),
            *openid_api.routes(self.auth, self.openid),
            *rtc_api.routes(c, self.auth, self.rtc),
            *admin_media.routes(self.auth, self.media),
            *synapse_users.routes(self.auth, self.admin, self.admin_users),
            *synapse_rooms.routes(self.auth, self.admin, self.admin_rooms),
            *registration_tokens.routes(self.auth, self.registration_tokens),
            *admin_org.routes(self.auth, self.org, self.spaces, self.admin_messages),
            *moderation.routes(self.auth, self.admin, self.admin_users, self.admin_messages),
            *admin_policy.routes(self.auth, self.admin, self.policies, self.enforcer, self.renewals),
        ]

    async def start(self) -> None:
        await migrate(self.db)
        await self.index_directory()
        await self.check_identity()
        await self.bus.start()
        await self.ensure_admin()
        self.jobs.start()
        await self.push_delivery.start()
        await self.delayed.start()

    async def index_directory(self) -> None:
        """Give the user directory's index the accounts it lacks (a database made before the index, or
        accounts written by an older version), once: every account write since keeps its terms current,
        so a completed pass is recorded (`server_state`) and later starts do not look for missing
        accounts again — the look reads every account (1 s at 200,000 on PostgreSQL, per worker start)."""
        index = self.accounts.directory
        await index.tune()
        if await self.server_state.get(DIRECTORY_INDEXED) is not None:
            return
        done = await index.backfill()
        if done:
            log.info("directory.indexed", accounts=done)
        await self.server_state.put_once(DIRECTORY_INDEXED, "1")

    async def check_identity(self) -> None:
        """Refuse to start over data of another server name, or when the system account's name is
        held by an account the server did not create (it would own every unit room)."""
        await server_identity.settle(self.server_state, self.config.server_name)
        await self.spaces.check_system_account()

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.push_delivery.stop()
        await self.delayed.stop()
        await self.writer.finish()
        await self.ephemeral.stop()
        await self.bus.stop()
        await self.db.close()

    async def ensure_admin(self) -> None:
        """First start: create an admin whose password is printed once and kept in admin-credentials."""
        if not self.config.create_admin or await self.accounts.count_users() > 0:
            return
        password = secrets.token_urlsafe(18)
        user_id = await self.auth.create_user("admin", password, admin=True, displayname="Administrator")
        path = write_admin_credentials(Path(self.config.data_dir), user_id, password)
        print(f"Created the first admin account {user_id} with password: {password}", flush=True)
        print(f"(also written to {path}, readable only by this user)", flush=True)


async def _health(_: Request) -> Response:
    return ok({"status": "ok"})


def _bus(config: Config, listeners: Sequence[Listener], on_resume: Sequence[Callable[[], None]]) -> Bus:
    if config.nats_url:
        from paigham.bus.nats import NatsBus

        return NatsBus(config.nats_url, listeners=listeners, on_resume=on_resume)
    return InMemoryBus(listeners)  # one process: never interrupted, nothing to resume


def _matrix_error(default_language: str) -> ExceptionHandler:
    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MatrixError)
        # The `error` text is for people: in their language when a catalogue has it (Accept-Language).
        exc.error = translate(exc.error, negotiate(request.headers.get("accept-language"), default_language))
        return error_response(exc)

    return handle


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(MatrixError(405, Codes.UNRECOGNIZED, "Method not allowed for this endpoint"))
    if exc.status_code == 404:
        return error_response(MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request"))
    return error_response(MatrixError(exc.status_code, Codes.UNKNOWN, str(exc.detail)))


async def _internal_error(request: Request, exc: Exception) -> Response:
    if database_unreachable(exc):  # not a bug: the database is down or out of reach; it will be back
        log.warning("request.database_unreachable", path=request.url.path, error=repr(exc)[:300])
        err = MatrixError(
            503, Codes.UNKNOWN, "The server cannot reach its database; try again shortly",
            retry_after_ms=RETRY_AFTER_S * 1000,
        )  # fmt: skip
        response = error_response(err)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    log.exception("request.failed", path=request.url.path, exc_info=exc)
    return error_response(MatrixError(500, Codes.UNKNOWN, "Internal server error"))


def banner(config: Config) -> str:
    """What `paigham serve` prints once it listens: where, who the first admin is, how to connect."""
    url = f"http://{config.host}:{config.port}"
    credentials = config.data_path / "admin-credentials"
    first = credentials.read_text(encoding="utf-8").split("\n", 1)[0] if credentials.exists() else ""
    admin = (
        f"{first.removeprefix('user_id: ')} — its password is in {credentials}"
        if first.startswith("user_id: ")
        else "create one with: paigham user create NAME --admin"
    )
    rule = "─" * 78
    return "\n".join([
        rule,
        f" Paigham is running for {config.server_name}",
        f"   Listening on   {url}" + (f"   (clients reach it as {config.base_url})" if config.public_baseurl else ""),
        f"   Admin account  {admin}",
        f"   Element        sign in with homeserver {config.base_url} (Element Web: \"Edit\" next to",
        "                  the server name; Element X and the mobile apps: \"Change account provider\")",
        "   Stop           Ctrl-C",
        rule,
    ])  # fmt: skip


def _count_compressed(coding: str, raw: int, sent: int) -> None:
    HTTP_COMPRESSED.labels(coding, "raw").inc(raw)
    HTTP_COMPRESSED.labels(coding, "sent").inc(sent)


def create_app(config: Config, server: Server | None = None, *, announce: bool = False) -> Starlette:
    srv = server or Server(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await srv.start()
        if announce:
            print(banner(srv.config), flush=True)
        settle_garbage_collector()
        try:
            yield
        finally:
            await srv.stop()

    handlers: dict[Any, Any] = {
        MatrixError: _matrix_error(srv.config.org_default_language),
        HTTPException: _http_error,
        Exception: _internal_error,
    }
    app = Starlette(
        routes=grouped(srv.routes()),
        lifespan=lifespan,
        exception_handlers=handlers,
        middleware=[
            Middleware(MetricsMiddleware),
            *(
                [
                    Middleware(
                        CompressResponses, min_bytes=srv.config.compress_min_bytes, on_compressed=_count_compressed
                    )
                ]
                if srv.config.compress_min_bytes > 0
                else []
            ),
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                allow_headers=["X-Requested-With", "Content-Type", "Authorization", "Accept"],
            ),
            Middleware(RejectNul),
        ],
    )
    return app
