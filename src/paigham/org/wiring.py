"""The organisation plug-in, connected in two steps because it both answers the core and acts through it.

* `OrgRules`, built before the core services: what they consult — the policies and their enforcement
  (AuthService: expiry, device limit, token lifetime; RoomService: encryption of new rooms;
  MediaService: upload checks; the writer's organisation-policy check: invitations, private rooms),
  and the user directory (ProfileService: search, extended fields, the display-name lock;
  AuthService: deactivation).
* `OrgServices`, built after them: what acts through them — the import (OrgService), a space per unit,
  server notices, and account renewal.
"""

from __future__ import annotations

from paigham.audit.service import AuditService
from paigham.config import Config
from paigham.org.enforce import PolicyEnforcer, Renewals
from paigham.org.event_policy import EventPolicy
from paigham.org.notices import ServerNotices
from paigham.org.policy import PolicyService
from paigham.org.service import AfterApply, OrgService
from paigham.org.spaces import UnitSpaces, system_user_id
from paigham.org.user_directory import UserDirectory
from paigham.services.auth import AuthService
from paigham.services.moderation_checks import ModerationChecks
from paigham.services.profile import ProfileService
from paigham.services.rooms import RoomService
from paigham.storage.account_data import AccountDataStore
from paigham.storage.accounts import AccountStore
from paigham.storage.database import Database
from paigham.storage.events import EventStore
from paigham.storage.org import OrgStore
from paigham.storage.policies import PolicyStore


class OrgRules:
    """What the core services consult; needs only storage and the audit log."""

    def __init__(
        self, config: Config, db: Database, accounts: AccountStore, events: EventStore, audit: AuditService
    ) -> None:
        self.store = OrgStore(db)
        self.policies = PolicyService(config, PolicyStore(db), self.store, audit)
        # The server's own account creates the unit rooms as they are meant to be (not encrypted).
        self.enforcer = PolicyEnforcer(
            self.policies, self.policies.store, accounts, audit, exempt_creators=[system_user_id(config)]
        )
        # The writer's "organisation policy" check: invitations across ministries, private rooms unencrypted.
        self.event_policy = EventPolicy(self.policies, events, accounts, system_user_id(config))
        self.directory = UserDirectory(config, self.store, accounts, events)


class OrgServices:
    """What acts through the core: built from the core services and the rules."""

    def __init__(
        self,
        config: Config,
        db: Database,
        rules: OrgRules,
        *,
        auth: AuthService,
        rooms: RoomService,
        events: EventStore,
        profiles: ProfileService,
        account_data: AccountDataStore,
        audit: AuditService,
        moderation: ModerationChecks,
    ) -> None:
        self.spaces = UnitSpaces(config, rules.store, rooms, events, auth)
        self.notices = ServerNotices(config, rooms, account_data, rules.store, self.spaces.ensure_system_user)
        self.renewals = Renewals(rules.enforcer, audit, notify=self.notices.send)
        # After every applied change: policies and moderation flags are read again, spaces follow units.
        spaces: list[AfterApply] = [self.spaces.reconcile] if config.org_spaces else []
        self.service = OrgService(
            config,
            rules.store,
            auth,
            profiles,
            audit,
            after_apply=[rules.policies.on_org_change, moderation.invalidate, *spaces],
            unit_deleted=[self.spaces.unit_deleted],
        )
