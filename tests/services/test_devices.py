"""DeviceService: a user's devices, renamed and signed out without HTTP."""

from __future__ import annotations

from paigham.app import Server
from paigham.requester import Requester
from tests.services.conftest import make_user, refused


async def test_devices_rename_and_sign_out_the_others(server: Server) -> None:
    alice = await make_user(server, "alice")
    here = await server.auth.start_session(alice, "HERE", "Laptop")
    await server.auth.start_session(alice, "THERE", None)
    devices = server.devices
    assert [d["device_id"] for d in await devices.list_devices(alice)] == ["HERE", "THERE"]
    await devices.rename(alice, "THERE", "Phone")
    assert (await devices.get_device(alice, "THERE"))["display_name"] == "Phone"
    await devices.rename(alice, "THERE", None)  # nothing to change: still a known device
    await refused(404, "M_NOT_FOUND", devices.rename(alice, "NOPE", "x"))
    await refused(404, "M_NOT_FOUND", devices.rename(alice, "NOPE", None))
    await refused(400, "M_TOO_LARGE", devices.rename(alice, "THERE", "x" * 257))
    await devices.sign_out_others(Requester(alice, "HERE", here.access_token))
    assert [d["device_id"] for d in await devices.list_devices(alice)] == ["HERE"]
    assert (await server.auth.authenticate(here.access_token)).device_id == "HERE"
