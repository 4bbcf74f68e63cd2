"""The admin API's view of accounts and devices (Synapse's user admin API): the listing, one account
with its organisation record, devices. What changes an account is AdminService, which audits it;
this module adds the checks that belong to the admin API's own operations."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from paigham.errors import Codes, MatrixError
from paigham.services.admin import Actor, AdminService
from paigham.storage.accounts import AccountStore, DeviceRow
from paigham.storage.admin import AdminStore
from paigham.storage.org import OrgStore
from paigham.types import JsonDict

# The `order_by` values of the user list.
USER_ORDERS = ("name", "displayname", "creation_ts", "admin", "deactivated", "locked")


class Account(Protocol):
    """The account fields the admin API shows (a `UserRow`, or a row of the user listing)."""

    @property
    def user_id(self) -> str: ...
    @property
    def displayname(self) -> str | None: ...
    @property
    def avatar_url(self) -> str | None: ...
    @property
    def admin(self) -> bool: ...
    @property
    def deactivated(self) -> bool: ...
    @property
    def locked(self) -> bool: ...
    @property
    def suspended(self) -> bool: ...
    @property
    def created_ts(self) -> int: ...


class UserQuery(NamedTuple):
    """One page of the user list; `order_by` is one of USER_ORDERS."""

    offset: int
    limit: int
    name: str | None = None  # in the user ID or the display name
    user_id: str | None = None  # in the user ID (ignored when `name` is given)
    deactivated: bool = False  # include deactivated accounts
    admins: bool | None = None  # only admins (True), only non-admins (False)
    order_by: str = "name"
    descending: bool = False


class UserPage(NamedTuple):
    users: list[JsonDict]  # in the shape of Synapse's user list
    total: int  # accounts matching, on every page


class PutResult(NamedTuple):
    created: bool
    user: JsonDict


def user_json(u: Account, erased: bool = False, user_type: str | None = None) -> JsonDict:
    """An account in the shape of Synapse's admin API."""
    return {
        "name": u.user_id,
        "displayname": u.displayname,
        "avatar_url": u.avatar_url,
        "threepids": [],
        "is_guest": False,
        "admin": bool(u.admin),
        "deactivated": bool(u.deactivated),
        "erased": erased,
        "shadow_banned": False,
        "locked": bool(u.locked),
        "suspended": bool(u.suspended),
        "creation_ts": u.created_ts,
        "appservice_id": None,
        "user_type": getattr(u, "user_type", user_type),  # the listing's rows carry it
        "approved": True,
        "external_ids": [],
    }


def device_json(user_id: str, d: DeviceRow) -> JsonDict:
    """A device in the shape of Synapse's admin API."""
    return {
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_ts": d.last_seen_ts,
        "last_seen_user_agent": None,
        "user_id": user_id,
    }


class AdminUsers:
    def __init__(self, admin: AdminService, store: AdminStore, accounts: AccountStore, org: OrgStore) -> None:
        self.admin = admin
        self.store = store
        self.accounts = accounts
        self.org = org

    async def list_users(self, q: UserQuery) -> UserPage:
        rows, total = await self.store.list_users(**q._asdict())
        return UserPage([user_json(u) for u in rows], total)

    async def whois(self, user_id: str) -> JsonDict:
        """One local account, with its e-mail address and official record from the organisation."""
        user = await self.admin.existing_user(user_id)
        out = user_json(user, await self.store.erased(user_id), await self.accounts.user_type(user_id))
        found = await self.org.official_by_user(user_id)
        if found is not None:
            o = found.official
            out["threepids"] = [{"medium": "email", "address": o.email}] if o.email else []
            out["org.paigham.official"] = {"employee_id": o.employee_id, "unit_id": o.unit_id, "status": o.status}
        return out

    async def put_user(self, user_id: str, fields: dict[str, Any], actor: Actor) -> PutResult:
        """Create or modify an account (only the fields given change); returns it as `whois` does."""
        created = await self.admin.put_user(user_id, fields, actor)
        return PutResult(created, await self.whois(user_id))

    async def set_locked(self, user_id: str, locked: bool, actor: Actor) -> None:
        """Lock or unlock an account; an admin cannot lock themselves out."""
        if locked and user_id == actor.user_id:
            raise MatrixError(400, Codes.INVALID_PARAM, "You cannot lock your own account")
        await self.admin.set_locked(user_id, locked, actor)

    async def devices(self, user_id: str) -> list[JsonDict]:
        await self.admin.existing_user(user_id)
        return [device_json(user_id, d) for d in await self.accounts.get_devices(user_id)]

    async def device(self, user_id: str, device_id: str) -> JsonDict:
        return device_json(user_id, await self._device(user_id, device_id))

    async def delete_device(self, user_id: str, device_id: str, actor: Actor) -> None:
        """Log one device out (404 if the account has no such device)."""
        await self._device(user_id, device_id)
        await self.admin.delete_devices(user_id, [device_id], actor)

    async def _device(self, user_id: str, device_id: str) -> DeviceRow:
        await self.admin.existing_user(user_id)
        found = await self.accounts.get_device(user_id, device_id)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Device not found")
        return found
