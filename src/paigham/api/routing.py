"""Route lookup by path prefix instead of Starlette's linear scan.

Starlette's router tries every route's regular expression in turn; with ~300 routes that is a
measurable share of each request (bench/results/profile-throughput.txt). Routes whose first four
path segments are literal (`/_matrix/client/v3/rooms/…`, nearly all of them) are grouped by those
segments, so a request only tries the few routes of its own group; any other route is tried in
order after the groups, as before. Within a group the original order holds, and a full match
anywhere still wins over a partial one (a known path with the wrong method: 405).

Each handler `async def (request) -> Response` is called by a `LeanEndpoint` instead of Starlette's
`request_response`, which wraps every request in a second exception handler of its own (three closures
and two coroutine frames, held for the whole wait of a long-poll): an exception goes to the
application's `ExceptionMiddleware`, which has the same handlers, as it did from that wrapper.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

KEY_SEGMENTS = 4
_ROUTE = "paigham.route"


def _key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/", KEY_SEGMENTS + 1)[1 : KEY_SEGMENTS + 1])


def _route_path(scope: Scope) -> str:
    """The path the routes see: without the ASGI root_path prefix, as Starlette's router does."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class RouteGroups(BaseRoute):
    """Routes grouped by the literal first segments of their path; one `BaseRoute` to the router."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.groups: dict[tuple[str, ...], list[Route]] = {}
        for route in routes:
            self.groups.setdefault(_key(route.path), []).append(route)

    @staticmethod
    def accepts(route: BaseRoute) -> bool:
        """Whether the route's first segments are literal (so its key is a dict lookup)."""
        return isinstance(route, Route) and "{" not in "/".join(route.path.split("/")[: KEY_SEGMENTS + 1])

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        partial: tuple[Route, Scope] | None = None
        for route in self.groups.get(_key(_route_path(scope)), ()):
            match, child = route.matches(scope)
            if match is Match.FULL:
                return Match.FULL, {**child, _ROUTE: route}
            if match is Match.PARTIAL and partial is None:
                partial = (route, child)
        if partial is not None:
            return Match.PARTIAL, {**partial[1], _ROUTE: partial[0]}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: Route = scope.pop(_ROUTE)
        scope["route"] = route  # what the router would have set (metrics label by its path)
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for routes in self.groups.values():
            for route in routes:
                try:
                    return route.url_path_for(name, **path_params)
                except NoMatchFound:
                    continue
        raise NoMatchFound(name, path_params)


class LeanEndpoint:
    """An ASGI app calling `endpoint(request)` and sending its response; exceptions go up as they are."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


def lean(routes: Sequence[BaseRoute]) -> None:
    """Every route whose endpoint is a coroutine function answers through a LeanEndpoint."""
    for route in routes:
        if isinstance(route, Route) and inspect.iscoroutinefunction(route.endpoint):
            route.app = LeanEndpoint(route.endpoint)


def grouped(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The same routes for Starlette's router, each answering through a LeanEndpoint where it can: the
    groups first, then the others in order."""
    lean(routes)
    literal = [r for r in routes if RouteGroups.accepts(r)]
    rest = [r for r in routes if not RouteGroups.accepts(r)]
    return [RouteGroups(literal), *rest]  # type: ignore[arg-type]
