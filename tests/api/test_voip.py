"""GET /voip/turnServer against a real coturn: the served credentials allocate a relay that carries
UDP both ways; a wrong password and an expired username are refused by coturn itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from paigham.clock import now_ms
from paigham.domain.turn import rest_api_password, rest_api_username
from paigham.requester import Requester
from paigham.services.voip import TurnService
from tests.api.conftest import Harness, serve
from tests.api.coturn import coturn, needs_coturn
from tests.api.openapi import spec

V3 = "/_matrix/client/v3"
SECRET = "a-test-secret-shared-with-coturn"
Addr = tuple[str, int]


class Inbox(asyncio.DatagramProtocol):
    """Datagrams as they arrive, from the relay (the TURN client) or to a plain socket (the peer)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Addr]] = asyncio.Queue()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.queue.put_nowait((data, (addr[0], addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.queue.put_nowait((repr(exc).encode(), ("error", 0)))

    async def next(self) -> tuple[bytes, Addr]:
        return await asyncio.wait_for(self.queue.get(), 5)


def conformance_problems(body: Any) -> list[str]:
    """The 200 schema of the spec, checked directly: openapi.DEVIATIONS excuses only the unconfigured `{}`."""
    (op,) = spec().find("GET", f"{V3}/voip/turnServer")
    validator = spec().validator(f"{op.pointer}/responses/200/content/application~1json/schema")
    return [e.message for e in validator.iter_errors(body)]


def server_of(uri: str) -> Addr:
    host, port = uri.removeprefix("turn:").split("?")[0].rsplit(":", 1)
    return host, int(port)


async def refused(server: Addr, username: str, password: str) -> None:
    with pytest.raises(stun.TransactionFailed) as failed:
        transport, _ = await create_turn_endpoint(Inbox, server, username, password)
        transport.close()
    assert failed.value.response.attributes["ERROR-CODE"][0] == 401


async def relay_both_ways(server: Addr, username: str, password: str, transport: str = "udp") -> None:
    """Allocate (over UDP or TCP to coturn), then pass a datagram peer-wards and one back."""
    loop = asyncio.get_running_loop()
    peer_transport, peer = await loop.create_datagram_endpoint(Inbox, local_addr=("127.0.0.1", 0))
    relay, client = await create_turn_endpoint(Inbox, server, username, password, transport=transport)
    try:
        relayed: Addr = relay.get_extra_info("sockname")
        peer_addr: Addr = peer_transport.get_extra_info("sockname")
        assert relayed[1] != server[1]  # a relay port of coturn's, not its listening port
        relay.sendto(b"m.call.invite offer", peer_addr)
        assert await peer.next() == (b"m.call.invite offer", relayed)  # the peer sees the relay, not the client
        peer_transport.sendto(b"m.call.answer", relayed)
        assert await client.next() == (b"m.call.answer", peer_addr)
    finally:
        relay.close()  # deletes the allocation (a Refresh with lifetime 0)
        peer_transport.close()
    await asyncio.wait_for(client.closed, 5)


@needs_coturn
async def test_shared_secret_credentials_relay_through_coturn(database_url: str, tmp_path: Path) -> None:
    async with coturn(tmp_path, "use-auth-secret", f"static-auth-secret={SECRET}") as port:
        uris = [f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp"]
        async with serve(database_url, tmp_path, turn_uris=uris, turn_shared_secret=SECRET) as hs:
            alice = await hs.register("alice")
            before = now_ms() // 1000
            creds = await hs.ok("GET", f"{V3}/voip/turnServer", alice)
            assert set(creds) == {"username", "password", "uris", "ttl"}
            assert creds["uris"] == uris and creds["ttl"] == 3600
            assert conformance_problems(creds) == []
            expiry, user_id = creds["username"].split(":", 1)
            assert user_id == alice.user_id and before + 3600 <= int(expiry) <= now_ms() // 1000 + 3600

            server = server_of(uris[0])
            await relay_both_ways(server, creds["username"], creds["password"])
            await relay_both_ways(server_of(uris[1]), creds["username"], creds["password"], transport="tcp")
            await refused(server, creds["username"], creds["password"][:-4] + "AAA=")
            await refused(server, creds["username"].replace(user_id, "@mallory:test.local"), creds["password"])
            # Credentials Paigham handed out two hours ago (a one-hour lifetime): coturn sees the expiry passed.
            requester = Requester(alice.user_id, alice.device_id, alice.token)
            stale = await TurnService(
                hs.server.config, hs.server.policies.calls_allowed, clock=lambda: now_ms() - 7_200_000
            ).credentials(requester)
            assert stale is not None and int(stale.username.split(":")[0]) < now_ms() // 1000
            await refused(server, stale.username, stale.password)


def production_peer_rules() -> list[str]:
    """The lines of docs/turnserver.conf (README "Calls") that decide what the relay may reach."""
    conf = Path(__file__).resolve().parents[2] / "docs" / "turnserver.conf"
    rules = ("denied-peer-ip=", "allowed-peer-ip=", "no-multicast-peers", "no-tcp-relay")
    return [line for line in conf.read_text().splitlines() if line.startswith(rules)]


@needs_coturn
async def test_the_production_peer_rules_keep_the_relay_off_internal_hosts(tmp_path: Path) -> None:
    rules = production_peer_rules()
    assert "denied-peer-ip=127.0.0.0-127.255.255.255" in rules and "denied-peer-ip=10.0.0.0-10.255.255.255" in rules
    # The test's coturn allows loopback peers, so only the documented denied-peer-ip lines can refuse one.
    async with coturn(tmp_path, "use-auth-secret", f"static-auth-secret={SECRET}", *rules) as port:
        username = rest_api_username("@alice:test.local", now_ms() // 1000 + 60)
        loop = asyncio.get_running_loop()
        peer_transport, peer = await loop.create_datagram_endpoint(Inbox, local_addr=("127.0.0.1", 0))
        relay, client = await create_turn_endpoint(
            Inbox, ("127.0.0.1", port), username, rest_api_password(SECRET, username)
        )
        try:
            relay.sendto(b"to an internal host", peer_transport.get_extra_info("sockname"))
            data, origin = await client.next()
            assert origin == ("error", 0) and b"403" in data, data  # the channel bind is Forbidden
            assert peer.queue.empty()
        finally:
            relay.close()
            peer_transport.close()


@needs_coturn
async def test_static_user_relays_through_coturn(database_url: str, tmp_path: Path) -> None:
    async with coturn(tmp_path, "lt-cred-mech", "user=paigham-calls:static-pass") as port:
        uris = [f"turn:127.0.0.1:{port}?transport=udp"]
        settings: dict[str, Any] = {"turn_username": "paigham-calls", "turn_password": "static-pass"}
        async with serve(database_url, tmp_path, turn_uris=uris, turn_user_lifetime="1d", **settings) as hs:
            alice = await hs.register("alice")
            creds = await hs.ok("GET", f"{V3}/voip/turnServer", alice)
            assert creds == {"username": "paigham-calls", "password": "static-pass", "uris": uris, "ttl": 86400}
            await relay_both_ways(server_of(uris[0]), creds["username"], creds["password"])
            await refused(server_of(uris[0]), "paigham-calls", "wrong-pass")


async def test_not_configured_answers_an_empty_object(hs: Harness) -> None:
    alice = await hs.register("alice")
    assert await hs.ok("GET", f"{V3}/voip/turnServer", alice) == {}
    await hs.err(401, "M_MISSING_TOKEN", "GET", f"{V3}/voip/turnServer")


async def test_secret_from_a_file_and_half_configured_answers(database_url: str, tmp_path: Path) -> None:
    secret_file = tmp_path / "turn.secret"
    secret_file.write_text(SECRET + "\n")
    uris = ["turns:turn.gov.example:5349?transport=tcp"]
    async with serve(database_url, tmp_path, turn_uris=uris, turn_shared_secret_path=str(secret_file)) as hs:
        alice = await hs.register("alice")
        creds = await hs.ok("GET", f"{V3}/voip/turnServer", alice)
        assert creds["uris"] == uris and creds["username"].endswith(":" + alice.user_id)
        assert creds["password"] == rest_api_password(SECRET, creds["username"])  # the file's line, unpadded
    with pytest.raises(ValueError, match="cannot read"):
        TurnService(
            msgspec.structs.replace(hs.server.config, turn_shared_secret_path=str(tmp_path / "missing")),
            hs.server.policies.calls_allowed,
        )
    secret_file.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        TurnService(hs.server.config, hs.server.policies.calls_allowed)
    with pytest.raises(ValueError, match="not both"):
        msgspec.structs.replace(hs.server.config, turn_shared_secret=SECRET)
    # A secret without URIs (or URIs without a way to log in) is no TURN server: {} as Synapse answers.
    async with serve(database_url, tmp_path / "2", turn_shared_secret=SECRET) as hs:
        assert await hs.ok("GET", f"{V3}/voip/turnServer", await hs.register("bob")) == {}


async def test_refused_where_the_policy_does_not_allow_calls(database_url: str, tmp_path: Path) -> None:
    uris = ["turn:turn.ministry.example?transport=udp"]
    async with serve(
        database_url, tmp_path, turn_uris=uris, turn_shared_secret=SECRET, policy_calls_allowed=False
    ) as hs:
        bob = await hs.register("bob")
        r = await hs.request("GET", f"{V3}/voip/turnServer", bob)
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        assert "does not allow calls" in r.json()["error"]
