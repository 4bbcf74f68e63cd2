"""A real coturn (Debian's `turnserver`) on loopback for the call tests, on a free port with its own
config in a temp directory. `make test` installs coturn when missing (SYSTEM_PKGS); in CI a missing
turnserver fails the tests that need it instead of skipping them."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aioice import stun

TURNSERVER = shutil.which("turnserver") or ("/usr/bin/turnserver" if os.path.exists("/usr/bin/turnserver") else None)
REALM = "test.local"
needs_coturn = pytest.mark.skipif(
    TURNSERVER is None and not os.environ.get("CI"), reason="turnserver (Debian coturn) is not installed"
)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


async def _answers_binding(port: int) -> bool:
    """A STUN Binding request (RFC 8489): coturn answers it once its UDP listener is up."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 2048), 0.2)
        except (TimeoutError, ConnectionRefusedError):
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@asynccontextmanager
async def coturn(tmp_path: Path, *auth: str) -> AsyncIterator[int]:
    """Run turnserver with the `auth` config lines; yields its port (UDP and TCP on 127.0.0.1)."""
    assert TURNSERVER is not None, "turnserver is missing: `make system-deps` installs Debian's coturn"
    port = free_port()
    conf = tmp_path / "turnserver.conf"
    lines = [
        "listening-ip=127.0.0.1",
        f"listening-port={port}",
        "relay-ip=127.0.0.1",
        f"realm={REALM}",
        *auth,
        "fingerprint",
        "no-tls",
        "no-dtls",
        "no-cli",
        "allow-loopback-peers",  # the test's peer is on 127.0.0.1 (production denies it; README "Calls")
        "no-multicast-peers",
        f"userdb={tmp_path / 'turndb'}",
        f"pidfile={tmp_path / 'turnserver.pid'}",
        f"log-file={tmp_path / 'turnserver.log'}",
        "simple-log",
        "no-stdout-log",
    ]
    conf.write_text("\n".join(lines) + "\n")
    proc = await asyncio.create_subprocess_exec(
        TURNSERVER, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(50):
            if proc.returncode is None and await _answers_binding(port):
                break
            await asyncio.sleep(0.05)
        else:
            log = (tmp_path / "turnserver.log").read_text(errors="replace")[-2000:] if proc.returncode else ""
            raise AssertionError(f"turnserver did not start on port {port}: {log}")
        yield port
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
