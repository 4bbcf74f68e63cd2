"""Push rules (each user's ruleset and its changes) and push actions for unread counts.

Each user's customisations are one JSON document; the effective ruleset is the server defaults
merged with it. When an event is persisted, the recipients' rules are evaluated and notifying events
are recorded, so /sync can count unread notifications and highlights: the members with rules of their
own one by one, everyone with the defaults once (see `push_actions`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.bus.base import StreamUpdate
from paigham.domain import push_rules as pr
from paigham.domain.power_levels import notification_level, user_level
from paigham.domain.push_evaluator import (
    CompiledRule,
    PushContext,
    actions_notify,
    compile_ruleset,
    evaluate,
    event_text,
    recipient_group,
    rules_event,
    rules_template,
)
from paigham.domain.push_rules import mentioned_users
from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.services.publisher import Publisher
from paigham.services.stages import NO_ROWS, EffectRows, RoomCtx
from paigham.storage.events import EventStore
from paigham.storage.push_actions import PushRoomRow, PushUserRow
from paigham.storage.push_rules import PushRuleStore
from paigham.types import JsonDict, JsonList

# Users whose compiled rules are kept: ~14 KB each (the default rules), so at most ~140 MB. (Every member of
# a room of up to this size fits: a bigger room evaluated member by member would recompile per message.)
COMPILED_RULESETS = 10_000


class PushService:
    def __init__(self, rules: PushRuleStore, events: EventStore, publisher: Publisher) -> None:
        self.rules = rules
        self.events = events
        self.publisher = publisher
        self._cache: dict[tuple[str, bytes], tuple[tuple[CompiledRule, ...], bytes]] = {}

    def _compiled(self, user_id: str, blob: Any) -> tuple[CompiledRule, ...]:
        """The user's compiled ruleset, cached by the stored blob (rules rarely change)."""
        return self._compiled_and_template(user_id, blob)[0]

    def _compiled_and_template(self, user_id: str, blob: Any) -> tuple[tuple[CompiledRule, ...], bytes]:
        """The compiled ruleset, and the effective rules' JSON with this user's ID and localpart
        replaced by placeholders: users with the same template evaluate any event that names
        neither of them to the same result (see `_evaluate`)."""
        key = (user_id, msgspec.json.encode(blob) if blob is not None else b"")
        found = self._cache.get(key)
        if found is None:
            user_rules = pr.UserRules.from_json(blob) if blob is not None else pr.UserRules()
            effective = pr.effective_rules(user_id, user_rules)
            found = (compile_ruleset(effective), rules_template(user_id, effective))
            if len(self._cache) >= COMPILED_RULESETS:
                self._cache.clear()
            self._cache[key] = found
        return found

    async def user_rules(self, user_id: str) -> tuple[pr.UserRules, int]:
        found = await self.rules.get(user_id)
        if found is None:
            return pr.UserRules(), 0
        return pr.UserRules.from_json(found.rules), found.stream

    async def rules_for_sync(self, user_id: str) -> tuple[dict[str, Any], int]:
        rules, stream = await self.user_rules(user_id)
        return pr.effective_rules(user_id, rules), stream

    # -- push actions (an effect of the event pipeline) ----------------------------------------
    async def push_actions(self, conn: AsyncConnection, event: StoredEvent, ctx: RoomCtx) -> EffectRows:
        """Writer effect: evaluate the recipients' push rules for the event and return the rows that
        record the result for unread counts (written with the event, at its position).

        Only the default rules `USER_DEPENDENT_DEFAULTS` look at who receives an event, so the joined
        members with the defaults whom the event neither mentions nor invites all get one result:
        evaluated once, for a stand-in, and stored as the room's shared row. Evaluated one by one (in
        groups with the same rules) are the members with rules of their own, the mentioned and the
        invitee. What this reads and computes does not grow with the room's size."""
        await self._resolve_new_members(conn, event, ctx)
        is_member_event = event.type == "m.room.member"
        targets = [u for u in ctx.push_rules if u != event.sender]
        if is_member_event:
            invitee = event.state_key
            if invitee and invitee != event.sender and event.content.get("membership") == "invite":
                targets.append(invitee)
        else:
            mentioned = [u for u in mentioned_users(event.content) if u != event.sender and u not in ctx.push_rules]
            await ctx.read_state(conn, self.events, [("m.room.member", u) for u in mentioned])
            targets.extend(u for u in mentioned if ctx.is_joined(u))
        targets = list(dict.fromkeys(targets))
        # Under the defaults a membership event notifies nobody but its invitee (.m.rule.member_event
        # is dont_notify): the others are not counted, so no stand-in and no shared row.
        others = 0 if is_member_event else ctx.joined_count - len(targets) - int(ctx.is_joined(event.sender))
        if others > 0:
            targets.append(_ANYONE)
        if not targets:
            return NO_ROWS
        stored = {u: ctx.push_rules[u] for u in targets if u in ctx.push_rules}
        unknown = [u for u in targets if u not in ctx.push_rules and u != _ANYONE and not ctx.is_joined(u)]
        if unknown:  # the invitee, not a member yet
            stored.update(await self.rules.of_users(unknown, conn=conn))
        compiled = {u: self._compiled_and_template(u, stored.get(u)) for u in targets}
        # Display names matter only to rules with a `contains_display_name` condition (none of the
        # default rules since v1.17): read the member events of those recipients alone.
        names = [("m.room.member", u) for u, (_, template) in compiled.items() if b"contains_display_name" in template]
        if names:
            await ctx.read_state(conn, self.events, names)
        results = self._evaluate(event, ctx, targets, compiled, ctx.joined_count)
        # Stored as one shared result plus the members whose result differs. The shared one is the
        # defaults' (the stand-in's) whenever anyone has them: those members are never listed, so
        # they cannot have rows of their own. A membership event is evaluated only for some members
        # (the rest are known not to be notified): it has no shared result.
        if is_member_event:
            shared = (False, False)
        elif others > 0:
            shared = results.pop(_ANYONE)
        else:
            shared = Counter(results.values()).most_common(1)[0][0]
        thread_id = _thread_of(event)
        # (the stream slots are placeholders: the writer writes the rows at the event's position)
        room_row = PushRoomRow(event.room_id, event.stream, event.sender, thread_id, shared[1]) if shared[0] else None
        own = [
            PushUserRow(u, event.room_id, event.stream, thread_id, n, h)
            for u, (n, h) in results.items()
            if (n, h) != shared
        ]
        return EffectRows(room_row, tuple(own))

    async def _resolve_new_members(self, conn: AsyncConnection, event: StoredEvent, ctx: RoomCtx) -> None:
        """Look up the push rules of the members who joined earlier in this transaction (the sender's
        can wait: an event is never evaluated for its sender)."""
        new = [u for u in ctx.unresolved if u != event.sender]
        if new:
            found = await self.rules.of_users(new, conn=conn)
            ctx.push_rules.update(found)
            ctx.unresolved.difference_update(new)

    def _evaluate(
        self,
        event: StoredEvent,
        ctx: RoomCtx,
        targets: list[str],
        compiled: dict[str, tuple[tuple[CompiledRule, ...], bytes]],
        member_count: int,
    ) -> dict[str, tuple[bool, bool]]:
        """(notify, highlight) of the event for each target."""
        pl = ctx.state.get(("m.room.power_levels", ""))
        create = ctx.state.get(("m.room.create", ""))
        pl_content = pl.content if pl else None
        level = user_level(event.sender, pl_content, create.pdu, ctx.version) if create else 0
        sender_level = int(min(level, 2**53))  # v12 creators have infinite power
        client_event = rules_event(event)
        # One evaluation per group of recipients the event gets the same result for (see
        # `recipient_group`): the same (notify, highlight) as evaluating each.
        text = event_text(client_event)
        levels = {"room": notification_level(pl_content, "room")}
        memo: dict[tuple[bytes, str | None], tuple[bool, bool]] = {}
        results: dict[str, tuple[bool, bool]] = {}
        for user_id in targets:
            ruleset, template = compiled[user_id]
            member = ctx.state.get(("m.room.member", user_id))
            display_name = member.content.get("displayname") if member else None
            name = display_name if isinstance(display_name, str) else None
            group = recipient_group(user_id, template, name, client_event, text)
            result = None if group is None else memo.get(group)
            if result is None:
                push_ctx = PushContext(
                    user_id=user_id,
                    user_display_name=name,
                    room_member_count=member_count,
                    sender_power_level=sender_level,
                    notification_power_levels=levels,
                )
                result = actions_notify(evaluate(client_event, ruleset, push_ctx) or [])
                if group is not None:
                    memo[group] = result
            results[user_id] = result
        return results

    # -- the push-rule API: reading and changing one user's rules ------------------------------
    async def ruleset(self, user_id: str) -> JsonDict:
        """The effective rules: the server defaults merged with the user's customisations."""
        return (await self.rules_for_sync(user_id))[0]

    async def rule(self, user_id: str, kind: str, rule_id: str) -> JsonDict:
        for rule in (await self.ruleset(user_id))["global"][kind]:
            if rule["rule_id"] == rule_id:
                return dict(rule)
        raise MatrixError(404, Codes.NOT_FOUND, "Unknown push rule")

    async def put_rule(
        self, user_id: str, kind: str, rule_id: str, body: JsonDict, *, before: str | None, after: str | None
    ) -> None:
        rules, _ = await self.user_rules(user_id)
        await self._save(user_id, pr.add_rule(rules, kind, rule_id, body, before=before, after=after))

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        rules, _ = await self.user_rules(user_id)
        await self._save(user_id, pr.delete_rule(rules, kind, rule_id))

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
        rules, _ = await self.user_rules(user_id)
        await self._save(user_id, pr.set_enabled(rules, kind, rule_id, enabled))

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: JsonList) -> None:
        rules, _ = await self.user_rules(user_id)
        await self._save(user_id, pr.set_actions(rules, kind, rule_id, actions))

    async def _save(self, user_id: str, rules: pr.UserRules) -> None:
        pos = await self.rules.put(user_id, rules.to_json())
        await self.publisher.publish(StreamUpdate(pos, users=[user_id]))


# The stand-in for every joined member with the default rules whom the event does not name: no
# user can have this ID (a NUL is not in any user ID, nor in any event's JSON text).
_ANYONE = "@\x00:\x00"


def _thread_of(event: StoredEvent) -> str:
    rel = event.content.get("m.relates_to")
    if isinstance(rel, dict) and rel.get("rel_type") == "m.thread" and isinstance(rel.get("event_id"), str):
        return str(rel["event_id"])
    return ""
