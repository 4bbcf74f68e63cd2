"""Push rules (spec "Push Rules: API"): read the effective ruleset, add, delete, enable, set actions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paigham.api.http import Authenticator, authed, client_routes, json_body, ok
from paigham.domain.push_rules import KINDS
from paigham.errors import Codes, MatrixError
from paigham.requester import Requester
from paigham.services.push import PushService

RULE = "/pushrules/global/{kind}/{rule_id}"


def routes(auth: Authenticator, push: PushService) -> list[Route]:
    @authed(auth)
    async def get_all(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/pushrules/"""
        return ok(await push.ruleset(requester.user_id))

    @authed(auth)
    async def get_global(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/pushrules/global/"""
        return ok((await push.ruleset(requester.user_id))["global"])

    @authed(auth)
    async def get_kind(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/pushrules/global/{kind}/"""
        kind = _kind(request)
        return ok((await push.ruleset(requester.user_id))["global"][kind])

    @authed(auth)
    async def get_rule(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
        return ok(await push.rule(requester.user_id, _kind(request), request.path_params["rule_id"]))

    @authed(auth)
    async def put_rule(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
        body = await json_body(request)
        q = request.query_params
        kind, rule_id = _kind(request), request.path_params["rule_id"]
        await push.put_rule(requester.user_id, kind, rule_id, body, before=q.get("before"), after=q.get("after"))
        return ok()

    @authed(auth)
    async def delete_rule(request: Request, requester: Requester) -> Response:
        """DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
        await push.delete_rule(requester.user_id, _kind(request), request.path_params["rule_id"])
        return ok()

    @authed(auth)
    async def get_enabled(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
        rule = await push.rule(requester.user_id, _kind(request), request.path_params["rule_id"])
        return ok({"enabled": rule["enabled"]})

    @authed(auth)
    async def put_enabled(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
        body = await json_body(request)
        kind, rule_id = _kind(request), request.path_params["rule_id"]
        if not isinstance(body.get("enabled"), bool):
            raise MatrixError(400, Codes.BAD_JSON, "enabled must be a boolean")
        await push.set_enabled(requester.user_id, kind, rule_id, body["enabled"])
        return ok()

    @authed(auth)
    async def get_actions(request: Request, requester: Requester) -> Response:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
        rule = await push.rule(requester.user_id, _kind(request), request.path_params["rule_id"])
        return ok({"actions": rule["actions"]})

    @authed(auth)
    async def put_actions(request: Request, requester: Requester) -> Response:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
        body = await json_body(request)
        kind, rule_id = _kind(request), request.path_params["rule_id"]
        if not isinstance(body.get("actions"), list):
            raise MatrixError(400, Codes.BAD_JSON, "actions must be a list")
        await push.set_actions(requester.user_id, kind, rule_id, body["actions"])
        return ok()

    return [
        *client_routes("/pushrules/", get_all, ["GET"]),
        *client_routes("/pushrules/global/", get_global, ["GET"]),
        *client_routes("/pushrules/global/{kind}/", get_kind, ["GET"]),
        *client_routes(RULE, get_rule, ["GET"]),
        *client_routes(RULE, put_rule, ["PUT"]),
        *client_routes(RULE, delete_rule, ["DELETE"]),
        *client_routes(RULE + "/enabled", get_enabled, ["GET"]),
        *client_routes(RULE + "/enabled", put_enabled, ["PUT"]),
        *client_routes(RULE + "/actions", get_actions, ["GET"]),
        *client_routes(RULE + "/actions", put_actions, ["PUT"]),
    ]


def _kind(request: Request) -> str:
    """The {kind} path segment: one of the five rule kinds, else 400."""
    kind = str(request.path_params["kind"])
    if kind not in KINDS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown push rule kind {kind!r}"[:200])
    return kind
