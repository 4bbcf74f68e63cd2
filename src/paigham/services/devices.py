"""A user's devices (spec "Device management"): list, look up and rename them, delete them behind
User-Interactive Auth, and sign out every device but the current one (after a password change)."""

from __future__ import annotations

from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.auth import AuthService
from paigham.services.uia import PASSWORD, UIAService
from paigham.storage.accounts import AccountStore, DeviceRow
from paigham.types import JsonDict

MAX_DISPLAYNAME = 256
MAX_DELETE = 1000


class DeviceService:
    def __init__(self, accounts: AccountStore, auth: AuthService, uia: UIAService) -> None:
        self.accounts = accounts
        self.auth = auth
        self.uia = uia

    async def list_devices(self, user_id: str) -> list[JsonDict]:
        return [_json(d) for d in await self.accounts.get_devices(user_id)]

    async def get_device(self, user_id: str, device_id: str) -> JsonDict:
        return _json(await self._device(user_id, device_id))

    async def rename(self, user_id: str, device_id: str, display_name: str | None) -> None:
        """Set the display name (None leaves it as it is); 404 for a device the user does not have."""
        if display_name is None:
            await self._device(user_id, device_id)
            return
        if len(display_name) > MAX_DISPLAYNAME:
            raise MatrixError(400, Codes.TOO_LARGE, "display_name is too long")
        if not await self.accounts.update_device(user_id, device_id, display_name=display_name):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown device")

    async def delete(self, user_id: str, device_id: str, auth: JsonDict | None) -> None:
        """Delete one device once the user has proved their password (UIA)."""
        await self._device(user_id, device_id)
        await self.uia.check(auth, kind="delete_devices", flows=[[PASSWORD]], user_id=user_id)
        await self.auth.delete_devices(user_id, [device_id])

    async def delete_many(self, user_id: str, device_ids: list[str], auth: JsonDict | None) -> None:
        """Delete several devices (unknown IDs are ignored) once the user has proved their password."""
        if len(device_ids) > MAX_DELETE:
            raise MatrixError(400, Codes.INVALID_PARAM, "Too many devices")
        await self.uia.check(auth, kind="delete_devices", flows=[[PASSWORD]], user_id=user_id)
        await self.auth.delete_devices(user_id, device_ids)

    async def sign_out_others(self, requester: Requester) -> None:
        """Delete every device of the user but the requester's, and every other access token."""
        others = [d.device_id for d in await self.accounts.get_devices(requester.user_id)]
        await self.auth.delete_devices(requester.user_id, [d for d in others if d != requester.device_id])
        await self.accounts.delete_all_tokens(requester.user_id, except_token=requester.access_token)

    async def _device(self, user_id: str, device_id: str) -> DeviceRow:
        found = await self.accounts.get_device(user_id, device_id)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown device")
        return found


def _json(d: DeviceRow) -> JsonDict:
    """A device as the API shows it: optional fields are left out rather than null."""
    out: JsonDict = {"device_id": d.device_id}
    if d.display_name is not None:
        out["display_name"] = d.display_name
    if d.last_seen_ts is not None:
        out["last_seen_ts"] = d.last_seen_ts
    if d.last_seen_ip is not None:
        out["last_seen_ip"] = d.last_seen_ip
    return out
