"""Turn one run's results into the table of docs/benchmarks.md and a PNG of the latency distributions."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
TIMES = "\u00d7"  # the multiplication sign


def _get(d: dict[str, Any] | None, path: str) -> float | None:
    cur: Any = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, int | float) else None


def _fmt(v: float | None, unit: str) -> str:
    if v is None or math.isnan(v):
        return "—"
    if unit == "ms":
        return f"{v:.1f} ms" if v < 100 else f"{v:,.0f} ms"
    if unit == "s":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "MB":
        return f"{v:.0f} MB"
    if unit == "/s":
        return f"{v:,.0f}/s" if v >= 100 else f"{v:.1f}/s"
    if unit == "%":
        return f"{v * 100:.0f} %"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}".rstrip("0").rstrip(".")


# (label, path in a server's results, unit, better: "high"|"low", target: (kind, value) or None)
ROWS: list[tuple[str, str, str, str, tuple[str, float] | None]] = [
    ("Send throughput, many concurrent senders", "throughput.messages_per_s", "/s", "high", ("ratio", 10)),
    ("Server CPU per message (delivered to all syncing members)", "throughput.cpu_ms_per_message", "ms", "low",
     ("ratio", 10)),
    ("Send request latency p50 under load", "throughput.send.p50_ms", "ms", "low", None),
    ("Send request latency p99 under load", "throughput.send.p99_ms", "ms", "low", None),
    ("Send request latency max under load (the slowest of all)", "throughput.send.max_ms", "ms", "low", None),
    ("Delivery latency p50 under load (send → other user's /sync)", "throughput.delivery.p50_ms", "ms", "low", None),
    ("Delivery latency p99 under load", "throughput.delivery.p99_ms", "ms", "low", ("ratio", 10)),
    ("Send request latency p50, one sender", "latency.send.p50_ms", "ms", "low", None),
    ("Delivery latency p50, one sender", "latency.delivery.p50_ms", "ms", "low", None),
    ("Delivery latency p95, one sender", "latency.delivery.p95_ms", "ms", "low", None),
    ("Delivery latency p99, one sender", "latency.delivery.p99_ms", "ms", "low", ("abs_ms", 50)),
    ("Fan-out: delivery p50 (500 members, 50 syncing)", "fanout.delivery.p50_ms", "ms", "low", None),
    ("Fan-out: delivery p99", "fanout.delivery.p99_ms", "ms", "low", None),
    ("Fan-out: last of 50 receivers p99", "fanout.last_receiver.p99_ms", "ms", "low", None),
    ("Fan-out: server CPU per message", "fanout.cpu_ms_per_message", "ms", "low", None),
    ("Initial sync, user in 200 rooms (median of runs)", "initial_sync.median_s", "s", "low", ("ratio", 5)),
    ("Initial sync: server CPU", "initial_sync.cpu_s", "s", "low", None),
    ("Slow links: that initial sync as sent, uncompressed (bytes)", "initial_sync.slow_links.initial.raw_bytes", "",
     "low", None),
    ("Slow links: the same with zstd (bytes; Paigham's first choice)", "initial_sync.slow_links.initial.zstd_bytes",
     "", "low", None),
    ("Slow links: the same with brotli (bytes)", "initial_sync.slow_links.initial.br_bytes", "", "low", None),
    ("Slow links: the same with gzip (bytes)", "initial_sync.slow_links.initial.gzip_bytes", "", "low", None),
    ("Slow links: CPU to compress it with zstd (ms)", "initial_sync.slow_links.initial.zstd_cpu_ms", "ms",
     "low", None),
    ("Slow links: CPU to compress it with gzip (ms)", "initial_sync.slow_links.initial.gzip_cpu_ms", "ms", "low",
     None),
    ("Slow links: an incremental sync (one message) uncompressed (bytes)",
     "initial_sync.slow_links.incremental.raw_bytes", "", "low", None),
    ("Slow links: the same with zstd (bytes)", "initial_sync.slow_links.incremental.zstd_bytes", "", "low", None),
    ("Many rooms: initial sync, user in 1,000 rooms (median of runs)", "many_rooms.initial.median_s", "s", "low",
     ("ratio", 5)),
    ("Many rooms: initial sync, server CPU", "many_rooms.initial.cpu_s", "s", "low", None),
    ("Many rooms: server RSS growth during that initial sync (largest of runs)", "many_rooms.initial.rss_growth_mb",
     "MB", "low", ("ratio", 5)),
    ("Many rooms: initial sync, bytes (timeline 10, lazy-loaded members)", "many_rooms.initial.response_bytes", "",
     "low", None),
    ("Many rooms: incremental sync, one room changed, p50", "many_rooms.incremental.p50_ms", "ms", "low", None),
    ("Many rooms: incremental sync, one room changed, p99", "many_rooms.incremental.p99_ms", "ms", "low", None),
    ("Many rooms: the same, earlier, when the user was in 10 rooms, p50", "many_rooms.incremental_few_rooms.p50_ms",
     "ms", "low", None),
    ("Many rooms: full_state sync, nothing new (median)", "many_rooms.full_state.median_s", "s", "low", None),
    ("Many rooms: full_state sync, server CPU", "many_rooms.full_state.cpu_s", "s", "low", None),
    ("Many rooms: full_state sync, bytes", "many_rooms.full_state.response_bytes", "", "low", None),
    ("Idle long-polling /sync connections held", "idle_syncs.held", "", "high", None),
    ("RSS with those connections held", "idle_syncs.rss_held_mb", "MB", "low", ("abs_mb", 500)),
    ("Memory per held connection (KiB)", "idle_syncs.kb_per_connection", "", "low", None),
    ("Server CPU while holding them (share of a core)", "idle_syncs.idle_cpu_util", "%", "low", None),
    ("Delivery p99 with them held, one sender", "idle_syncs.delivery_with_idle.p99_ms", "ms", "low", None),
    ("Sliding sync: first room list, 20 of 200 rooms (median of fresh connections)",
     "sliding_sync.room_list.first_ms.p50", "ms", "low", None),
    ("Sliding sync: first room list p90", "sliding_sync.room_list.first_ms.p90", "ms", "low", None),
    ("Sliding sync: all 200 rooms loaded, window grown 20 → 100 → 200 (median)",
     "sliding_sync.room_list.full_ms.p50", "ms", "low", None),
    ("Sliding sync: all 200 rooms loaded p90", "sliding_sync.room_list.full_ms.p90", "ms", "low", None),
    ("Sliding sync: server CPU to load the room list", "sliding_sync.room_list.cpu_ms", "ms", "low", None),
    ("Sliding sync: send throughput, many concurrent senders", "sliding_sync.delivery.messages_per_s", "/s", "high",
     None),
    ("Sliding sync: delivery p50 under load (send → 20 receivers' sliding sync)",
     "sliding_sync.delivery.delivery.p50_ms", "ms", "low", None),
    ("Sliding sync: delivery p99 under load", "sliding_sync.delivery.delivery.p99_ms", "ms", "low", None),
    ("Sliding sync: idle connections held (long-polls open)", "sliding_sync.idle.held", "", "high", None),
    ("Sliding sync: RSS with those held", "sliding_sync.idle.rss_held_mb", "MB", "low", ("abs_mb", 500)),
    ("Sliding sync: memory per held connection (KiB)", "sliding_sync.idle.kb_per_connection", "", "low", None),
    ("Push: send throughput, throughput load with every member holding a pusher", "push.delivery.messages_per_s", "/s",
     "high", ("ratio", 10)),
    ("Push at a fixed rate both take (one message per room every 1.25 s, 4/s): messages sent",
     "push.delivery.steady.messages", "", "", None),
    ("Push at that fixed rate: message → gateway request p50", "push.delivery.steady.notify.p50_ms", "ms", "low",
     None),
    ("Push at that fixed rate: message → gateway request p99", "push.delivery.steady.notify.p99_ms", "ms", "low",
     ("ratio", 10)),
    ("Push at that fixed rate: pushes missing", "push.delivery.steady.pushes_missing", "", "low", None),
    ("Push at that fixed rate: pushes received twice or more", "push.delivery.steady.pushes_duplicate", "", "low",
     None),
    ("Push under the closed-loop load: message → gateway request p50", "push.delivery.notify.p50_ms", "ms", "low",
     None),
    ("Push under the closed-loop load: message → gateway request p99", "push.delivery.notify.p99_ms", "ms", "low",
     None),
    ("Push: pushes owed (one per message and member but the sender)", "push.delivery.pushes_expected", "", "", None),
    ("Push: pushes received at the gateway", "push.delivery.pushes_received", "", "", None),
    ("Push: pushes missing (not received when the wait ended)", "push.delivery.pushes_missing", "", "low", None),
    ("Push: pushes received twice or more", "push.delivery.pushes_duplicate", "", "low", None),
    ("Push: server CPU per message, its pushes included", "push.delivery.server_cpu_ms_per_message_with_pushes", "ms",
     "low", None),
    ("Push, 10,000 pushers whose gateway answers 503, messages offered for 30 s: server RSS (max)",
     "push.gateway_down.rss_max_mb", "MB", "low", None),
    ("Push, gateway down: RSS growth while the messages were sent", "push.gateway_down.rss_growth_mb", "MB", "low",
     None),
    ("Push, gateway down: server CPU meanwhile (share of a core)", "push.gateway_down.cpu_util", "%", "low", None),
    ("Push, gateway down: gateway requests per pusher per minute", "push.gateway_down.requests_per_pusher_per_min",
     "", "low", None),
    ("Push, gateway down: the same in the 15 s after the messages stopped",
     "push.gateway_down.tail_requests_per_pusher_per_min", "", "low", None),
    ("Push, gateway down: server CPU in those 15 s", "push.gateway_down.tail_cpu_util", "%", "low", None),
    ("Push, gateway down: messages sent (12.5/s offered for 30 s: 375)", "push.gateway_down.messages", "", "high",
     None),
    ("Push, gateway down: send requests failed or unanswered in 120 s", "push.gateway_down.send_errors", "", "low",
     None),
    ("Push, gateway down: send request p99", "push.gateway_down.send.p99_ms", "ms", "low", None),
    ("Delayed events: 10,000 pending (1 h delay, half call-membership state): RSS growth",
     "delayed.rss_growth_mb", "MB", "low", None),
    ("Delayed events: memory per 1,000 pending (KiB)", "delayed.rss_per_1000_kb", "", "low", None),
    ("Delayed events: server CPU while they wait (share of a core)", "delayed.cpu_idle_pending_util", "%", "low",
     None),
    ("Delayed events: server CPU idle before them, for comparison", "delayed.cpu_idle_before_util", "%", "low", None),
    ("Delayed events: scheduling rate, 16 at a time", "delayed.schedule_per_s", "/s", "high", None),
    ("Delayed events: schedule p99", "delayed.schedule.p99_ms", "ms", "low", None),
    ("Delayed events: restart (heartbeat) p99", "delayed.restart.p99_ms", "ms", "low", None),
    ("Large room: members (the same on both servers)", "large_room.members", "", "", None),
    ("Large room: fan-out delivery p50 (one sender, lr_syncing long-polling, lazy-loading members)",
     "large_room.fanout.delivery.p50_ms", "ms", "low", None),
    ("Large room: fan-out delivery p99", "large_room.fanout.delivery.p99_ms", "ms", "low", ("ratio", 5)),
    ("Large room: last receiver p99", "large_room.fanout.last_receiver.p99_ms", "ms", "low", None),
    ("Large room: server CPU per message", "large_room.fanout.cpu_ms_per_message", "ms", "low", ("ratio", 10)),
    ("Large room: GET /members (every member event)", "large_room.reads.members_ms", "ms", "low", None),
    ("Large room: GET /joined_members", "large_room.reads.joined_members_ms", "ms", "low", None),
    ("Large room: initial sync of a member, lazy-loading members (median)", "large_room.reads.lazy_initial_sync_ms",
     "ms", "low", None),
    ("Large room: the same without lazy loading (every member's state)", "large_room.reads.full_initial_sync_ms",
     "ms", "low", None),
    ("Large room: join, one at a time, into a room of 20", "large_room.join_small_room.p50_ms", "ms", "low", None),
    ("Large room: join, one at a time, into the large room", "large_room.join_large_room.p50_ms", "ms", "low", None),
    ("Large room: join storm (2,000 offered in 60 s): joins per second achieved", "large_room.storm.joins_per_s",
     "/s", "high", None),
    ("Large room: join storm: join p50", "large_room.storm.join.p50_ms", "ms", "low", None),
    ("Large room: join storm: join p99", "large_room.storm.join.p99_ms", "ms", "low", None),
    ("Large room: join storm: server CPU per join", "large_room.storm.server_cpu_ms_per_join", "ms", "low", None),
    ("Large room: another small room's delivery p99 without the storm",
     "large_room.storm.small_room_quiet.delivery.p99_ms", "ms", "low", None),
    ("Large room: the same during the storm", "large_room.storm.small_room_during_storm.delivery.p99_ms", "ms",
     "low", None),
    ("Large room grown to 50,000 (PostgreSQL, Paigham only): fan-out delivery p99",
     "large_room.bigger.fanout.delivery.p99_ms", "ms", "low", None),
    ("… server CPU per message", "large_room.bigger.fanout.cpu_ms_per_message", "ms", "low", None),
    ("… GET /members", "large_room.bigger.reads.members_ms", "ms", "low", None),
    ("… lazy-loading initial sync", "large_room.bigger.reads.lazy_initial_sync_ms", "ms", "low", None),
    ("… join, one at a time", "large_room.bigger.join_large_room.p50_ms", "ms", "low", None),
    ("Directory (Paigham only; see the notes): search p50, 20 people typing, 200,000 accounts",
     "directory.typing.latency.p50_ms", "ms", "low", None),
    ("Directory: search p99, 20 people typing", "directory.typing.latency.p99_ms", "ms", "low", ("abs_ms", 30)),
    ("Directory: server CPU per search", "directory.typing.server_cpu_ms_per_search", "ms", "low", None),
    ("… p99 of one word's first 2 letters", "directory.typing.by_letters.1 word, 2 letters.p99_ms", "ms", "low", None),
    ("… p99 of one word's first 3 letters", "directory.typing.by_letters.1 word, 3 letters.p99_ms", "ms", "low", None),
    ("… p99 of one whole word (6 letters or more)", "directory.typing.by_letters.1 word, 6 letters.p99_ms", "ms", "low",
     None),
    ("… p99 of a first word and a second's first letter", "directory.typing.by_letters.2 words, 1 letters.p99_ms",
     "ms", "low", None),
    ("… p99 of a first word and a second's first 3 letters",
     "directory.typing.by_letters.2 words, 3 letters.p99_ms", "ms", "low", None),
    ("Directory: searches per second, 20 searchers without a pause", "directory.saturation.searches_per_s", "/s",
     "high", None),
    ("Directory: search p99 without a pause (at capacity)", "directory.saturation.latency.p99_ms", "ms", "low", None),
    ("Directory: 20 first keystrokes sent in the same tick, the last answer (median of 10 bursts)",
     "directory.burst.last_answer.p50_ms", "ms", "low", None),
    ("Directory: `paigham org import` of 100,000 officials (wall, spaces and joins included)",
     "directory.org_import.wall_s", "s", "low", None),
    ("Directory: that import's peak RSS", "directory.org_import.peak_rss_mb", "MB", "low", None),
    ("Directory: `paigham user import` of 100,000 plain accounts", "directory.user_import.wall_s", "s", "low", None),
    ("Directory: that import's peak RSS", "directory.user_import.peak_rss_mb", "MB", "low", None),
    ("RSS idle after start", "rss_idle_start_mb", "MB", "low", ("ratio", 3)),
    ("RSS idle after a restart on the same data", "rss_idle_restart_mb", "MB", "low", ("ratio", 3)),
    ("RSS idle after all workloads", "rss_idle_end_mb", "MB", "low", None),
    ("Peak RSS over the run", "rss_peak_mb", "MB", "low", None),
]


def _ratio(p: float | None, s: float | None, better: str) -> float | None:
    if p is None or s is None or p == 0 or s == 0 or math.isnan(p) or math.isnan(s):
        return None
    return p / s if better == "high" else s / p


def _verdict(target: tuple[str, float] | None, p: float | None, ratio: float | None) -> str:
    if target is None or p is None:
        return ""
    kind, value = target
    if kind == "ratio":
        met = ratio is not None and ratio >= value
        return f"≥ {value:g}{TIMES} — {'met' if met else '**missed**'}"
    if kind == "abs_ms":
        met = p is not None and p < value
        return f"< {value:g} ms — {'met' if met else '**missed**'}"
    if kind == "abs_mb":
        met = p is not None and p < value
        return f"< {value:g} MB (one process) — {'met' if met else '**missed**'}"
    return ""


def table(results: dict[str, Any]) -> str:
    p, s = results.get("paigham"), results.get("synapse")
    lines = ["| Workload / figure | Paigham | Synapse | Paigham advantage | Target |", "|---|---:|---:|---:|---|"]
    for label, path, unit, better, target in ROWS:
        pv, sv = _get(p, path), _get(s, path)
        if pv is None and sv is None:
            continue
        ratio = _ratio(pv, sv, better) if better else None  # better "": a count, no advantage
        rtxt = f"{ratio:.1f}{TIMES}" if ratio is not None else "—"
        lines.append(f"| {label} | {_fmt(pv, unit)} | {_fmt(sv, unit)} | {rtxt} | {_verdict(target, pv, ratio)} |")
    c = results.get("cluster")
    if c:
        for label, key in (("Cluster (2 workers, PostgreSQL + NATS): delivery p50 across workers", "p50_ms"),
                           ("Cluster: delivery p99 across workers", "p99_ms")):
            v = _get(c, f"cross_worker.delivery.{key}")
            verdict = "< 50 ms — " + ("met" if v is not None and v < 50 else "**missed**") if key == "p99_ms" else ""
            lines.append(f"| {label} | {_fmt(v, 'ms')} | n/a | | {verdict} |")
        v = _get(c, "cross_worker.send.p50_ms")
        lines.append(f"| Cluster: send request p50 (PostgreSQL commit included) | {_fmt(v, 'ms')} | n/a | | |")
        v = _get(c, "same_worker.delivery.p99_ms")
        lines.append(f"| Cluster: delivery p99, both users on one worker (for comparison) | {_fmt(v, 'ms')} "
                     "| n/a | | |")
    return "\n".join(lines)


# Memory per unit: (label, how to get it from one server's results, unit of the figure).
def _ss_state_kb(r: dict[str, Any]) -> float | None:
    idle = r.get("sliding_sync", {}).get("idle", {})
    if not idle.get("held"):
        return None
    return float((idle["rss_opened_mb"] - idle["rss_before_mb"]) * 1024 / idle["held"])


def _per_failing_pusher_kb(r: dict[str, Any]) -> float | None:
    down = r.get("push", {}).get("gateway_down", {})
    return float(down["rss_growth_mb"] * 1024 / down["pushers"]) if down.get("pushers") else None


PER_UNIT: list[tuple[str, Any, str]] = [
    ("a long-polling /sync client (KiB)", lambda r: _get(r, "idle_syncs.kb_per_connection"), ""),
    ("a sliding-sync connection, its state only (KiB)", _ss_state_kb, ""),
    ("a sliding-sync connection with its long-poll held (KiB)",
     lambda r: _get(r, "sliding_sync.idle.kb_per_connection"), ""),
    ("an open TCP connection without a request (KiB)", lambda r: _get(r, "memory.connections.kb_per_connection"), ""),
    ("a queued to-device message, ~700 bytes, device offline (bytes)",
     lambda r: _get(r, "memory.to_device.bytes_per_message"), ""),
    ("a pending delayed event (bytes)", lambda r: _mul(_get(r, "delayed.rss_per_1000_kb"), 1024 / 1000), ""),
    ("a pusher whose gateway is down, while messages are owed to it (KiB)", _per_failing_pusher_kb, ""),
]


def _mul(v: float | None, k: float) -> float | None:
    return None if v is None else v * k


def memory_table(results: dict[str, Any]) -> str:
    """Resident memory of each workload (median of 0.25 s samples, and its peak) for both servers, and
    what one more client, connection or queued message costs (growth of RSS divided by the count)."""
    p, s = results.get("paigham") or {}, results.get("synapse") or {}
    names = [k for k, v in {**s, **p}.items() if isinstance(v, dict) and "memory" in v]
    lines = ["| Workload: server RSS | Paigham steady | Synapse steady | Paigham ÷ Synapse | peak while measured "
             "(Paigham / Synapse) | peak with set-up (Paigham / Synapse) | steady ≤ ½ of Synapse's |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name in names:
        pv, sv = _get(p, f"{name}.memory.rss_steady_mb"), _get(s, f"{name}.memory.rss_steady_mb")
        share = pv / sv if pv and sv else None
        verdict = "" if share is None else ("met" if share <= 0.5 else "**missed**")
        ratio = "—" if share is None else f"{share:.2f}"
        peaks = [" / ".join(_fmt(_get(r, f"{name}.memory.{key}"), "MB") for r in (p, s))
                 for key in ("rss_peak_measured_mb", "rss_peak_mb")]
        lines.append(f"| {name} | {_fmt(pv, 'MB')} | {_fmt(sv, 'MB')} | {ratio} | {' | '.join(peaks)} | {verdict} |")
    pv, sv = _get(p, "rss_setup_peak_mb"), _get(s, "rss_setup_peak_mb")
    if pv is not None or sv is not None:
        lines.append(f"| set-up: start and the pool's registration | | | | | {_fmt(pv, 'MB')} / {_fmt(sv, 'MB')} | |")
    lines += ["", "| Memory per … | Paigham | Synapse |", "|---|---:|---:|"]
    for label, get, unit in PER_UNIT:
        pv, sv = get(p) if p else None, get(s) if s else None
        if pv is not None or sv is not None:
            lines.append(f"| {label} | {_fmt(pv, unit)} | {_fmt(sv, unit)} |")
    return "\n".join(lines)


def conditions(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [f"- Date: {meta['date']}; machine: {meta['cpus']} cores, {meta['mem_gb']:.0f} GB; "
           f"database: **{meta['db']}** for both servers; Synapse {meta.get('synapse_version', '?')}, "
           f"Paigham {meta.get('paigham_commit', '?')}."]
    for name in ("paigham", "synapse"):
        r = results.get(name)
        if r:
            tp = r.get("throughput", {})
            used = (f"load generator used {tp['loadgen_cpu_util'] * 100:.0f} % of a core during the throughput run, "
                    f"the server {tp['server_cpu_util'] * 100:.0f} %; ") if tp else ""
            out.append(f"- {name}: load average {r['loadavg_start']:.1f} at start, {r['loadavg_end']:.1f} at end; "
                       f"{used}rate-limited responses: {r.get('rate_limited', 0)}, errors: {r.get('errors', 0)}, "
                       f"requests resent on a fresh connection: {r.get('reconnects', 0)}.")
            pd = r.get("push", {}).get("delivery")
            if pd:
                out.append(f"- {name}, push: {pd['pushes_received']:,} of the {pd['pushes_expected']:,} pushes owed "
                           f"received, {pd['pushes_duplicate']} twice; the load generator used "
                           f"{pd['loadgen_cpu_util'] * 100:.0f} % of a core during the load"
                           + (f" and the gateway stand-in (a process of its own) "
                              f"{pd['gateway_cpu_util'] * 100:.0f} %" if "gateway_cpu_util" in pd else
                              " (the gateway stand-in inside it)")
                           + f"; the wait for them "
                           f"ended after {pd['wait_after_load_s']:.0f} s ({pd['wait_ended']})"
                           + ("; a push missing then counts with the time until then, so the push percentiles are "
                              "lower bounds" if pd["pushes_missing"] else "") + ".")
    return "\n".join(out)


def plot(samples: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    panels = [("latency_delivery", "Delivery, one sender"), ("throughput_delivery", "Delivery under load"),
              ("throughput_send", "Send request under load"), ("fanout_delivery", "Fan-out delivery (500 members)"),
              ("idle_latency_delivery", "Delivery with 5,000 idle syncs"), ("initial_sync", "Initial sync, 200 rooms")]
    if any("sliding_sync_delivery" in data for data in samples.values()):
        panels += [("sliding_sync_delivery", "Sliding sync: delivery under load"),
                   ("sliding_sync_first_list", "Sliding sync: first room list (20)"),
                   ("sliding_sync_full_list", "Sliding sync: all 200 rooms loaded")]
    if any("many_rooms_incremental" in data for data in samples.values()):
        panels += [("many_rooms_initial", "Many rooms: initial sync (1,000 rooms)"),
                   ("many_rooms_incremental", "Many rooms: incremental, one room changed"),
                   ("many_rooms_full_state", "Many rooms: full_state sync")]
    if any("large_room_delivery" in data for data in samples.values()):
        panels += [("large_room_delivery", "Large room: fan-out delivery"),
                   ("large_room_storm_join", "Large room: joins during the storm"),
                   ("large_room_storm_delivery", "Small room's delivery during the storm")]
    if any("push_notify" in data for data in samples.values()):
        panels += [("push_notify", "Push: message → gateway request under load"),
                   ("push_send", "Push: send request under that load"),
                   ("push_delivery", "Push: delivery to /sync under that load")]
    fig, axes = plt.subplots(len(panels) // 3, 3, figsize=(15, 4.25 * (len(panels) // 3)))
    colours = {"paigham": "#1b7f3b", "synapse": "#8a2be2"}
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        for server, data in samples.items():
            xs = sorted(v * 1000 for v in data.get(key, []))
            if not xs:
                continue
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=f"{server} (n={len(xs)})", color=colours.get(server))
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # only 1, 10, 100 … labelled: minor labels overlap
        ax.set_title(label)
        ax.set_xlabel("milliseconds (log scale)")
        ax.set_ylabel("cumulative share")
        ax.axhline(0.99, color="grey", lw=0.5, ls=":")
        ax.grid(True, which="both", lw=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def update_doc(section: str, body: str) -> None:
    """Replace the generated section `section` of docs/benchmarks.md, keeping the hand-written text."""
    begin, end = f"<!-- bench:{section}:begin -->", f"<!-- bench:{section}:end -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
