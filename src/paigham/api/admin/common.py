"""What every admin endpoint shares: the admin check and the actor for the audit log."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from paigham.api.http import Authenticator, Handler, bearer, client_ip
from paigham.errors import Codes, MatrixError
from paigham.messages import N_
from paigham.requester import Requester
from paigham.services.admin import Actor

# An admin handler: `admin_only` checks the caller is a server admin and hands it the actor too.
AdminHandler = Callable[[Request, Requester, Actor], Awaitable[Response]]


def admin_only(auth: Authenticator) -> Callable[[AdminHandler], Handler]:
    """Declares an admin route: the wrapped handler runs as `handler(request, requester, actor)`
    only for a valid token of a server admin (401 without one, 403 for anyone else), so nothing of
    the request is read before the caller is known to be an admin."""

    def wrap(handler: AdminHandler) -> Handler:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            requester = await auth.authenticate(bearer(request))
            if not requester.is_admin:
                raise MatrixError(403, Codes.FORBIDDEN, N_("You are not a server admin"))
            return await handler(request, requester, Actor(requester.user_id, client_ip(request), requester.device_id))

        return endpoint

    return wrap
