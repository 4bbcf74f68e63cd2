"""matrix-js-sdk 43 (Element Web's SDK, Rust crypto) scripts run with Node against the real server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from acc_support import ServerInfo
from push_support import GatewayThread

pytestmark = pytest.mark.acceptance

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT_TIMEOUT_S = 150


def run_script(server: ServerInfo, script: str, hard_timeout_ms: int, *args: str) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (needed for the matrix-js-sdk acceptance tests)", pytrace=False)
    if not (JS_DIR / "node_modules" / "matrix-js-sdk").is_dir():
        pytest.fail(f"{JS_DIR}/node_modules is missing: run `make acceptance-deps` (npm ci in {JS_DIR})", pytrace=False)
    env = dict(os.environ, ACCEPTANCE_TIMEOUT_MS=str(hard_timeout_ms))
    try:
        proc = subprocess.run(
            [node, script, server.base_url, server.registration_token, *args],
            cwd=JS_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(f"{script} did not finish within {SCRIPT_TIMEOUT_S}s\n{out}", pytrace=False)
    output = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    if proc.returncode != 0:
        pytest.fail(
            f"node {script} against {server.engine} server exited {proc.returncode}\n{output}\n"
            f"{server.logs_for_failure(4000) if server.process else ''}",
            pytrace=False,
        )
    assert "OK: all steps passed" in proc.stdout, output
    return proc.stdout


def test_js_sdk_chat(server: ServerInfo) -> None:
    run_script(server, "chat.mjs", hard_timeout_ms=90_000)


def test_js_sdk_first_login_as_element_web(server: ServerInfo, e2ee_endpoints: None) -> None:
    """Element Web's first sign-in sets up cross-signing and a key backup; another user sees the
    device signed by its owner (js/first_login.mjs)."""
    out = run_script(server, "first_login.mjs", hard_timeout_ms=90_000)
    assert 'cross-signing uploads: {"withoutAuth":1,"withAuth":1}' in out, out


def test_js_sdk_e2ee(server: ServerInfo, e2ee_endpoints: None) -> None:
    out = run_script(server, "e2ee.mjs", hard_timeout_ms=120_000)
    secrets = [ln.split("PLAINTEXT: ", 1)[1] for ln in out.splitlines() if ln.startswith("PLAINTEXT: ")]
    assert len(secrets) == 3, out
    if not server.storage_searchable():
        return
    for secret in secrets:
        hits = server.search_storage(secret)
        assert hits == [], f"plaintext {secret!r} found in server storage: {hits}"


def test_js_sdk_sliding_sync(server: ServerInfo) -> None:
    """matrix-js-sdk's own SlidingSync class (Simplified Sliding Sync, MSC4186) as the client's sync
    loop: invite, join, messages both ways arrive exactly once in order, list counts, extensions."""
    out = run_script(server, "sliding.mjs", hard_timeout_ms=90_000)
    assert "responses: A " in out, out


def test_js_sdk_delayed_events(server: ServerInfo) -> None:
    """MSC4140 through matrix-js-sdk's own calls, as its MatrixRTC MembershipManager (Element Call) makes
    them: a delayed hangup kept alive by restarts and sent when they stop (js/delayed.mjs)."""
    run_script(server, "delayed.mjs", hard_timeout_ms=90_000)


def printed(out: str, label: str) -> str:
    values = [ln.split(f"{label}: ", 1)[1].strip() for ln in out.splitlines() if ln.startswith(f"{label}: ")]
    assert len(values) == 1, f"expected one {label} line\n{out}"
    return values[0]


def test_js_sdk_push(server: ServerInfo, push_gateway: GatewayThread) -> None:
    """B registers a pusher with `client.setPusher` and finds it with `client.getPushers` (as Element
    Web's Settings → Sessions does), A invites B and sends (js/push.mjs); the ntfy-like gateway stand-in
    receives the invite's push, then exactly one notify for the message, event_id_only."""
    pushkey = push_gateway.new_pushkey()
    out = run_script(server, "push.mjs", 90_000, push_gateway.url, pushkey)
    room_id, event_id = printed(out, "PUSH_ROOM"), printed(out, "PUSH_EVENT")
    got = push_gateway.wait_for_sync(event_id)
    assert len(got) == 1, f"{len(got)} notify requests for {event_id}: {got}"
    n = got[0]
    assert push_gateway.accepted_for(event_id) == [n], "the gateway did not accept the notify"
    assert set(n) <= {"event_id", "room_id", "counts", "devices", "prio"}, f"not event_id_only: {sorted(n)}"
    assert n["room_id"] == room_id and n["prio"] == "high" and n["counts"]["unread"] >= 1, n
    assert n["devices"] == [
        {
            "app_id": "io.element.android",
            "pushkey": pushkey,
            "pushkey_ts": n["devices"][0]["pushkey_ts"],
            "data": {"format": "event_id_only"},
        }
    ], n
    # per pusher in stream order: the invite first (.m.rule.invite_for_me), then the message
    pushed = [x for x in push_gateway.requests_to(pushkey) if "event_id" in x]  # not badge updates
    assert [x["event_id"] for x in pushed][1:] == [event_id], pushed
    assert pushed[0]["room_id"] == room_id and pushed[0]["prio"] == "high", pushed[0]
    # the pusher B removed again (client.removePusher) never got anything
    assert push_gateway.requests_to(pushkey.split("?")[0] + "x2?up=1") == []
