"""The servers under test: Paigham (this repo's `paigham serve`) and Synapse (installed from PyPI into
a throwaway venv at run time). Both listen on 127.0.0.1 only, use the same database kind, and are
measured from outside through /proc/<pid> (CPU time, resident memory, open sockets)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.gateway import gateway_url

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SYNAPSE_SPEC = os.environ.get("BENCH_SYNAPSE_SPEC", "matrix-synapse==1.163.2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_sockets(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


@dataclass
class Server:
    """A server process under test; `pids` are the processes whose CPU and memory count."""

    name: str
    workdir: Path
    port: int
    secret: str
    db_kind: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Ports of the push gateway stand-ins (bench/gateway.py) on 127.0.0.1 that pushers may name.
    gateway_ports: tuple[int, ...] = ()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid]

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(p) for p in self.pids)

    def rss_mb(self) -> float:
        return sum(proc_status_mb(p, "VmRSS") for p in self.pids)

    def peak_rss_mb(self) -> float:
        return sum(proc_status_mb(p, "VmHWM") for p in self.pids)

    def sockets(self) -> int:
        return sum(proc_sockets(p) for p in self.pids)

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith(("PAIGHAM_", "PROMETHEUS_"))}

    def start(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                                     cwd=self.workdir, start_new_session=True)
        out.close()

    async def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log_path}")
                try:
                    async with http.get(self.base_url + "/_matrix/client/versions") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class PaighamServer(Server):
    paigham_bin: str = str(REPO / ".venv" / "bin" / "paigham")
    database_url: str = ""
    nats_url: str = ""
    cheap_hashes: bool = False

    def command(self) -> list[str]:
        cmd = [self.paigham_bin, "serve", "--data-dir", str(self.workdir / "data"), "--server-name", "localhost",
               "--host", "127.0.0.1", "--port", str(self.port), "--registration-shared-secret", self.secret]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        if self.nats_url:
            cmd += ["--nats-url", self.nats_url]
        return cmd

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PAIGHAM_CREATE_ADMIN"] = "false"
        env["PAIGHAM_LOG_LEVEL"] = "warning"
        # The gateway stand-ins: allowlisted, and their loopback address let through (push_force_event_id_only
        # stays at its default, true; the pushers ask for event_id_only anyway).
        env["PAIGHAM_PUSH_GATEWAY_ALLOWLIST"] = ",".join(gateway_url(p) for p in self.gateway_ports)
        env["PAIGHAM_IP_RANGE_WHITELIST"] = "127.0.0.0/8"
        # Synapse's listener runs with `compress: false`: Paigham's answers uncompressed too, so neither
        # pays (nor is spared) compression in the comparison (compression is measured on its own).
        env["PAIGHAM_COMPRESS_MIN_BYTES"] = "0"
        if self.cheap_hashes:
            # large_room registers 62,000 accounts on PostgreSQL: cheap password hashes there, as Synapse's
            # bcrypt_rounds: 4 (registration is set-up, not measured). The other workloads keep Argon2id's
            # production cost, and with it the set-up peak docs/benchmarks.md explains.
            env["PAIGHAM_PASSWORD_ARGON2_TIME_COST"] = "1"
            env["PAIGHAM_PASSWORD_ARGON2_MEMORY_KIB"] = "64"
        # The code of this checkout, even when the venv's editable install points at another one (a git
        # worktree sharing the main checkout's venv). Another build is measured by running the bench from
        # its own checkout: a PYTHONPATH naming its src here would be shadowed (and was, in session 18).
        inherited = env.get("PYTHONPATH", "")
        for entry in filter(None, inherited.split(os.pathsep)):
            if (Path(entry) / "paigham").is_dir() and Path(entry).resolve() != (REPO / "src").resolve():
                raise SystemExit(f"PYTHONPATH names another paigham ({entry}), which this checkout's src would "
                                 f"shadow: run the bench from that checkout instead")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), inherited) if p)
        return env


def ensure_synapse_venv(venv: Path, db_kind: str) -> Path:
    """A venv with Synapse from PyPI (created on first use; nothing of it lives in the repo)."""
    python = venv / "bin" / "python"
    probe = "import synapse" + (", psycopg2" if db_kind == "postgres" else "")
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    spec = SYNAPSE_SPEC.replace("matrix-synapse", "matrix-synapse[postgres]", 1) if db_kind == "postgres" \
        else SYNAPSE_SPEC
    print(f"installing {spec} into {venv} (first run only) ...", flush=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", spec], check=True)
    return python


# Every rate limit Synapse has, raised out of the way (the workloads are rate-limit-free on Paigham too).
_UNLIMITED = {"per_second": 1_000_000, "burst_count": 1_000_000}
SYNAPSE_RATELIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_third_party_invite": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
}


@dataclass
class SynapseServer(Server):
    python: Path = Path("python3")
    pg: dict[str, str] = field(default_factory=dict)

    def configure(self) -> None:
        cfg_path = self.workdir / "homeserver.yaml"
        subprocess.run([str(self.python), "-m", "synapse.app.homeserver", "--server-name", "localhost",
                        "--config-path", str(cfg_path), "--generate-config", "--report-stats=no",
                        "--data-directory", str(self.workdir)], check=True, capture_output=True, cwd=self.workdir)
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["listeners"] = [{"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                             "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}]
        if self.db_kind == "postgres":
            cfg["database"] = {"name": "psycopg2", "allow_unsafe_locale": True,
                               "args": {**self.pg, "cp_min": 5, "cp_max": 10}}
        cfg["registration_shared_secret"] = self.secret
        cfg["trusted_key_servers"] = []
        cfg["suppress_key_server_warning"] = True
        cfg["report_stats"] = False
        cfg["enable_metrics"] = False
        cfg["default_room_version"] = "11"  # as Paigham
        cfg["bcrypt_rounds"] = 4  # registration and login are set-up, not measured
        cfg["presence"] = {"enabled": True}  # as Paigham's default
        # Native (simplified) sliding sync, MSC4186: on by default since Synapse 1.114; said explicitly.
        cfg.setdefault("experimental_features", {})["msc3575_enabled"] = True
        cfg.update(SYNAPSE_RATELIMITS)
        # Pushes: Synapse refuses private addresses for outbound requests, the gateway stand-ins are on loopback;
        # and no message content in pushes, as Paigham (the pushers ask for event_id_only anyway).
        cfg["ip_range_whitelist"] = ["127.0.0.0/8"]
        cfg["push"] = {"include_content": False}
        # Delayed events (MSC4140) are off in Synapse until a maximum delay is set: as Element's deployment charts.
        cfg["max_event_delay_duration"] = "24h"
        log_cfg = {
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                                  "filename": str(self.workdir / "homeserver.log")}},
            "root": {"level": "WARNING", "handlers": ["file"]},  # as Paigham: no per-request logging
            "disable_existing_loggers": False,
        }
        log_path = self.workdir / "log.yaml"
        log_path.write_text(yaml.safe_dump(log_cfg))
        cfg["log_config"] = str(log_path)
        cfg_path.write_text(yaml.safe_dump(cfg))

    def command(self) -> list[str]:
        return [str(self.python), "-m", "synapse.app.homeserver", "--config-path",
                str(self.workdir / "homeserver.yaml")]


def fresh_workdir(root: Path, name: str) -> Path:
    path = root / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def new_secret() -> str:
    return secrets.token_urlsafe(24)
