"""The `paigham` command line and the layered configuration."""

from __future__ import annotations

import asyncio
import getpass
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paigham.cli.main import app
from paigham.config import load_config

runner = CliRunner()


def test_config_layers(tmp_path: Path) -> None:
    cfg_file = tmp_path / "paigham.yaml"
    cfg_file.write_text("server_name: ministry.example\nport: 9000\npresence_enabled: false\n")
    cfg = load_config(str(cfg_file), {"port": 9100}, {"PAIGHAM_PORT": "9050", "PAIGHAM_HOST": "0.0.0.0"})
    assert cfg.server_name == "ministry.example"  # from the file
    assert cfg.host == "0.0.0.0"  # from the environment
    assert cfg.port == 9100  # the command line wins
    assert cfg.presence_enabled is False
    assert cfg.effective_database_url.startswith("sqlite:///")


def test_config_rejects_unknown_and_bad_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sever_name: typo\n")
    with pytest.raises(ValueError, match="unknown settings"):
        load_config(str(bad), environ={})
    with pytest.raises(Exception):  # noqa: B017 - msgspec.ValidationError
        load_config(None, {"port": "not-a-port"}, environ={})
    # Delayed-event limits that would make every delayed send fail, or purge everything, stop the start.
    for setting, value in (
        ("max_event_delay_ms", 0),
        ("delayed_events_max_per_user", 0),
        ("delayed_events_keep_finalised_hours", -1),
        ("password_argon2_time_cost", 0),
        ("password_argon2_memory_kib", 16),
    ):
        with pytest.raises(Exception, match=setting):  # msgspec wraps the ValueError
            load_config(None, {setting: value}, environ={})


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_user_lifecycle(database_url: str, tmp_path: Path) -> None:
    common = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    out = _invoke(
        "user", "create", "Officer1", "--password", "pw-1", "--admin", "--display-name", "Officer One", *common
    )
    assert "@officer1:localhost" in out
    token = _invoke("registration-token", "create", "--uses", "2", "--expires-in", "7d", *common).strip()
    assert len(token) == 16
    _invoke("user", "reset-password", "officer1", "--password", "pw-2", *common)
    dup = runner.invoke(app, ["user", "create", "officer1", "--password", "x", *common])
    assert dup.exit_code == 1 and "already taken" in dup.output
    _invoke("user", "deactivate", "@officer1:localhost", *common)
    missing = runner.invoke(app, ["user", "deactivate", "ghost", *common])
    assert missing.exit_code == 1

    async def check() -> None:
        from paigham.app import Server
        from paigham.config import Config

        srv = Server(Config(data_dir=str(tmp_path / "data"), database_url=database_url, create_admin=False))
        user = await srv.accounts.get_user("@officer1:localhost")
        assert user is not None and user.admin and user.deactivated and user.displayname == "Officer One"
        assert await srv.accounts.registration_token_valid(token, 0)
        await srv.db.close()

    asyncio.run(check())


def test_first_start_creates_admin_and_secrets(tmp_path: Path) -> None:
    from paigham.app import Server
    from paigham.config import Config

    data = tmp_path / "data"

    async def start_twice() -> str:
        srv = Server(Config(data_dir=str(data)))
        await srv.start()
        await srv.stop()
        first = (data / "admin-credentials").read_text()
        srv2 = Server(Config(data_dir=str(data)))
        await srv2.start()  # a second start creates no second admin
        assert await srv2.accounts.count_users() == 1
        await srv2.stop()
        return first

    creds = asyncio.run(start_twice())
    assert "user_id: @admin:localhost" in creds
    for name in ("admin-credentials", "signing.key", "registration-shared-secret"):
        mode = stat.S_IMODE(os.stat(data / name).st_mode)
        assert mode == 0o600, (name, oct(mode))


def test_commands_work_for_the_server_the_data_belongs_to(database_url: str, tmp_path: Path) -> None:
    """Issue 14 #5: on 81fc255 `paigham user create` on ministry.gov.example's data made @…:localhost,
    and a restart under another name was accepted silently."""
    from paigham.app import Server
    from paigham.config import Config
    from paigham.services.server_identity import ServerNameMismatch

    data = str(tmp_path / "data")
    common = ["--data-dir", data, "--database-url", database_url]

    async def start(name: str) -> None:
        srv = Server(Config(data_dir=data, database_url=database_url, server_name=name, create_admin=False))
        try:
            await srv.start()
            await srv.stop()
        finally:
            await srv.db.close()

    asyncio.run(start("ministry.gov.example"))  # the first start keeps the name with the data
    assert "@rsharma:ministry.gov.example" in _invoke("user", "create", "rsharma", "--password", "pw-1", *common)
    with pytest.raises(ServerNameMismatch, match=r"ministry\.gov\.example"):
        asyncio.run(start("other.example"))
    refused = runner.invoke(app, ["serve", "--server-name", "other.example", *common])
    assert refused.exit_code == 2 and "belongs to the server 'ministry.gov.example'" in refused.output
    named = runner.invoke(
        app, ["user", "create", "x", "--password", "p", *common], env={"PAIGHAM_SERVER_NAME": "b.example"}
    )
    assert named.exit_code == 2 and "ministry.gov.example" in named.output


def test_admin_commands_are_audited_with_the_os_user(database_url: str, tmp_path: Path) -> None:
    """Issue 14 #4 and #11: CLI admin actions leave audit records as the API's do, with the operating-system
    user as the actor; reset-password clears a sign-in lockout."""
    from paigham.app import Server
    from paigham.config import Config

    data = str(tmp_path / "data")
    common = ["--data-dir", data, "--database-url", database_url]
    _invoke("user", "create", "officer", "--password", "pw-1", "--admin", *common)
    _invoke("registration-token", "create", "--uses", "1", *common)

    async def lock_out() -> None:
        srv = Server(Config(data_dir=data, database_url=database_url, create_admin=False))
        try:
            for _ in range(20):
                await srv.login_guard.failed("@officer:localhost", None, None)
        finally:
            await srv.db.close()

    asyncio.run(lock_out())
    _invoke("user", "reset-password", "officer", "--password", "pw-2", *common)
    _invoke("user", "deactivate", "officer", *common)

    async def records() -> tuple[list[tuple[str, str | None, str | None]], int]:
        srv = Server(Config(data_dir=data, database_url=database_url, create_admin=False))
        try:
            entries = [e async for e in srv.audit.export()]
            failures = await srv.login_guard.store.get(["u:@officer:localhost"])
        finally:
            await srv.db.close()
        return [(e["kind"], e["actor"], e["target"]) for e in entries], len(failures)

    entries, failures = asyncio.run(records())
    me = f"os:{getpass.getuser()}"
    kinds = {kind for kind, actor, _ in entries if actor == me}
    assert {
        "admin.create_user",
        "admin.registration_token_created",
        "admin.reset_password",
        "admin.deactivate",
    } <= kinds
    assert failures == 0  # the lockout went with the reset
