"""The E2EE plug-in: builds its stores and services, and offers the core what it calls on E2EE.

Built before the core services that call it, which take its parts as constructor arguments:
AuthService (`lists` as device hooks, `user_deactivated`), SyncService (`sync_sections`) and the
event writer (`lock.check`, the encryption lock, one of its stages). It uses only storage, the
publisher, UIA and the audit log's `cross_signing_changed`."""

from __future__ import annotations

from paigham.config import Config
from paigham.e2ee.backup import BackupService
from paigham.e2ee.cross_signing import CrossSigningService, KeysChanged
from paigham.e2ee.device_lists import DeviceListService
from paigham.e2ee.encryption_lock import EncryptionLock
from paigham.e2ee.keys import KeyService
from paigham.e2ee.to_device import ToDeviceService
from paigham.services.publisher import Publisher
from paigham.services.uia import UIAService
from paigham.storage.accounts import AccountStore
from paigham.storage.database import Database
from paigham.storage.e2ee_backup import BackupStore
from paigham.storage.e2ee_inbox import InboxStore
from paigham.storage.e2ee_keys import KeyStore
from paigham.storage.e2ee_lists import DeviceListStore
from paigham.storage.events import EventStore
from paigham.sync.service import Extension
from paigham.sync.sliding import E2eeParts


class E2EE:
    def __init__(
        self,
        config: Config,
        db: Database,
        accounts: AccountStore,
        uia: UIAService,
        publisher: Publisher,
        *,
        cross_signing_changed: KeysChanged,
    ) -> None:
        self.db = db
        self.key_store = KeyStore(db)
        self.backup_store = BackupStore(db)
        self.lists = DeviceListService(DeviceListStore(db), self.key_store, publisher)
        self.keys = KeyService(config.server_name, self.key_store, self.lists)
        self.cross_signing = CrossSigningService(
            self.key_store, accounts, uia, self.lists, changed_hooks=[cross_signing_changed]
        )
        self.to_device = ToDeviceService(config.server_name, InboxStore(db), publisher)
        self.backups = BackupService(self.backup_store)
        self.lock = EncryptionLock(config.lock_room_encryption, EventStore(db))
        # /sync sections, in this order: to-device messages, device lists, one-time key counts.
        self.sync_sections: tuple[Extension, ...] = (
            self.to_device.sync_section,
            self.lists.sync_section,
            self.keys.sync_section,
        )
        # Sliding sync's `to_device` and `e2ee` extensions (the key counts come from its first read).
        self.sliding_parts = E2eeParts(to_device=self.to_device.deliver, device_lists=self.lists.changed_and_left)

    async def user_deactivated(self, user_id: str) -> None:
        """AuthService deactivation hook: the user's devices leave the lists, their key backup goes."""
        await self.lists.user_deactivated(user_id)
        await self.backup_store.delete_user(user_id)
