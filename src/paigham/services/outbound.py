"""Outbound HTTP to push gateways, under the deployment's policy.

Every request is checked when it is made, not only when a pusher was registered: the URL must start
with a prefix of `push_gateway_allowlist` (the list may have changed since), and the gateway's host
is resolved here and each address checked — loopback, private, link-local, unspecified, multicast
and other non-global addresses are refused unless inside an `ip_range_whitelist` CIDR. The
connection is then opened to the address that was checked (never to the name again), so a DNS
answer that changes between the check and the connect (DNS rebinding) cannot point the request
elsewhere; TLS still verifies the certificate against the host name (SNI and hostname check).

The client itself is small on purpose: one POST, HTTP/1.1 through h11 (uvicorn's own HTTP parser,
already installed with it), `Connection: close`, no redirects followed (a 3xx is an answer like any
other non-2xx), a bounded response body, and one deadline for resolve + connect + TLS + exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import h11
import structlog

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Paigham push"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class GatewayRefused(Exception):
    """The policy forbids this URL (not in `push_gateway_allowlist`): nothing was sent."""


class GatewayUnreachable(Exception):
    """Nothing was answered: the name did not resolve, every address was blocked, the connection
    failed, or the deadline passed. Worth retrying later."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


log = structlog.get_logger(__name__)
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class GatewayPrefix:
    """One allowlisted URL prefix, parsed: URLs match it on scheme, host and port exactly and on
    the path at a segment boundary (`/push` admits `/push` and `/push/…`, not `/pushy`)."""

    scheme: str
    host: str
    port: int
    path: str  # without a trailing slash; "" admits every path

    def admits(self, url: SplitResult) -> bool:
        if (url.scheme, url.hostname, url_port(url)) != (self.scheme, self.host, self.port):
            return False
        return not self.path or url.path == self.path or url.path.startswith(self.path + "/")


def parse_allowlist(prefixes: list[str]) -> list[GatewayPrefix]:
    """The allowlist setting, parsed; entries that are not http(s) URLs with a host are skipped
    (and logged), never widened into a match."""
    out = []
    for raw in prefixes:
        try:
            u = urlsplit(raw.strip())
            port = url_port(u)
        except ValueError:
            u, port = None, None
        if u is None or port is None or u.scheme not in DEFAULT_PORTS or not u.hostname or "@" in u.netloc:
            log.warning("push_gateway_allowlist: ignoring an entry that is not an http(s) URL prefix", entry=raw)
            continue
        if u.query or u.fragment:
            log.warning("push_gateway_allowlist: ignoring an entry with a query or fragment", entry=raw)
            continue
        out.append(GatewayPrefix(u.scheme, u.hostname, port, u.path.rstrip("/")))
    return out


def url_port(u: SplitResult) -> int | None:
    return u.port if u.port is not None else DEFAULT_PORTS.get(u.scheme)


def url_allowed(url: str, allowlist: Sequence[str]) -> bool:
    """Whether `url` lies under one of the allowlisted prefixes (scheme, host and port equal, the path
    under the prefix's at a segment boundary): `https://push.example` admits
    `https://push.example/_matrix/…`, not `https://push.example.evil.com/…` nor another port. The one
    check both registration (services/pushers.py) and delivery use."""
    try:
        parts = urllib.parse.urlsplit(url)
        url_port(parts)
    except ValueError:
        return False
    return any(prefix.admits(parts) for prefix in parse_allowlist(list(allowlist)))


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class OutboundPolicy:
    def __init__(self, allowlist: Sequence[str], ip_whitelist: Sequence[str]) -> None:
        self.allowlist = tuple(allowlist)
        self.whitelist: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in ip_whitelist)

    def address_allowed(self, ip: IPAddress) -> bool:
        ip = _unmapped(ip)
        if any(ip.version == net.version and ip in net for net in self.whitelist):
            return True
        # `is_global` is false for loopback, private (RFC 1918, ULA), link-local, shared (CGNAT),
        # unspecified, reserved and documentation ranges; multicast is refused explicitly.
        return ip.is_global and not ip.is_multicast

    async def resolve(self, host: str, port: int) -> list[str]:
        """The host's addresses this policy allows (in resolver order); raises if none."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            candidates = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise GatewayUnreachable(f"cannot resolve {host}: {exc}") from exc
            candidates = []
            for info in infos:
                try:
                    candidates.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
                except ValueError:
                    continue
        allowed = [str(_unmapped(ip)) for ip in candidates if self.address_allowed(ip)]
        if not allowed:
            shown = ", ".join(sorted({str(ip) for ip in candidates})) or "none"
            raise GatewayUnreachable(f"IP address blocked: {host} resolves to {shown} (see ip_range_whitelist)")
        return list(dict.fromkeys(allowed))


class OutboundClient:
    """POSTs JSON to gateways under an `OutboundPolicy`."""

    def __init__(self, policy: OutboundPolicy, timeout_s: float, *, tls: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self._tls = tls

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def post_json(self, url: str, body: bytes) -> Answer:
        """POST `body` (JSON) to `url`. Raises GatewayRefused (policy: nothing sent) or
        GatewayUnreachable (no answer); any HTTP answer, whatever its status, is returned."""
        if not url_allowed(url, self.policy.allowlist):
            raise GatewayRefused("the URL is not in push_gateway_allowlist")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GatewayRefused("not an http(s) URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise GatewayRefused("invalid port") from exc
        try:
            async with asyncio.timeout(self.timeout_s):
                addresses = await self.policy.resolve(parts.hostname, port)
                return await self._exchange(parts, port, addresses[0], body)
        except TimeoutError as exc:
            raise GatewayUnreachable(f"no answer within {self.timeout_s} s") from exc
        except (OSError, ssl.SSLError, h11.ProtocolError, EOFError) as exc:
            raise GatewayUnreachable(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, parts: urllib.parse.SplitResult, port: int, address: str, body: bytes) -> Answer:
        https = parts.scheme == "https"
        reader, writer = await asyncio.open_connection(
            address,
            port,
            ssl=self._tls_context() if https else None,
            server_hostname=parts.hostname if https else None,
        )
        try:
            conn = h11.Connection(our_role=h11.CLIENT)
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            host = parts.netloc.rsplit("@", 1)[-1]
            headers = [
                ("Host", host),
                ("User-Agent", USER_AGENT),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ]
            writer.write(conn.send(h11.Request(method="POST", target=target, headers=headers)) or b"")
            writer.write(conn.send(h11.Data(data=body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            status, chunks, size = 0, [], 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(16384))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_RESPONSE_BYTES:
                        break  # the answer's status is known; an oversized body is not read on
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            if not status:
                raise EOFError("the connection closed before an answer")
            return Answer(status, b"".join(chunks))
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
