"""What every admin endpoint shares: the admin check and the actor for the audit log."""

from __future__ import annotations

from starlette.requests import Request

from paigham.api.http import Requester, bearer, client_ip
from paigham.errors import Codes, MatrixError
from paigham.i18n import N_
from paigham.services.admin import Actor
from paigham.services.auth import AuthService


async def require_admin(auth: AuthService, request: Request) -> tuple[Requester, Actor]:
    requester = await auth.authenticate(bearer(request))
    if not requester.is_admin:
        raise MatrixError(403, Codes.FORBIDDEN, N_("You are not a server admin"))
    return requester, Actor(requester.user_id, client_ip(request), requester.device_id)
