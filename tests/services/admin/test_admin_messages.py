"""AdminMessages without HTTP, with in-memory fakes for the senders and the audit log: what is refused
before anything is sent, what is sent, and what is audited."""

from __future__ import annotations

from dataclasses import dataclass, field

from paigham.app import Server
from paigham.services.admin_messages import AdminMessages
from paigham.types import JsonDict
from tests.services.admin.conftest import ADMIN, FakeAudit, refused


@dataclass
class FakeSenders:
    notices: list[tuple[str, str, JsonDict]] = field(default_factory=list)
    announcements: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def send_notice(self, user_id: str, text: str, content: JsonDict) -> str:
        self.notices.append((user_id, text, content))
        return f"$notice{len(self.notices)}"

    async def announce(self, unit_id: str, text: str, actor: str | None) -> str:
        self.announcements.append((unit_id, text, actor))
        return f"$announcement{len(self.announcements)}"


def messages_of(server: Server, senders: FakeSenders, audit: FakeAudit) -> AdminMessages:
    return AdminMessages(server.admin, senders.send_notice, senders.announce, audit)


async def test_server_notice_checks_the_account_and_the_content(server: Server, audit: FakeAudit) -> None:
    senders = FakeSenders()
    messages = messages_of(server, senders, audit)
    user_id = await server.auth.create_user("clerk", "pw-clerk-1")
    gone = await server.auth.create_user("gone", "pw-gone-1")
    await server.admin.deactivate(gone, ADMIN)
    await refused(404, messages.server_notice("@ghost:test.local", {"msgtype": "m.text", "body": "hi"}, ADMIN))
    await refused(400, messages.server_notice(gone, {"msgtype": "m.text", "body": "hi"}, ADMIN))
    for bad in ({"msgtype": "m.image", "body": "x"}, {"msgtype": "m.text", "body": ""}, {"msgtype": "m.text"}):
        await refused(400, messages.server_notice(user_id, bad, ADMIN))
    await refused(400, messages.server_notice(user_id, {"msgtype": "m.text", "body": "x" * 16_001}, ADMIN))
    assert senders.notices == [] and audit.entries == []

    content = {"msgtype": "m.notice", "body": "Maintenance tonight", "format": "ignored"}
    assert await messages.server_notice(user_id, content, ADMIN) == "$notice1"
    assert senders.notices == [(user_id, "Maintenance tonight", {"msgtype": "m.notice", "body": "Maintenance tonight"})]
    assert audit.entries == [
        ("admin.server_notice", ADMIN.user_id, user_id, ADMIN.ip, ADMIN.device, {"event_id": "$notice1"})
    ]


async def test_announce_checks_the_text_and_audits(server: Server, audit: FakeAudit) -> None:
    senders = FakeSenders()
    messages = messages_of(server, senders, audit)
    await refused(400, messages.announce("MOF", "   ", ADMIN))
    await refused(400, messages.announce("MOF", "x" * 16_001, ADMIN))
    assert senders.announcements == []
    assert await messages.announce("MOF", "Office closed on Friday", ADMIN) == "$announcement1"
    assert senders.announcements == [("MOF", "Office closed on Friday", ADMIN.user_id)]
    assert audit.entries == [
        ("admin.announce", ADMIN.user_id, "MOF", ADMIN.ip, ADMIN.device, {"event_id": "$announcement1"})
    ]
