"""Send-to-device messaging."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, json_body, ok
from paigham.e2ee.to_device import ToDeviceService
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester


def routes(auth: Authenticator, to_device: ToDeviceService) -> list[Route]:
    @authed(auth)
    async def send(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}"""
        body = await json_body(request)
        if "messages" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "messages is required")
        await to_device.send(
            requester, request.path_params["event_type"], request.path_params["txn_id"], body["messages"]
        )
        return ok({})

    return client_routes("/sendToDevice/{event_type}/{txn_id}", send, ["PUT"])
