"""VoIP (spec "Voice over IP": GET /voip/turnServer; services/voip.py)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, ok
from paigham.requester import Requester
from paigham.services.voip import TurnService


def routes(auth: Authenticator, turn: TurnService) -> list[Route]:
    @authed(auth)
    async def turn_server(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/voip/turnServer — {} when no TURN server is configured, as Synapse;
        403 when the user's unit may not place calls."""
        credentials = await turn.credentials(requester)
        return ok(msgspec.to_builtins(credentials) if credentials is not None else {})

    return [*client_routes("/voip/turnServer", turn_server, ["GET"])]
