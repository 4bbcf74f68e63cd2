"""Send-to-device messaging."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import bearer, client_routes, json_body, ok
from paigham.e2ee.to_device import ToDeviceService
from paigham.errors import Codes, MatrixError
from paigham.services.auth import AuthService


def routes(auth: AuthService, to_device: ToDeviceService) -> list[Route]:
    async def send(request: Request) -> Response:
        """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}"""
        requester = await auth.authenticate(bearer(request))
        body = await json_body(request)
        if "messages" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "messages is required")
        await to_device.send(
            requester, request.path_params["event_type"], request.path_params["txn_id"], body["messages"]
        )
        return ok({})

    return client_routes("/sendToDevice/{event_type}/{txn_id}", send, ["PUT"])
