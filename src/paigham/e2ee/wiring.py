"""Builds the E2EE stores and services and hooks them into accounts, the event pipeline and /sync,
so the composition root needs only two lines."""

from __future__ import annotations

from starlette.routing import Route

from paigham.api.client import keys as keys_api
from paigham.api.client import room_keys as room_keys_api
from paigham.api.client import to_device as to_device_api
from paigham.config import Config
from paigham.e2ee.backup import BackupService
from paigham.e2ee.cross_signing import CrossSigningService
from paigham.e2ee.device_lists import DeviceListService
from paigham.e2ee.keys import KeyService
from paigham.e2ee.policy import EncryptionLock
from paigham.e2ee.to_device import ToDeviceService
from paigham.services.auth import AuthService
from paigham.services.publisher import Publisher
from paigham.services.uia import UIAService
from paigham.services.writer import EventWriter
from paigham.storage.database import Database
from paigham.storage.e2ee_backup import BackupStore
from paigham.storage.e2ee_inbox import InboxStore
from paigham.storage.e2ee_keys import KeyStore
from paigham.storage.e2ee_lists import DeviceListStore
from paigham.storage.events import EventStore
from paigham.sync.service import SyncService


class E2EE:
    def __init__(
        self,
        config: Config,
        db: Database,
        auth: AuthService,
        uia: UIAService,
        writer: EventWriter,
        sync: SyncService,
        publisher: Publisher,
    ) -> None:
        self.db = db
        self.key_store = KeyStore(db)
        self.backup_store = BackupStore(db)
        self.lists = DeviceListService(DeviceListStore(db), self.key_store, publisher)
        self.keys = KeyService(config.server_name, self.key_store, self.lists)
        self.cross_signing = CrossSigningService(self.key_store, auth.store, uia, self.lists)
        self.to_device = ToDeviceService(config.server_name, InboxStore(db), publisher)
        self.backups = BackupService(self.backup_store)
        self.lock = EncryptionLock(config.lock_room_encryption, EventStore(db))
        auth.device_hooks.append(self.lists)
        auth.deactivation_hooks.append(self.user_deactivated)
        writer.persist_hooks.append(self.lock.on_event)
        sync.extensions.extend([self.to_device.sync_section, self.lists.sync_section, self.keys.sync_section])

    async def user_deactivated(self, user_id: str) -> None:
        await self.lists.user_deactivated(user_id)
        await self.backup_store.delete_user(user_id)

    def routes(self, auth: AuthService) -> list[Route]:
        return [
            *keys_api.routes(auth, self.db, self.keys, self.cross_signing, self.lists),
            *to_device_api.routes(auth, self.to_device),
            *room_keys_api.routes(auth, self.backups),
        ]
