"""The grouped route lookup resolves every request exactly as Starlette's linear scan would."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import BaseRoute, Match, Route

from paigham.api.routing import RouteGroups, grouped
from paigham.app import Server
from paigham.config import Config

from .conftest import Harness

SAMPLES = {"room_id": "!abc:test.local", "user_id": "@u:test.local", "event_id": "$ev", "path": "a/b"}


def _routes(tmp_path: Path) -> list[BaseRoute]:
    return Server(Config(data_dir=str(tmp_path), create_admin=False)).routes()  # type: ignore[return-value]


def _sample(route: Route) -> str:
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: SAMPLES.get(m.group(1), "x1"), route.path)


def _resolve(routes: list[BaseRoute], method: str, path: str) -> tuple[str, Any]:
    """(FULL/PARTIAL/NONE, endpoint) as Starlette's Router.app picks it: first full match, else first partial."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        target = child.get("paigham.route", route)
        if match is Match.FULL:
            return "full", target.endpoint
        if match is Match.PARTIAL and partial is None:
            partial = target.endpoint
    return ("partial", partial) if partial is not None else ("none", None)


def test_every_route_resolves_as_the_linear_scan_does(tmp_path: Path) -> None:
    linear = _routes(tmp_path)
    fast = grouped(linear)
    assert len(fast) < len(linear) / 10  # nearly every route is in a group
    checked = 0
    for route in linear:
        assert isinstance(route, Route)
        path = _sample(route)
        for method in [*(route.methods or ()), "PATCH"]:
            assert _resolve(fast, method, path) == _resolve(linear, method, path), (method, path)
            checked += 1
        for other in (path + "/extra", path.rstrip("/") + "x", "/_matrix/client/v3/nope" + path):
            assert _resolve(fast, "GET", other) == _resolve(linear, "GET", other), other
    assert checked > 500


@pytest.mark.parametrize("path", ["/", "/_matrix", "/_matrix/client", "/_matrix/client/v3/", "//x", ""])
def test_short_and_odd_paths(tmp_path: Path, path: str) -> None:
    linear = _routes(tmp_path)
    assert _resolve(grouped(linear), "GET", path) == _resolve(linear, "GET", path)


def test_only_literal_prefixes_are_grouped() -> None:
    async def ep(_: Any) -> None: ...

    assert RouteGroups.accepts(Route("/_matrix/client/v3/rooms/{room_id}/send", ep))
    assert RouteGroups.accepts(Route("/_matrix/client/versions", ep))
    assert not RouteGroups.accepts(Route("/_matrix/client/{version}/sync", ep))
    assert not RouteGroups.accepts(Route("/_matrix/{api}/v3/x", ep))


async def test_wrong_method_unknown_path_and_metrics_label(hs: Harness) -> None:
    a = await hs.register("alice")
    r = await hs.request("PATCH", "/_matrix/client/v3/sync", a)
    assert r.status_code == 405 and r.json()["errcode"] == "M_UNRECOGNIZED"
    r = await hs.request("GET", "/_matrix/client/v3/rooms/!x:test.local/nonsense", a)
    assert r.status_code == 404 and r.json()["errcode"] == "M_UNRECOGNIZED"
    room = await hs.create_room(a)
    await hs.send(a, room, "hello")
    metrics = (await hs.request("GET", "/metrics")).text
    assert 'route="/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}"' in metrics
