"""Settings: defaults < YAML file < PAIGHAM_* environment < command-line options."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml


class Config(msgspec.Struct, kw_only=True, frozen=True):
    server_name: str = "localhost"
    data_dir: str = "./data"
    host: str = "127.0.0.1"
    port: int = 8008
    # Empty means SQLite in the data dir.
    database_url: str = ""
    public_baseurl: str = ""
    registration_shared_secret: str = ""
    # Open registration without a token (off: a closed user group).
    enable_registration: bool = False
    default_room_version: str = "11"
    presence_enabled: bool = True
    # Private rooms and DMs are created encrypted unless the client asked otherwise.
    encryption_by_default: bool = True
    # Once a room is encrypted, refuse removing, changing or redacting its m.room.encryption (403).
    lock_room_encryption: bool = True
    access_token_lifetime_s: int = 0  # 0: tokens never expire (refresh tokens still issued when asked)
    refresh_token_lifetime_s: int = 30 * 24 * 3600
    max_request_body_bytes: int = 1024 * 1024
    sync_timeout_max_ms: int = 60_000
    # A big room's membership news (a join storm) reaches each device at most once per this time (0: at
    # once); a room is big where one update finds this many of a worker's long-polls following it (sync/notifier.py).
    sync_member_news_hold_ms: int = 2_000
    sync_big_room_watchers: int = 50
    log_level: str = "info"
    # Cluster: a NATS URL turns on cross-process fan-out.
    nats_url: str = ""
    workers: int = 1
    create_admin: bool = True
    # Media (content repository); see README "Media".
    media_store_path: str = ""  # empty: <data_dir>/media
    media_key_file: str = ""  # empty: <data_dir>/media.key
    media_max_upload_bytes: int = 100 * 1024 * 1024
    media_allowed_content_types: str = "*/*"  # comma-separated: image/png, image/*, */*
    media_user_quota_bytes: int = 10 * 1024**3  # 0: no quota
    media_max_pending_uploads: int = 10
    media_pending_expiry_s: int = 24 * 3600
    media_legacy_unauthenticated: bool = False
    # Government layer (README "Administering Paigham").
    audit_retention_days: int = 180  # audit records older than this are purged; 0 keeps them for ever
    # How officials' display names are built: {name} {designation} {unit} {unit_id} {employee_id}, or {name_hi}…
    org_displayname_format: str = "{name} ({designation}, {unit})"
    org_default_language: str = "en"  # the language of names in display names and of server text
    org_lock_displayname: bool = True  # officials may not change the display name the format gives them
    # /user_directory/search: "organisation" finds every active official; "shared_rooms" only those sharing a room.
    user_directory_scope: str = "organisation"
    # Sign-in protection (0 turns a limit off): throttle after N failures in a row, lock out after M in the window.
    login_throttle_after: int = 3
    login_backoff_ms: int = 1000  # the first wait; it doubles with each further failure, up to a minute
    login_lockout_after: int = 10
    login_lockout_window_s: int = 900
    login_lockout_s: int = 900
    login_ip_throttle_after: int = 20
    login_ip_lockout_after: int = 100
    login_ip_exempt: str = "127.0.0.1,::1"  # addresses never limited (a reverse proxy that sends no X-Forwarded-For)
    # Password hashing (Argon2id, RFC 9106's second profile): new hashes use these costs; stored hashes keep theirs.
    # Lower them only for throw-away set-ups (the benchmark's, like Synapse's bcrypt_rounds there).
    password_argon2_time_cost: int = 3
    password_argon2_memory_kib: int = 65536
    # Global policy (README "Policies"); the admin API can override it globally and per unit.
    policy_require_encryption: bool = True  # private rooms and DMs must be end-to-end encrypted
    policy_retention_days: int = 0  # events older than this are purged from the server; 0 keeps them
    policy_media_max_bytes: int = 0  # per-user upload limit below media_max_upload_bytes; 0: none
    policy_invite_outside_ministry: bool = True
    policy_account_validity_days: int = 0  # accounts must be renewed this often; 0: no expiry
    policy_max_devices: int = 0  # 0: no limit
    # Per-unit overrides: {unit_id: {setting: value}} (YAML only); units inherit from their parents.
    policy_units: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    # Spaces per unit (README "Spaces per unit"): the server's own account creates them and joins officials.
    org_spaces: bool = True
    org_system_localpart: str = "paigham"
    org_encrypt_unit_rooms: bool = False  # encrypted announcement rooms cannot carry server announcements
    media_thumbnail_max_source_bytes: int = 20 * 1024 * 1024
    media_thumbnail_max_pixels: int = 32_000_000
    media_thumbnail_memory_mb: int = 512
    media_thumbnail_timeout_s: float = 10.0
    media_thumbnail_workers: int = 2
    media_clamd_socket: str = ""
    media_clamd_host: str = ""
    media_clamd_port: int = 3310
    media_clamd_timeout_s: float = 60.0
    # Connections (paigham/connection_guard.py): deadlines for a request's headers and for a stalled
    # body, and caps on open connections in total and per client address (0: no cap).
    http_header_timeout_s: float = 30.0
    http_body_idle_timeout_s: float = 60.0
    http_max_connections: int = 10_000
    http_max_connections_per_ip: int = 200
    http_connection_exempt: str = "127.0.0.1,::1"  # a reverse proxy on this host: only the total applies
    # Push notifications (README "Push notifications"): sovereign by default.
    push_enabled: bool = True
    # Gateway URL prefixes pushers may use (https://ntfy.ministry.example/_matrix/push/v1/notify); empty:
    # no pusher can be registered. http:// only for an allowlisted prefix.
    push_gateway_allowlist: list[str] = msgspec.field(default_factory=list)
    # Outbound requests to loopback/private/link-local addresses are refused unless in these CIDR ranges
    # (Synapse's name), e.g. ["10.20.0.0/16"] for a gateway on the ministry's network.
    ip_range_whitelist: list[str] = msgspec.field(default_factory=list)
    push_include_content: bool = False  # full-format pushes carry the event content only if on
    push_force_event_id_only: bool = True  # every push is event_id_only, whatever the pusher asked
    push_request_timeout_s: float = 10.0
    # Slow links (README "Slow links"): JSON answers of at least this many bytes are compressed (zstd,
    # brotli or gzip, as the client accepts); 0 switches compression off.
    compress_min_bytes: int = 1024
    push_max_pushers_per_user: int = 50
    # TURN for calls (README "Calls"), with Synapse's setting names. The URIs handed to clients
    # (turn:turn.ministry.example?transport=udp, turns:turn.ministry.example:5349?transport=tcp); none: GET
    # /voip/turnServer answers {}. A shared secret (coturn's static-auth-secret, or a file holding it) gives
    # each user credentials that expire; otherwise a static username and password is handed to everyone.
    turn_uris: list[str] = msgspec.field(default_factory=list)
    turn_shared_secret: str = ""
    turn_shared_secret_path: str = ""
    turn_username: str = ""
    turn_password: str = ""
    turn_user_lifetime: int | str = "1h"  # milliseconds, or with a unit: 90s, 30m, 1h, 1d, 1w
    turn_allow_guests: bool = True  # accepted for Synapse configs; Paigham has no guest accounts

    # Calls (README "Calls"): MatrixRTC through a LiveKit SFU, with the authorization service built in
    # (/_paigham/livekit). Empty livekit_url: no SFU is advertised and the service answers 404.
    livekit_url: str = ""  # the SFU as clients reach it: wss://sfu.ministry.example
    livekit_api_key: str = ""
    livekit_api_secret: str = ""
    livekit_api_secret_file: str = ""  # a file holding the secret (wins over livekit_api_secret)
    livekit_token_lifetime_s: int = 600  # a LiveKit JWT only has to last until the client connects
    openid_token_lifetime_s: int = 3600
    policy_calls_allowed: bool = True  # per unit in policy_units / the admin API: calls_allowed

    # Delayed events (MSC4140, README "Calls"): a call client schedules its own "left the call" state
    # event and keeps postponing it; a crashed client's membership then ends by itself. On by default
    # (Element Call needs it); a delay above the maximum is refused with M_MAX_DELAY_EXCEEDED.
    delayed_events_enabled: bool = True
    max_event_delay_ms: int = 86_400_000  # 24 h, as Element's deployment charts set Synapse
    delayed_events_max_per_user: int = 100  # scheduled at once
    delayed_events_keep_finalised_hours: int = 168  # sent/cancelled/failed ones stay listable 7 days

    def __post_init__(self) -> None:
        duration_ms(self.turn_user_lifetime)  # a bad value stops the start, not the first call
        if self.turn_shared_secret and self.turn_shared_secret_path:
            raise ValueError("set turn_shared_secret or turn_shared_secret_path, not both")
        if self.max_event_delay_ms < 1:
            raise ValueError("max_event_delay_ms must be at least 1 (turn delayed events off instead)")
        if self.delayed_events_max_per_user < 1:
            raise ValueError("delayed_events_max_per_user must be at least 1 (turn delayed events off instead)")
        if self.password_argon2_time_cost < 1 or self.password_argon2_memory_kib < 32:
            raise ValueError("password_argon2_time_cost must be at least 1 and password_argon2_memory_kib at least 32")
        if self.delayed_events_keep_finalised_hours < 0:
            raise ValueError("delayed_events_keep_finalised_hours must not be negative")
        if not 0 <= self.sync_member_news_hold_ms <= 60_000 or self.sync_big_room_watchers < 1:
            raise ValueError("sync_member_news_hold_ms must be 0 to 60000 and sync_big_room_watchers at least 1")

    @property
    def turn_user_lifetime_ms(self) -> int:
        return duration_ms(self.turn_user_lifetime)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_path / 'paigham.db').resolve()}"

    @property
    def base_url(self) -> str:
        return self.public_baseurl or f"http://{self.host}:{self.port}"


_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION_UNITS_MS["y"] = 365 * _DURATION_UNITS_MS["d"]


def duration_ms(value: int | str) -> int:
    """A duration setting as Synapse reads it: a bare number is milliseconds; or 500ms, 90s, 30m, 1h, 7d, 2w, 1y."""
    if isinstance(value, int):
        number, unit = value, "ms"
    else:
        m = re.fullmatch(r"\s*(\d{1,15})\s*(ms|[smhdwy]?)\s*", value)
        if not m:
            raise ValueError(f"{value!r} is not a duration (a number of milliseconds, or with a unit: 90s, 1h, 7d)")
        number, unit = int(m.group(1)), m.group(2) or "ms"
    if number < 0:
        raise ValueError(f"{value!r}: a duration cannot be negative")
    return number * _DURATION_UNITS_MS[unit]


_FIELDS = {f.name: f for f in msgspec.structs.fields(Config)}
_LIST_FIELDS = {n for n, f in _FIELDS.items() if getattr(f.type, "__origin__", None) is list}


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FIELDS:
        raw = environ.get("PAIGHAM_" + name.upper())
        if raw is not None:
            # A list setting (push_gateway_allowlist, ip_range_whitelist, turn_uris) is comma-separated there.
            out[name] = [p.strip() for p in raw.split(",") if p.strip()] if name in _LIST_FIELDS else raw
    return out


def load_config(
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Merge the layers and validate types (strings from the environment are converted)."""
    merged: dict[str, Any] = {}
    path = config_file or (environ or os.environ).get("PAIGHAM_CONFIG")
    if path:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the config file must be a mapping")
        unknown = set(loaded) - set(_FIELDS)
        if unknown:
            raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
        merged.update(loaded)
    merged.update(_from_env(dict(environ if environ is not None else os.environ)))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return msgspec.convert(merged, Config, strict=False)
