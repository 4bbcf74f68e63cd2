"""OpenID (spec: Client-Server API "OpenID" — POST /user/{userId}/openid/request_token; Server-Server
API "OpenID" — GET /_matrix/federation/v1/openid/userinfo; services/openid.py).

The userinfo endpoint is served although Paigham does not federate: it is how a third party the
operator trusts (an integration manager, an external MatrixRTC authorization service) checks a token.
Paigham's own authorization service (api/client/rtc.py) checks tokens in-process."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, json_body, ok, require_self
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.openid import OpenIdService


def routes(auth: Authenticator, openid: OpenIdService) -> list[Route]:
    @authed(auth)
    async def request_token(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/user/{userId}/openid/request_token"""
        require_self(requester, request.path_params["user_id"])
        await json_body(request, allow_empty=True)  # the body is `{}`; anything else is not JSON
        return ok((await openid.issue(requester.user_id)).to_json())

    async def userinfo(request: Request) -> Response:
        """GET /_matrix/federation/v1/openid/userinfo"""
        user_id = await openid.user_of(request.query_params.get("access_token", ""))
        if user_id is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access token unknown or expired")
        return ok({"sub": user_id})

    return [
        *client_routes("/user/{user_id}/openid/request_token", request_token, ["POST"]),
        Route("/_matrix/federation/v1/openid/userinfo", userinfo, methods=["GET"]),
    ]
