"""Organisation policy as a check of the event pipeline (services/writer.py): invitations across
ministries, rooms made private without end-to-end encryption where the sender's policy requires
it, and call events (domain/rtc.py) where the sender's policy does not allow calls (in an encrypted
room a 1:1 m.call.invite travels encrypted and cannot be seen; the LiveKit token and TURN
credentials are refused there instead). It runs before anything of the event is written, so a
refusal rolls the whole request back.

The server's own account (`system_user`, which administers the unit rooms) is exempt from the
encryption rule, as it is when it creates those rooms (`PolicyEnforcer.room_creation`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from paigham.domain.rtc import CALLS_REFUSED, is_call_event
from paigham.domain.stored_event import StoredEvent
from paigham.errors import Codes, MatrixError
from paigham.messages import N_
from paigham.org.policy import PolicyService
from paigham.services.stages import RoomCtx
from paigham.storage.accounts import AccountStore
from paigham.storage.events import EventStore

ENCRYPTION = ("m.room.encryption", "")


class EventPolicy:
    def __init__(self, policies: PolicyService, events: EventStore, accounts: AccountStore, system_user: str) -> None:
        self.policies = policies
        self.events = events
        self.accounts = accounts
        self.system_user = system_user

    async def check(self, conn: AsyncConnection, event: StoredEvent, ctx: RoomCtx) -> None:
        """Writer check: invitations across ministries, rooms turned private unencrypted, and calls
        (joining, inviting to or ringing a call; leaving one is always allowed) where the sender's
        policy does not allow them."""
        if (
            event.type == "m.room.member"
            and event.content.get("membership") == "invite"
            and event.state_key
            and event.state_key != event.sender
        ):
            await self._check_invite(event.sender, event.state_key)
        elif (
            event.type == "m.room.join_rules"
            and not ctx.fresh
            and event.content.get("join_rule") != "public"
            and event.sender != self.system_user
        ):
            await ctx.read_state(conn, self.events, [ENCRYPTION])
            if ENCRYPTION not in ctx.state and (await self.policies.for_user(event.sender)).require_encryption:
                raise MatrixError(
                    403,
                    Codes.FORBIDDEN,
                    N_(
                        "Your organisation requires private rooms to be end-to-end encrypted: turn on encryption "
                        "before making the room private"
                    ),
                )
        elif (
            is_call_event(event.type, event.content)
            and event.sender != self.system_user
            and not await self.policies.calls_allowed(event.sender)
        ):
            raise MatrixError(403, Codes.FORBIDDEN, CALLS_REFUSED)

    async def _check_invite(self, sender: str, target: str) -> None:
        if (await self.policies.for_user(sender)).invite_outside_ministry:
            return
        mine = await self.policies.ministry_of(sender)
        if mine is None:
            return  # not an official: the policy does not apply
        theirs = await self.policies.ministry_of(target)
        if theirs != mine:
            user = await self.accounts.get_user(target)
            if user is not None and user.admin:
                return  # server admins may always be invited
            raise MatrixError(
                403,
                Codes.FORBIDDEN,
                N_("Your organisation's policy does not allow inviting people outside your ministry"),
            )
