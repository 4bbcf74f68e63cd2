"""Composition root: config → storage → bus → services → routes, wired once."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
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
from paigham.api.admin import moderation, synapse_rooms, synapse_users
from paigham.api.admin import org as admin_org
from paigham.api.admin import policy as admin_policy
from paigham.api.client import (
    ephemeral,
    login,
    profile,
    register,
    relations,
    room_directory,
    room_events,
    rooms,
    spaces,
    sync,
)
from paigham.api.client import media as media_api
from paigham.api.http import RejectNul, error_response, ok
from paigham.api.routing import grouped
from paigham.audit.service import AuditService
from paigham.bus.base import Bus, InMemoryBus, StreamUpdate
from paigham.config import Config
from paigham.e2ee.wiring import E2EE
from paigham.errors import Codes, MatrixError
from paigham.i18n import negotiate, translate
from paigham.media.service import MediaService
from paigham.metrics import MetricsMiddleware, settle_garbage_collector
from paigham.org.enforce import PolicyEnforcer
from paigham.org.notices import ServerNotices
from paigham.org.policy import PolicyService
from paigham.org.service import OrgService
from paigham.org.spaces import UnitSpaces
from paigham.org.user_directory import DirectoryService, official_keys, unit_key
from paigham.services.admin import AdminService
from paigham.services.auth import AuthService
from paigham.services.ephemeral import EphemeralService
from paigham.services.filtering import FilterService
from paigham.services.jobs import Jobs
from paigham.services.login_guard import LoginGuard
from paigham.services.presence import PresenceService
from paigham.services.profile import ProfileService
from paigham.services.publisher import Publisher
from paigham.services.push import PushService
from paigham.services.rooms import RoomService
from paigham.services.serializer import EventSerializer
from paigham.services.timeline import TimelineService
from paigham.services.uia import UIAService
from paigham.services.writer import EventWriter
from paigham.signing_keys import load_or_create_shared_secret, load_or_create_signing_key, write_admin_credentials
from paigham.storage.account_data import AccountDataStore
from paigham.storage.accounts import AccountStore
from paigham.storage.admin import AdminStore
from paigham.storage.aliases import AliasStore
from paigham.storage.audit import AuditStore
from paigham.storage.database import Database
from paigham.storage.event_writes import EventWriteStore
from paigham.storage.events import EventStore
from paigham.storage.filters import FilterStore
from paigham.storage.logins import LoginStore
from paigham.storage.media import MediaStore
from paigham.storage.migrate import migrate
from paigham.storage.org import OrgStore
from paigham.storage.policies import PolicyStore
from paigham.storage.presence import PresenceStore
from paigham.storage.push_actions import PushActionStore
from paigham.storage.push_rules import PushRuleStore
from paigham.storage.receipts import ReceiptStore
from paigham.storage.typing_notices import TypingStore
from paigham.sync.notifier import Notifier
from paigham.sync.service import SyncService

log = structlog.get_logger(__name__)


class Server:
    """Holds what the process shares; built once by `create_app`, never passed into handlers whole."""

    def __init__(self, config: Config) -> None:
        self.config = config
        config.data_path.mkdir(parents=True, exist_ok=True)
        config.registration_shared_secret = load_or_create_shared_secret(
            config.data_path, config.registration_shared_secret
        )
        self.signing_key = load_or_create_signing_key(config.data_path)
        self.db = Database(config.effective_database_url)
        self.bus: Bus = self._make_bus()
        self.notifier = Notifier()
        self.bus.subscribe(self.notifier.on_update)
        self.bus.on_resume(self.notifier.wake_all)
        self.accounts = AccountStore(self.db)
        self.events = EventStore(self.db)
        # The stores that were storage/streams.py, one per area (storage helper, issue 13).
        self.account_data = AccountDataStore(self.db)
        self.receipts = ReceiptStore(self.db)
        self.typing = TypingStore(self.db)
        self.presence_store = PresenceStore(self.db)
        self.push_rules = PushRuleStore(self.db)
        self.push_actions = PushActionStore(self.db)
        self.aliases = AliasStore(self.db)
        self.publisher = Publisher(self.bus, self.events)
        self.auth = AuthService(config, self.accounts)
        self.auth.cache_usable = self.bus.is_ready
        self.auth.announce = lambda users: self.bus.publish(StreamUpdate(0, credentials=users))
        self.bus.subscribe(lambda update: self.auth.tokens.forget(update.credentials) if update.credentials else None)
        self.bus.on_resume(self.auth.tokens.clear)
        self.uia = UIAService(self.auth)
        self.writer = EventWriter(self.db, self.events, EventWriteStore(self.db), config.server_name, self.signing_key)
        self.writer.commit_hooks.append(self.publisher.events_committed)
        self.writer.commit_hooks.append(ops.count_events)
        self.push = PushService(self.push_rules, self.push_actions, self.events, self.publisher)
        self.writer.persist_hooks.append(self.push.on_event)
        self.rooms = RoomService(config, self.writer, self.events, self.accounts, self.aliases)
        self.auth.deactivation_hooks.append(self.rooms.leave_all)
        self.serializer = EventSerializer(self.events)
        self.timeline = TimelineService(self.db, self.events, self.serializer)
        self.profiles = ProfileService(self.accounts, self.events, self.rooms)
        self.presence = PresenceService(self.presence_store, self.publisher, enabled=config.presence_enabled)
        self.ephemeral = EphemeralService(self.events, self.receipts, self.typing, self.account_data, self.publisher)
        self.filters = FilterService(FilterStore(self.db))
        self.sync = SyncService(
            self.db,
            self.events,
            self.account_data,
            self.receipts,
            self.typing,
            self.presence_store,
            self.push_actions,
            self.serializer,
            self.notifier,
            self.push.rules_for_sync,
            presence_enabled=config.presence_enabled,
        )
        self.e2ee = E2EE(config, self.db, self.auth, self.uia, self.writer, self.sync, self.publisher)
        self.media = MediaService(config, MediaStore(self.db))
        self.jobs = Jobs()
        self.audit = AuditService(AuditStore(self.db), config.audit_retention_days)
        self.auth.device_hooks.append(self.audit.device_hooks())
        self.writer.commit_hooks.append(self.audit.on_events)
        self.jobs.every("audit-retention", 3600, self.audit.purge_expired)
        self.org = OrgService(config, OrgStore(self.db), self.auth, self.audit)
        self.auth.deactivation_hooks.append(self.org.account_deactivated)
        self.org.propagate_profile = lambda user_id, name: self.profiles.set(user_id, "displayname", name, check=False)
        self.org.search_keys, self.org.unit_keys = official_keys, unit_key
        self.directory = DirectoryService(config, self.org.store, self.accounts, self.events)
        self.profiles.directory = self.directory.search
        self.profiles.extra_fields.append(self.directory.profile_fields)
        self.profiles.guards.append(self.org.guard_profile)
        self.admin = AdminService(
            config.server_name,
            self.auth,
            self.rooms,
            self.events,
            self.profiles,
            AdminStore(self.db),
            self.org.store,
            self.audit,
        )
        self.writer.persist_hooks.append(self.admin.refuse_blocked)
        self.writer.persist_hooks.append(self.admin.refuse_suspended)
        self.profiles.guards.append(self.admin.guard_profile)
        self.login_guard = LoginGuard(config, LoginStore(self.db), self.audit)
        self.admin.clear_login_failures = self.login_guard.clear
        self.jobs.every("login-failures", 3600, self.login_guard.purge)
        self.policies = PolicyService(config, PolicyStore(self.db), self.org.store, self.audit)
        self.org.after_apply.append(self.policies.on_org_change)
        self.enforcer = PolicyEnforcer(self.policies, self.policies.store, self.events, self.accounts, self.audit)
        self.rooms.creation_hooks.append(self.enforcer.room_creation)
        self.writer.persist_hooks.append(self.enforcer.on_event)
        self.media.upload_checks.append(self.enforcer.media_check)
        self.media.uploaded_hooks.append(self.enforcer.media_uploaded)
        self.auth.request_checks.append(self.enforcer.check_expiry)
        self.auth.session_checks.append(self.enforcer.check_devices)
        self.auth.token_lifetime_s = self.enforcer.token_lifetime_s
        self.jobs.every("retention", 3600, self.enforcer.purge_history)
        self.spaces = UnitSpaces(config, self.org.store, self.rooms, self.events, self.auth)
        self.enforcer.exempt_creators.add(self.spaces.system_user)
        self.org.unit_deleted.append(self.spaces.unit_deleted)
        self.org.after_apply.append(self.admin.invalidate_flags)
        if config.org_spaces:
            self.org.after_apply.append(self.spaces.reconcile)
        self.notices = ServerNotices(
            config, self.rooms, self.account_data, self.org.store, self.spaces.ensure_system_user
        )
        self.admin.notify = self.enforcer.notify = self.notices.send
        self.e2ee.cross_signing.changed_hooks.append(
            lambda rq, keys: self.audit.record(
                "keys.cross_signing", rq.user_id, rq.user_id, None, rq.device_id, {"keys": keys}
            )
        )

    def _make_bus(self) -> Bus:
        if self.config.nats_url:
            from paigham.bus.nats import NatsBus

            return NatsBus(self.config.nats_url)
        return InMemoryBus()

    def routes(self) -> list[Route]:
        c = self.config
        return [
            Route("/health", _health, methods=["GET"]),
            *ops.routes(self.db, self.bus),
            *login.routes(c, self.auth, self.audit, self.login_guard),
            *register.routes(c, self.auth, self.uia, self.audit),
            *rooms.routes(self.auth, self.rooms, self.events),
            *room_events.routes(self.auth, self.writer, self.timeline, self.serializer),
            *sync.routes(c, self.auth, self.sync, self.filters, self.presence),
            *ephemeral.routes(self.auth, self.ephemeral, self.presence),
            *profile.routes(self.auth, self.uia, self.profiles),
            *room_directory.routes(c, self.auth, self.events, self.aliases),
            *spaces.routes(self.auth, self.events),
            *relations.routes(self.auth, self.timeline, self.serializer),
            *self.e2ee.routes(self.auth),
            *self.push.routes(self.auth),
            *media_api.routes(c, self.auth, self.media),
            *admin_media.routes(self.auth, self.media),
            *synapse_users.routes(self.auth, self.admin, self.admin.store, self.org.store),
            *synapse_rooms.routes(self.auth, self.admin, self.admin.store, c.server_name),
            *admin_org.routes(self.auth, self.org, self.spaces),
            *moderation.routes(self.auth, self.admin, self.notices),
            *admin_policy.routes(self.auth, self.admin, self.policies, self.enforcer),
        ]

    async def start(self) -> None:
        await migrate(self.db)
        await self.bus.start()
        self.notifier.position = await self.db.current_position()
        await self.ensure_admin()
        self.jobs.start()

    async def stop(self) -> None:
        await self.jobs.stop()
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


async def _matrix_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MatrixError)
    # The `error` text is for people: in their language when a catalogue has it (Accept-Language).
    default = request.app.state.server.config.org_default_language
    exc.error = translate(exc.error, negotiate(request.headers.get("accept-language"), default))
    return error_response(exc)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(MatrixError(405, Codes.UNRECOGNIZED, "Method not allowed for this endpoint"))
    if exc.status_code == 404:
        return error_response(MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request"))
    return error_response(MatrixError(exc.status_code, Codes.UNKNOWN, str(exc.detail)))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("request.failed", path=request.url.path, exc_info=exc)
    return error_response(MatrixError(500, Codes.UNKNOWN, "Internal server error"))


def create_app(config: Config, server: Server | None = None) -> Starlette:
    srv = server or Server(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await srv.start()
        settle_garbage_collector()
        try:
            yield
        finally:
            await srv.stop()

    handlers: dict[Any, Any] = {
        MatrixError: _matrix_error,
        HTTPException: _http_error,
        Exception: _internal_error,
    }
    app = Starlette(
        routes=grouped(srv.routes()),
        lifespan=lifespan,
        exception_handlers=handlers,
        middleware=[
            Middleware(MetricsMiddleware),
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                allow_headers=["X-Requested-With", "Content-Type", "Authorization", "Accept"],
            ),
            Middleware(RejectNul),
        ],
    )
    app.state.server = srv
    return app
