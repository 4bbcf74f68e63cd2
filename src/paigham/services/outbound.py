"""Outbound HTTP to push gateways, under the deployment's policy.

Every request is checked when it is made, not only when a pusher was registered: the URL must start
with a prefix of `push_gateway_allowlist` (the list may have changed since), and the gateway's host
is resolved here and each address checked — loopback, private, link-local, unspecified, multicast
and other non-global addresses are refused unless inside an `ip_range_whitelist` CIDR. The
connection is then opened to the address that was checked (never to the name again), so a DNS
answer that changes between the check and the connect (DNS rebinding) cannot point the request
elsewhere; TLS still verifies the certificate against the host name (SNI and hostname check).

The client itself is small on purpose: one POST, HTTP/1.1 written as bytes and the answer parsed by
httptools (the C parser uvicorn serves with, already installed with it), no redirects followed (a 3xx
is an answer like any other non-2xx), a bounded response body, and one deadline for resolve + connect +
TLS + exchange. A URL is checked and parsed once (the policy does not change while the client lives).
Connections are kept alive per gateway (scheme, host, port): an idle one is reused for the next
request without resolving the name again (the address it was opened to was checked then), at most
`MAX_IDLE_PER_GATEWAY` idle per gateway and for at most `IDLE_S`. A new TCP (and TLS) connection per
push was a quarter of the delivery's CPU (docs/benchmarks.md "Push notifications"). A reused
connection that the gateway had closed fails before any answer arrived: the request is then made once
more on a new connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import httptools
import structlog

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Paigham push"
MAX_IDLE_PER_GATEWAY = 64
IDLE_S = 30.0

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
    `https://push.example/_matrix/…`, not `https://push.example.evil.com/…` nor another port. The rule
    is `GatewayPrefix.admits`, which registration (services/pushers.py) and delivery
    (`OutboundPolicy.url_allowed`) both apply; this is it for a URL string."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return OutboundPolicy(allowlist, ()).url_allowed(parts)


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class OutboundPolicy:
    def __init__(self, allowlist: Sequence[str], ip_whitelist: Sequence[str]) -> None:
        self.allowlist = tuple(allowlist)
        self._prefixes = parse_allowlist(list(allowlist))
        self.whitelist: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in ip_whitelist)

    def url_allowed(self, parts: SplitResult) -> bool:
        """`url_allowed` with the allowlist parsed once."""
        try:
            url_port(parts)
        except ValueError:
            return False
        return any(prefix.admits(parts) for prefix in self._prefixes)

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


class _BadAnswer(Exception):
    """The gateway's bytes are not an HTTP/1.1 answer."""


class _Stale(Exception):
    """A reused connection failed before any answer: the gateway had closed it."""


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection to a gateway. A request is written whole, as bytes (its
    head built from a URL checked once, `_Target`); the answer is parsed by httptools, the C parser
    uvicorn serves with. h11's pure-Python state machine was a sixth of the delivery's CPU."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[Answer, bool]] | None = None
        self._got = False  # any byte of the answer arrived
        self._status = 0
        self._chunks: list[bytes] = []
        self._size = 0

    # -- the request -----------------------------------------------------------------------------
    def request(self, data: bytes) -> asyncio.Future[tuple[Answer, bool]]:
        """Write one request; the future is the answer and whether the connection may be reused."""
        assert self.transport is not None and self._waiter is None
        if self.closed or self.transport.is_closing():
            raise _Stale  # closed since it was put back: nothing was sent
        self._waiter = asyncio.get_running_loop().create_future()
        self._got, self._status, self._chunks, self._size = False, 0, [], 0
        self.transport.write(data)
        return self._waiter

    def _finish(self, keep: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((Answer(self._status, b"".join(self._chunks)), keep and not self.closed))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def usable(self, now: float) -> bool:
        return now - self.idle_since < IDLE_S and not self.closed and self.transport is not None \
            and not self.transport.is_closing()  # fmt: skip

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is not reusable
            self.close()
            return
        self._got = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(_BadAnswer(f"not an HTTP answer: {exc}"))

    def eof_received(self) -> bool | None:
        self.closed = True
        return None  # the transport closes itself; connection_lost reports

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None:
            return
        if self._status:  # a body delimited by the close (no length given): complete now
            self._finish(False)
        elif not self._got:
            self._fail(_Stale())
        else:
            self._fail(EOFError("the connection closed before an answer"))

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:  # the status is known; an oversized body is not read on
            self._finish(False)
            self.close()
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._status, self._chunks, self._size = 0, [], 0
            return
        self._finish(self._parser.should_keep_alive())


@dataclass(frozen=True, slots=True)
class _Target:
    """A gateway URL checked once (allowlist, scheme, port, characters), with its request head."""

    key: tuple[str, str, int]  # scheme, host, port: the pool of kept connections
    parts: SplitResult
    head: bytes  # "POST … Host: …" up to the Content-Length value

    def request(self, body: bytes) -> bytes:
        return b"%s%d\r\n\r\n%s" % (self.head, len(body), body)


_PRINTABLE = frozenset(range(0x21, 0x7F))  # what a request target or Host may carry unescaped
TARGETS_KEPT = 1_024


class OutboundClient:
    """POSTs JSON to gateways under an `OutboundPolicy`, keeping connections alive per gateway."""

    def __init__(self, policy: OutboundPolicy, timeout_s: float, *, tls: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self._tls = tls
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def close(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for c in conns:
                c.close()

    def _target(self, url: str) -> _Target:
        """`url` checked against the policy and parsed, once per URL: the policy does not change
        while the client lives, so the answer for a URL stands (raises GatewayRefused)."""
        target = self._targets.get(url)
        if target is not None:
            return target
        parts = urllib.parse.urlsplit(url)
        if not self.policy.url_allowed(parts):
            raise GatewayRefused("the URL is not in push_gateway_allowlist")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GatewayRefused("not an http(s) URL")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise GatewayRefused("invalid port") from exc
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host = parts.netloc.rsplit("@", 1)[-1]
        try:
            path_b, host_b = path.encode("ascii"), host.encode("ascii")
        except UnicodeEncodeError as exc:
            raise GatewayRefused("the URL has characters an HTTP request cannot carry") from exc
        if not set(path_b) <= _PRINTABLE or not set(host_b) <= _PRINTABLE:
            raise GatewayRefused("the URL has characters an HTTP request cannot carry")
        head = (
            b"POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: " % (path_b, host_b, USER_AGENT.encode())
        )
        target = _Target((parts.scheme, parts.hostname, port), parts, head)
        if len(self._targets) >= TARGETS_KEPT:
            self._targets.clear()
        self._targets[url] = target
        return target

    async def post_json(self, url: str, body: bytes) -> Answer:
        """POST `body` (JSON) to `url`. Raises GatewayRefused (policy: nothing sent) or
        GatewayUnreachable (no answer); any HTTP answer, whatever its status, is returned."""
        t = self._target(url)
        request = t.request(body)
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = self._take(t.key)
                if conn is not None:
                    try:
                        return await self._exchange(t.key, conn, request)
                    except _Stale:
                        pass  # closed by the gateway while idle: once more, on a new connection
                _, host, port = t.key
                addresses = await self.policy.resolve(host, port)
                conn = await self._connect(t.parts, port, addresses[0])
                try:
                    return await self._exchange(t.key, conn, request)
                except _Stale as exc:
                    raise EOFError("the connection closed before an answer") from exc
        except TimeoutError as exc:
            raise GatewayUnreachable(f"no answer within {self.timeout_s} s") from exc
        except (OSError, ssl.SSLError, _BadAnswer, EOFError) as exc:
            raise GatewayUnreachable(f"{type(exc).__name__}: {exc}") from exc

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        conns = self._idle.get(key)
        now = asyncio.get_running_loop().time()
        while conns:
            conn = conns.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    def _put(self, key: tuple[str, str, int], conn: _Connection) -> None:
        conns = self._idle.setdefault(key, [])
        if len(conns) >= MAX_IDLE_PER_GATEWAY:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        conns.append(conn)

    async def _connect(self, parts: urllib.parse.SplitResult, port: int, address: str) -> _Connection:
        https = parts.scheme == "https"
        _, conn = await asyncio.get_running_loop().create_connection(
            _Connection,
            address,
            port,
            ssl=self._tls_context() if https else None,
            server_hostname=parts.hostname if https else None,
        )
        return conn

    async def _exchange(self, key: tuple[str, str, int], c: _Connection, request: bytes) -> Answer:
        """One request on `c`; `c` goes back to the idle pool if both sides may go on, else it is
        closed. Raises _Stale if the connection failed before any byte of an answer."""
        try:
            answer, keep = await c.request(request)
        except BaseException:
            c.close()
            raise
        if keep:
            self._put(key, c)
        else:
            c.close()
        return answer
