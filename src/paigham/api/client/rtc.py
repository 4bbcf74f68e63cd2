"""MatrixRTC: transport discovery (MSC4143: GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports,
which matrix-js-sdk's `_unstable_getRTCTransports` calls and Element Call tries first) and the built-in
authorization service (MSC4195, the endpoints of element-hq/lk-jwt-service: POST /get_token and the
legacy POST /sfu/get) under /_paigham/livekit (services/rtc.py).

The authorization service is called from a browser or webview (Element Call) without an access token:
the OpenID token in the body is the credential. CORS for it (any origin, POST, Content-Type) is the
server-wide CORS middleware's (app.py), which answers the preflight as lk-jwt-service does."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_ip, ok, typed_body
from paigham.config import Config
from paigham.requester import Requester
from paigham.services.rtc import SERVICE_PATH, LegacyTokenRequest, RtcService, TokenRequest, transports

TRANSPORTS_PATH = "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports"


def routes(config: Config, auth: Authenticator, rtc: RtcService) -> list[Route]:
    offered = transports(config)

    @authed(auth)
    async def rtc_transports(request: Request, _: Requester) -> Response:
        """GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports"""
        rtc.require_configured()
        return ok({"rtc_transports": offered})

    async def get_token(request: Request) -> Response:
        """POST /_paigham/livekit/get_token (MSC4195; lk-jwt-service's /get_token)"""
        rtc.require_configured()  # before the body: unconfigured is 404 whatever was sent
        return ok(await rtc.token(await typed_body(request, TokenRequest), client_ip(request)))

    async def sfu_get(request: Request) -> Response:
        """POST /_paigham/livekit/sfu/get (lk-jwt-service's legacy /sfu/get)"""
        rtc.require_configured()
        return ok(await rtc.legacy_token(await typed_body(request, LegacyTokenRequest), client_ip(request)))

    async def healthz(_: Request) -> Response:
        """GET /_paigham/livekit/healthz (as lk-jwt-service has it)"""
        rtc.require_configured()
        return ok({})

    return [
        Route(TRANSPORTS_PATH, rtc_transports, methods=["GET"]),
        Route(f"{SERVICE_PATH}/get_token", get_token, methods=["POST"]),
        Route(f"{SERVICE_PATH}/sfu/get", sfu_get, methods=["POST"]),
        Route(f"{SERVICE_PATH}/healthz", healthz, methods=["GET"]),
    ]
