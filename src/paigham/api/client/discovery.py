"""Discovery: supported versions, the client .well-known, capabilities, and the honest fixed answers
for what this server does not offer (third-party protocols)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, ok
from paigham.config import Config
from paigham.domain.room_versions import KNOWN_ROOM_VERSIONS
from paigham.requester import Requester
from paigham.services.profile import FIELDS as PROFILE_FIELDS
from paigham.services.rtc import transports

SUPPORTED_VERSIONS = [
    "r0.5.0",
    "r0.6.0",
    "r0.6.1",
    "v1.1",
    "v1.2",
    "v1.3",
    "v1.4",
    "v1.5",
    "v1.6",
    "v1.7",
    "v1.8",
    "v1.9",
    "v1.10",
    "v1.11",
    "v1.12",
    "v1.13",
    "v1.14",
    "v1.15",
    "v1.16",
]

# `unstable_features` of /versions: each flag names code that implements it (a client acts on a flag,
# so a flag without that code breaks it). Checked against matrix-js-sdk, Element Web and matrix-rust-sdk.
UNSTABLE_FEATURES: dict[str, str] = {
    # Element Web sets up cross-signing at first sign-in, and shows verification, only with this flag.
    "org.matrix.e2e_cross_signing": "e2ee/cross_signing.py: /keys/device_signing/upload, /keys/signatures/upload",
    "org.matrix.msc2285.stable": "api/client/ephemeral.py: m.read.private receipts, shown to their owner only",
    "org.matrix.msc3440.stable": "services/serializer.py: m.thread bundled aggregations (threads)",
    "org.matrix.msc3715.stable": "api/client/relations.py: dir=f|b on /v1/rooms/{roomId}/relations",
    "org.matrix.msc3827.stable": "services/room_directory.py: room_type in publicRooms and the room_types filter",
    "org.matrix.msc3856.stable": "api/client/relations.py: GET /v1/rooms/{roomId}/threads",
    "org.matrix.msc3916.stable": "api/client/media.py: authenticated media under /_matrix/client/v1/media",
    "org.matrix.msc3952_intentional_mentions": "domain/push_rules.py: .m.rule.is_user_mention / is_room_mention",
    # Element Call and matrix-js-sdk's MatrixRTC schedule the "left the call" membership with it.
    "org.matrix.msc4140": "services/delayed_events.py: ?org.matrix.msc4140.delay, /unstable/…/delayed_events",
    # Element X logs in only where this is advertised, then speaks nothing but sliding sync.
    "org.matrix.simplified_msc3575": "sync/sliding.py: POST /unstable/org.matrix.simplified_msc3575/sync",
    "uk.half-shot.msc2666.query_mutual_rooms": "services/room_info.py: /unstable/…/msc2666/user/mutual_rooms",
}

# With `encryption_by_default`, services/rooms.py gives every room created with these presets
# m.room.encryption; Element then shows encryption as required instead of offering to switch it off.
FORCED_ENCRYPTION_PRESETS = ("private", "trusted_private")


def unstable_features(config: Config) -> dict[str, bool]:
    features = dict.fromkeys(UNSTABLE_FEATURES, True)
    if not config.delayed_events_enabled:
        del features["org.matrix.msc4140"]
    if config.encryption_by_default:
        features |= {f"io.element.e2ee_forced.{preset}": True for preset in FORCED_ENCRYPTION_PRESETS}
    return features


def routes(config: Config, auth: Authenticator) -> list[Route]:
    features = unstable_features(config)
    client_well_known: dict[str, object] = {"m.homeserver": {"base_url": config.base_url}}
    if foci := transports(config):
        # MSC4143: where MatrixRTC clients (Element Call) find the SFU's authorization service.
        client_well_known["org.matrix.msc4143.rtc_foci"] = foci

    async def versions(_: Request) -> Response:
        """GET /_matrix/client/versions"""
        return ok({"versions": SUPPORTED_VERSIONS, "unstable_features": features})

    async def well_known(_: Request) -> Response:
        """GET /.well-known/matrix/client"""
        return ok(client_well_known)

    @authed(auth)
    async def capabilities(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/capabilities"""
        return ok(
            {
                "capabilities": {
                    "m.change_password": {"enabled": True},
                    "m.room_versions": {
                        "default": config.default_room_version,
                        "available": {v: "stable" for v in KNOWN_ROOM_VERSIONS},
                    },
                    "m.set_displayname": {"enabled": True},
                    "m.set_avatar_url": {"enabled": True},
                    "m.3pid_changes": {"enabled": False},
                    "m.get_login_token": {"enabled": False},
                    # services/profile.py stores these fields only (the directory's are read-only)
                    "m.profile_fields": {"enabled": True, "allowed": sorted(PROFILE_FIELDS)},
                    "m.account_moderation": {"suspend": requester.is_admin, "lock": requester.is_admin},
                }
            }
        )

    @authed(auth)
    async def thirdparty_protocols(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/v3/thirdparty/protocols — no bridges are configured."""
        return ok({})

    return [
        Route("/_matrix/client/versions", versions, methods=["GET"]),
        Route("/.well-known/matrix/client", well_known, methods=["GET"]),
        *client_routes("/capabilities", capabilities, ["GET"]),
        *client_routes("/thirdparty/protocols", thirdparty_protocols, ["GET"]),
    ]
