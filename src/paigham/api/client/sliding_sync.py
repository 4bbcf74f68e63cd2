"""POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync: Simplified Sliding Sync
(MSC4186), the only sync Element X speaks. `pos` and `timeout` come in the query string."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, ok, query_int, typed_body
from paigham.config import Config
from paigham.requester import Requester
from paigham.sync.sliding import SlidingSyncService
from paigham.sync.sliding_model import SlidingRequest

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


def routes(config: Config, auth: Authenticator, sliding: SlidingSyncService) -> list[Route]:
    @authed(auth)
    async def sliding_sync(request: Request, requester: Requester) -> Response:
        """POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync"""
        body = await typed_body(request, SlidingRequest, allow_empty=True)
        timeout = query_int(request, "timeout", 0, 0, config.sync_timeout_max_ms)
        pos = request.query_params.get("pos") or None
        return ok(await sliding.sync(requester, body, pos, timeout))

    return [Route(PATH, sliding_sync, methods=["POST"])]
