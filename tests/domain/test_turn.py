"""TURN credentials (domain/turn.py) and the lifetime setting (config.duration_ms)."""

from __future__ import annotations

import msgspec
import pytest

from paigham.config import Config, duration_ms, load_config
from paigham.domain.turn import TurnCredentials, rest_api_password, turn_credentials

URIS = ["turn:turn.gov.example?transport=udp", "turns:turn.gov.example:5349?transport=tcp"]
NOW_MS = 1_700_000_000_123


def test_shared_secret_scheme_matches_an_independent_hmac() -> None:
    # printf '1700003600:@alice:gov.example' | openssl dgst -sha1 -hmac n0t-a-real-secret -binary | base64
    assert rest_api_password("n0t-a-real-secret", "1700003600:@alice:gov.example") == "58LbDyhdsSKQDers4CYwBP+5xEY="
    creds = turn_credentials(
        user_id="@alice:gov.example", now_ms=NOW_MS, uris=URIS, lifetime_ms=3_600_000, shared_secret="n0t-a-real-secret"
    )
    assert creds == TurnCredentials("1700003600:@alice:gov.example", "58LbDyhdsSKQDers4CYwBP+5xEY=", URIS, 3600)


def test_the_shared_secret_wins_over_a_static_user() -> None:
    creds = turn_credentials(
        user_id="@a:x", now_ms=0, uris=URIS, lifetime_ms=60_000, shared_secret="s", username="u", password="p"
    )
    assert creds is not None and creds.username == "60:@a:x"


def test_static_username_and_password() -> None:
    static = {"username": "u", "password": "p"}
    creds = turn_credentials(user_id="@a:x", now_ms=NOW_MS, uris=URIS, lifetime_ms=86_400_000, **static)
    assert creds == TurnCredentials("u", "p", URIS, 86_400)


@pytest.mark.parametrize(
    "settings",
    [
        {"uris": [], "shared_secret": "s"},  # nothing to connect to
        {"uris": URIS},  # no way to authenticate
        {"uris": URIS, "username": "u"},  # half a static user
        {"uris": URIS, "password": "p"},
        {"uris": URIS, "shared_secret": "s", "lifetime_ms": 0},
    ],
)
def test_not_configured_is_none(settings: dict[str, object]) -> None:
    args: dict[str, object] = {"user_id": "@a:x", "now_ms": NOW_MS, "lifetime_ms": 3_600_000, **settings}
    assert turn_credentials(**args) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        *[(86_400_000, 86_400_000), ("86400000", 86_400_000), ("500ms", 500), ("90s", 90_000), ("30m", 1_800_000)],
        *[("1h", 3_600_000), ("1d", 86_400_000), ("2w", 1_209_600_000), ("1y", 31_536_000_000), (" 1h ", 3_600_000)],
    ],
)
def test_durations_as_synapse_reads_them(value: int | str, ms: int) -> None:
    assert duration_ms(value) == ms


@pytest.mark.parametrize("value", ["", "1 fortnight", "1.5h", "-1h", "h", -5, "1hs"])
def test_bad_durations_stop_the_start(value: int | str) -> None:
    with pytest.raises(ValueError):
        duration_ms(value)
    with pytest.raises((ValueError, msgspec.ValidationError)):
        load_config(overrides={"turn_user_lifetime": value}, environ={})


def test_turn_settings_from_the_environment() -> None:
    env = {"PAIGHAM_TURN_URIS": ",".join(URIS), "PAIGHAM_TURN_USER_LIFETIME": "2h"}
    env["PAIGHAM_TURN_ALLOW_GUESTS"] = "false"
    config = load_config(environ=env)
    assert config.turn_uris == URIS and config.turn_user_lifetime_ms == 7_200_000 and not config.turn_allow_guests
    assert Config().turn_user_lifetime_ms == 3_600_000  # Synapse's default: one hour
