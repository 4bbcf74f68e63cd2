"""Discovery: supported versions, the client .well-known, capabilities, and the honest fixed answers
for what this server does not offer (third-party protocols, TURN)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, ok
from paigham.config import Config
from paigham.domain.room_versions import KNOWN_ROOM_VERSIONS
from paigham.requester import Requester

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


def routes(config: Config, auth: Authenticator) -> list[Route]:
    async def versions(_: Request) -> Response:
        """GET /_matrix/client/versions"""
        return ok({"versions": SUPPORTED_VERSIONS, "unstable_features": {"org.matrix.simplified_msc3575": True}})

    async def well_known(_: Request) -> Response:
        """GET /.well-known/matrix/client"""
        return ok({"m.homeserver": {"base_url": config.base_url}})

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
                    "m.profile_fields": {"enabled": True},
                    "m.account_moderation": {"suspend": requester.is_admin, "lock": requester.is_admin},
                }
            }
        )

    @authed(auth)
    async def thirdparty_protocols(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/v3/thirdparty/protocols — no bridges are configured."""
        return ok({})

    @authed(auth)
    async def turn_server(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/v3/voip/turnServer — no TURN server is configured."""
        return ok({})

    return [
        Route("/_matrix/client/versions", versions, methods=["GET"]),
        Route("/.well-known/matrix/client", well_known, methods=["GET"]),
        *client_routes("/capabilities", capabilities, ["GET"]),
        *client_routes("/thirdparty/protocols", thirdparty_protocols, ["GET"]),
        *client_routes("/voip/turnServer", turn_server, ["GET"]),
    ]
