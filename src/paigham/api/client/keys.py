"""End-to-end encryption keys: upload, query, claim, changes, cross-signing keys and signatures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, json_body, ok
from paigham.domain.tokens import parse_token
from paigham.e2ee.cross_signing import CrossSigningService
from paigham.e2ee.device_lists import DeviceListService
from paigham.e2ee.keys import KeyService
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester


def routes(
    auth: Authenticator,
    keys: KeyService,
    cross_signing: CrossSigningService,
    lists: DeviceListService,
    current_position: Callable[[], Awaitable[int]],
) -> list[Route]:
    """`current_position` is the stream's head: /keys/changes answers up to it, never beyond."""

    @authed(auth)
    async def upload(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/keys/upload"""
        return ok(await keys.upload(requester, await json_body(request)))

    @authed(auth)
    async def query(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/keys/query"""
        return ok(await keys.query(requester, await json_body(request)))

    @authed(auth)
    async def claim(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/keys/claim"""
        return ok(await keys.claim(await json_body(request)))

    @authed(auth)
    async def changes(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/keys/changes"""
        q = request.query_params
        if not q.get("from") or not q.get("to"):
            raise MatrixError(400, Codes.MISSING_PARAM, "from and to are required")
        start, end = parse_token(q["from"], "from"), parse_token(q["to"], "to")
        end = min(end, await current_position())
        delta = await lists.delta(requester.user_id, start, end) if start < end else None
        return ok({"changed": sorted(delta.changed) if delta else [], "left": sorted(delta.left) if delta else []})

    @authed(auth)
    async def device_signing(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/keys/device_signing/upload"""
        await cross_signing.upload_keys(requester, await json_body(request))
        return ok({})

    @authed(auth)
    async def signatures(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/v3/keys/signatures/upload"""
        return ok(await cross_signing.upload_signatures(requester, await json_body(request)))

    return [
        *client_routes("/keys/upload", upload, ["POST"]),
        *client_routes("/keys/query", query, ["POST"]),
        *client_routes("/keys/claim", claim, ["POST"]),
        *client_routes("/keys/changes", changes, ["GET"]),
        # matrix-js-sdk's uploadDeviceSigningKeys (Element Web's probe for a password-only UIA flow
        # before it sets up cross-signing) still posts to the unstable prefix.
        *client_routes("/keys/device_signing/upload", device_signing, ["POST"], versions=("v3", "r0", "unstable")),
        *client_routes("/keys/signatures/upload", signatures, ["POST"]),
    ]
