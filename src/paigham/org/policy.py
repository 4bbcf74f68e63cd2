"""Policies: the global policy (config, then the admin's overrides) and per-unit overrides, resolved
for each official along their unit's path in the tree. Changes are audited and take effect at once
in this process (other workers see them within CACHE_S seconds)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from paigham.audit.service import AuditService
from paigham.clock import now_ms
from paigham.config import Config
from paigham.domain import policy as rules
from paigham.domain.media import parse_patterns
from paigham.domain.policy import Policy
from paigham.errors import Codes, MatrixError
from paigham.storage.org import OrgStore
from paigham.storage.policies import PolicyStore
from paigham.types import JsonDict

CACHE_S = 5.0
GLOBAL = "global"


def unit_scope(unit_id: str) -> str:
    return f"unit:{unit_id}"


def base_policy(config: Config) -> Policy:
    """The global policy the configuration gives."""
    return Policy(
        require_encryption=config.policy_require_encryption,
        retention_days=config.policy_retention_days,
        media_allowed_types=tuple(parse_patterns(config.media_allowed_content_types)) or ("*/*",),
        media_max_bytes=config.policy_media_max_bytes,
        invite_outside_ministry=config.policy_invite_outside_ministry,
        account_validity_days=config.policy_account_validity_days,
        access_token_lifetime_s=config.access_token_lifetime_s,
        max_devices=config.policy_max_devices,
        calls_allowed=config.policy_calls_allowed,
    )


class PolicyService:
    def __init__(self, config: Config, store: PolicyStore, org: OrgStore, audit: AuditService) -> None:
        self.config = config
        self.store = store
        self.org = org
        self.audit = audit
        try:
            self.config_units = {u: rules.parse_overrides(o) for u, o in config.policy_units.items()}
            base_policy(config)
        except rules.InvalidPolicy as exc:
            raise ValueError(f"policy_units: {exc}") from None
        self._loaded = 0.0
        self._db: dict[str, dict[str, Any]] = {}
        self._parents: dict[str, str | None] = {}
        self._user_units: dict[str, tuple[float, str | None]] = {}
        self._reloading = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded = 0.0
        self._user_units.clear()

    async def on_org_change(self, *_: Any) -> None:
        """OrgService hook: units and officials changed."""
        self.invalidate()

    async def _refresh(self) -> None:
        if time.monotonic() - self._loaded < CACHE_S:
            return
        async with self._reloading:  # the requests that find it stale together wait for one reload
            if time.monotonic() - self._loaded < CACHE_S:
                return
            self._db = await self.store.all()
            self._parents = {uid: r.unit.parent_id for uid, r in (await self.org.units()).items()}
            self._loaded = time.monotonic()

    def _path(self, unit_id: str | None) -> list[str]:
        """Units from the top of the tree down to unit_id."""
        path: list[str] = []
        node = unit_id
        while node is not None and node in self._parents and node not in path:
            path.append(node)
            node = self._parents[node]
        return path[::-1]

    async def unit_of(self, user_id: str) -> str | None:
        hit = self._user_units.get(user_id)
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        unit = await self.org.active_unit_of(user_id)
        if len(self._user_units) > 100_000:
            self._user_units.clear()
        self._user_units[user_id] = (time.monotonic(), unit)
        return unit

    async def ministry_of(self, user_id: str) -> str | None:
        await self._refresh()
        path = self._path(await self.unit_of(user_id))
        return path[0] if path else None

    async def global_policy(self) -> Policy:
        await self._refresh()
        return rules.apply(base_policy(self.config), [self._db.get(GLOBAL, {})])

    async def for_unit(self, unit_id: str | None) -> Policy:
        await self._refresh()
        layers: list[dict[str, Any]] = [self._db.get(GLOBAL, {})]
        for u in self._path(unit_id):
            layers += [self.config_units.get(u, {}), self._db.get(unit_scope(u), {})]
        return rules.apply(base_policy(self.config), layers)

    async def for_user(self, user_id: str) -> Policy:
        return await self.for_unit(await self.unit_of(user_id))

    async def calls_allowed(self, user_id: str) -> bool:
        """Whether the user's policy allows voice and video calls (LiveKit tokens, TURN credentials,
        call events). Accounts that are not officials follow the global policy."""
        return (await self.for_user(user_id)).calls_allowed

    async def overrides(self) -> dict[str, dict[str, Any]]:
        await self._refresh()
        return dict(self._db)

    async def set(self, scope: str, data: Any, actor: str | None) -> dict[str, Any]:
        """Replace the overrides of a scope (global or a unit); {} removes them."""
        if scope != GLOBAL and await self.org.unit(scope.split(":", 1)[1]) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unit not found")
        try:
            overrides = rules.parse_overrides(data)
        except rules.InvalidPolicy as exc:
            raise MatrixError(400, Codes.INVALID_PARAM, str(exc)) from None
        if overrides:
            await self.store.put(scope, rules.overrides_json(overrides), actor, now_ms())
        else:
            await self.store.delete(scope)
        self.invalidate()
        await self.audit.record("policy.changed", actor, scope, details=rules.overrides_json(overrides))
        return overrides

    # -- the admin API's views --------------------------------------------------------------------
    async def describe(self) -> JsonDict:
        """The global policy, the overrides stored for it and for each unit, and the configured ones."""
        overrides = await self.overrides()
        return {
            "global": (await self.global_policy()).to_json(),
            "global_overrides": overrides.get(GLOBAL, {}),
            "config_units": {u: _lists(o) for u, o in self.config_units.items()},
            "units": {k.split(":", 1)[1]: v for k, v in overrides.items() if k.startswith("unit:")},
        }

    async def set_global(self, data: Any, actor: str | None) -> JsonDict:
        """Replace the global overrides; returns the global policy that results."""
        await self.set(GLOBAL, data, actor)
        return (await self.global_policy()).to_json()

    async def unit_view(self, unit_id: str) -> JsonDict:
        """A unit's stored overrides and the policy in effect for its officials."""
        if await self.org.unit(unit_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unit not found")
        overrides = (await self.overrides()).get(unit_scope(unit_id), {})
        return {"overrides": overrides, "effective": (await self.for_unit(unit_id)).to_json()}

    async def set_unit(self, unit_id: str, data: Any, actor: str | None) -> JsonDict:
        """Replace a unit's overrides ({} removes them); returns them with the policy now in effect."""
        overrides = await self.set(unit_scope(unit_id), data, actor)
        return {"overrides": _lists(overrides), "effective": (await self.for_unit(unit_id)).to_json()}


def _lists(overrides: JsonDict) -> JsonDict:
    """Overrides as JSON: tuples (lists of media types) become lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
