"""End-to-end encryption keys: upload, query, claim, changes, cross-signing keys and signatures."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, client_routes, json_body, ok
from paigham.domain.tokens import parse_token
from paigham.e2ee.cross_signing import CrossSigningService
from paigham.e2ee.device_lists import DeviceListService
from paigham.e2ee.keys import KeyService
from paigham.errors import Codes, MatrixError
from paigham.services.auth import AuthService
from paigham.storage.database import Database


def routes(
    auth: AuthService, db: Database, keys: KeyService, cross_signing: CrossSigningService, lists: DeviceListService
) -> list[Route]:
    async def upload(request: Request) -> Response:
        """POST /_matrix/client/v3/keys/upload"""
        requester = await auth.authenticate(bearer(request))
        return ok(await keys.upload(requester, await json_body(request)))

    async def query(request: Request) -> Response:
        """POST /_matrix/client/v3/keys/query"""
        requester = await auth.authenticate(bearer(request))
        return ok(await keys.query(requester, await json_body(request)))

    async def claim(request: Request) -> Response:
        """POST /_matrix/client/v3/keys/claim"""
        await auth.authenticate(bearer(request))
        return ok(await keys.claim(await json_body(request)))

    async def changes(request: Request) -> Response:
        """GET /_matrix/client/v3/keys/changes"""
        requester = await auth.authenticate(bearer(request))
        q = request.query_params
        if not q.get("from") or not q.get("to"):
            raise MatrixError(400, Codes.MISSING_PARAM, "from and to are required")
        start, end = parse_token(q["from"], "from"), parse_token(q["to"], "to")
        end = min(end, await db.current_position())
        delta = await lists.delta(requester.user_id, start, end) if start < end else None
        return ok({"changed": sorted(delta.changed) if delta else [], "left": sorted(delta.left) if delta else []})

    async def device_signing(request: Request) -> Response:
        """POST /_matrix/client/v3/keys/device_signing/upload"""
        requester = await auth.authenticate(bearer(request))
        await cross_signing.upload_keys(requester, await json_body(request))
        return ok({})

    async def signatures(request: Request) -> Response:
        """POST /_matrix/client/v3/keys/signatures/upload"""
        requester = await auth.authenticate(bearer(request))
        return ok(await cross_signing.upload_signatures(requester, await json_body(request)))

    return [
        *client_routes("/keys/upload", upload, ["POST"]),
        *client_routes("/keys/query", query, ["POST"]),
        *client_routes("/keys/claim", claim, ["POST"]),
        *client_routes("/keys/changes", changes, ["GET"]),
        *client_routes("/keys/device_signing/upload", device_signing, ["POST"]),
        *client_routes("/keys/signatures/upload", signatures, ["POST"]),
    ]
