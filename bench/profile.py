"""py-spy attached to the Paigham process during chosen workloads; the collapsed stacks are summed
into `bench/results/profile-<workload>.txt` (SQLite) or `profile-postgres-<workload>.txt`: where the
server's time goes, by function and by package."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.servers import Server

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")


def _py_spy() -> str:
    exe = Path(sys.executable).parent / "py-spy"
    return str(exe) if exe.exists() else (shutil.which("py-spy") or "py-spy")


def _package(file: str) -> str:
    parts = file.replace("\\", "/").split("/")
    if "paigham" in parts:
        return "paigham/" + "/".join(parts[parts.index("paigham") + 1 : -1] or ["."])
    for marker in ("site-packages", "lib"):
        if marker in parts:
            i = parts.index(marker)
            rest = parts[i + 1 :]
            if rest and not rest[0].startswith("python3"):
                return rest[0].removesuffix(".py")
            if len(rest) > 1:
                return "stdlib:" + rest[1].removesuffix(".py")
    return parts[0].removesuffix(".py") if parts else "?"


def summarise(raw: Path, out: Path, title: str, top: int = 45, gil: bool = False) -> None:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        leaf = frames[-1]
        own[leaf] += count
        m = _FRAME.match(leaf)
        packages[_package(m.group("file")) if m else "?"] += count
        for f in set(frames):
            total[f] += count
    held = ", GIL held only" if gil else ""
    how = f"py-spy --nonblocking, all threads, idle excluded{held}"
    lines = [f"# {title}", f"# {samples} samples at 100 Hz ({how})", ""]
    lines.append("## Own time by package (where the CPU actually was)")
    for pkg, n in packages.most_common(25):
        lines.append(f"{n / max(1, samples) * 100:6.1f} %  {pkg}")
    lines += ["", "## Own time by function"]
    for f, n in own.most_common(top):
        lines.append(f"{n / max(1, samples) * 100:6.1f} %  {f}")
    lines += ["", "## Inclusive time by function (paigham code only)"]
    for f, n in total.most_common():
        if "paigham" not in f:
            continue
        lines.append(f"{n / max(1, samples) * 100:6.1f} %  {f}")
        if len(lines) > 3 * top + 40:
            break
    out.write_text("\n".join(lines) + "\n")


class Profiler:
    def __init__(self, results: Path, workloads: list[str], db: str = "sqlite", gil: bool = False) -> None:
        self.results = results
        # Only samples holding the GIL: CPU the process spends in Python, without the time a thread
        # waits in a system call that released it (a socket send() preempted on a busy 2-core machine
        # shows as "time in write" otherwise).
        self.gil = gil
        self.workloads = workloads
        self.prefix = "profile-" if db == "sqlite" else f"profile-{db}-"  # one file per engine
        self.outputs: list[Path] = []

    def around(self, server: Server) -> Callable[[str, str], Callable[[], None] | None]:
        def start(name: str, workload: str) -> Callable[[], None] | None:
            if workload.split("-")[0] not in self.workloads:  # "<workload>-<part>" for a part of one
                return None
            self.results.mkdir(parents=True, exist_ok=True)
            raw = self.results / f"{self.prefix}{workload}.raw"
            proc = subprocess.Popen([_py_spy(), "record", "-p", str(server.pids[0]), "-f", "raw", "-o", str(raw),
                                     "-r", "100", "--nonblocking", "--nolineno", *(["--gil"] if self.gil else [])],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

            def stop() -> None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                if raw.exists():
                    out = raw.with_suffix(".txt")
                    summarise(raw, out, f"{name}: {workload}", gil=self.gil)
                    raw.unlink()
                    self.outputs.append(out)

            return stop

        return start
