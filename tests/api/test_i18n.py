"""Server-side text in English, Hindi and Urdu: complete catalogues, localised errors, server notices."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from babel.messages.pofile import read_po

from paigham.i18n import LANGUAGES, LOCALE_DIR, catalogue, negotiate, translate
from paigham.messages import N_
from paigham.org.importer import read_bytes
from tests.api.conftest import Harness, User
from tests.reconfigure import reconfigure

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "/_matrix/client/v3/login"


def test_every_message_is_translated_and_compiled() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import i18n  # scripts/i18n.py

    assert i18n.check() == 0
    with open(LOCALE_DIR / "messages.pot", "rb") as fh:
        template = {m.id for m in read_po(fh) if m.id}
    assert len(template) > 30
    for lang in LANGUAGES:
        with open(LOCALE_DIR / lang / "LC_MESSAGES" / "paigham.po", "rb") as fh:
            po = {m.id: m.string for m in read_po(fh, locale=lang) if m.id}
        assert set(po) == template, lang
        for msgid, text in po.items():  # the compiled .mo says the same as the .po
            assert isinstance(msgid, str), msgid  # no plural forms
            assert catalogue(lang).gettext(msgid) == text, (lang, msgid)
            assert text.count("{") == msgid.count("{"), (lang, msgid)  # placeholders kept


def test_rendering_and_negotiation() -> None:
    msg = N_("Too many failed sign-in attempts; try again in {seconds} seconds", seconds=30)
    assert msg == "Too many failed sign-in attempts; try again in 30 seconds"
    assert translate(msg, "hi") == "साइन-इन के बहुत अधिक असफल प्रयास; 30 सेकंड बाद फिर से प्रयास करें"
    assert translate(msg, "ur") == "سائن ان کی بہت زیادہ ناکام کوششیں؛ 30 سیکنڈ بعد دوبارہ کوشش کریں"
    assert translate("Some text no catalogue has", "hi") == "Some text no catalogue has"
    assert translate(N_("{unit} — Announcements", unit="बजट"), "hi") == "बजट — घोषणाएँ"
    assert negotiate("hi-IN,hi;q=0.9,en;q=0.8") == "hi"
    assert negotiate("fr-FR, ur;q=0.5, en;q=0.4") == "ur"
    assert negotiate("de, fr") == "en" and negotiate(None, "ur") == "ur" and negotiate("en;q=0, hi;q=0.1") == "hi"


async def test_errors_follow_accept_language(hs: Harness) -> None:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody"}, "password": "x"}
    err = await hs.err(403, "M_FORBIDDEN", "POST", LOGIN, json=body, headers={"Accept-Language": "hi-IN,hi"})
    assert err["error"] == "उपयोगकर्ता नाम या पासवर्ड गलत है"
    err = await hs.err(403, "M_FORBIDDEN", "POST", LOGIN, json=body, headers={"Accept-Language": "ur"})
    assert err["error"] == "صارف نام یا پاس ورڈ غلط ہے"
    err = await hs.err(403, "M_FORBIDDEN", "POST", LOGIN, json=body, headers={"Accept-Language": "fr"})
    assert err["error"] == "Invalid username or password"
    user = await hs.register("plain")
    err = await hs.err(403, "M_FORBIDDEN", "GET", "/_synapse/admin/v2/users", user, headers={"Accept-Language": "ur"})
    assert err["error"] == "آپ سرور کے منتظم نہیں ہیں"
    reconfigure(hs.server.config, policy_max_devices=1)
    hs.server.policies.invalidate()
    err = await hs.err(
        403,
        "M_FORBIDDEN",
        "POST",
        LOGIN,
        headers={"Accept-Language": "hi"},
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "plain"},
            "password": user.password,
        },
    )
    assert err["error"].startswith("आप 1 उपकरणों पर साइन इन हैं")


async def test_server_notices_in_the_users_language(hs: Harness) -> None:
    doc = {
        "units": [{"unit_id": "MOF", "names": {"en": "Finance"}}],
        "officials": [
            {"employee_id": "E1", "user_id": "zara", "names": {"en": "Zara"}, "unit_id": "MOF", "language": "ur"}
        ],
    }
    assert (
        await hs.server.org.import_rows(read_bytes(json.dumps(doc).encode(), "o.json"), dry_run=False, actor=None)
    ).ok
    boss = await hs.register("boss")
    await hs.server.accounts.update_user(boss.user_id, admin=True)
    await hs.server.auth.set_password("@zara:test.local", "pw-zara")
    s = await hs.server.auth.start_session("@zara:test.local", None, None)
    zara = User("@zara:test.local", s.access_token, s.device_id, "pw-zara")
    await hs.ok("PUT", f"/_matrix/client/v1/admin/suspend/{zara.user_id}", boss, json={"suspended": True})
    sync = await hs.sync(zara)
    notices = [
        (rid, r)
        for rid, r in sync["rooms"]["join"].items()
        if any(e["type"] == "m.tag" and "m.server_notice" in e["content"]["tags"] for e in r["account_data"]["events"])
    ]
    assert len(notices) == 1
    room_id, room = notices[0]
    bodies = [e["content"]["body"] for e in room["timeline"]["events"] if e["type"] == "m.room.message"]
    assert bodies == [
        translate(
            N_(
                "Your account has been suspended by an administrator. You can still read your messages and leave rooms."
            ),
            "ur",
        )
    ]
    assert bodies[0].startswith("ایک منتظم نے آپ کا اکاؤنٹ معطل کر دیا ہے")
    names = [
        e["content"]["name"] for e in room["state"]["events"] + room["timeline"]["events"] if e["type"] == "m.room.name"
    ]
    assert names == ["سرور نوٹس"]
    # the user's own choice wins over the directory's
    await hs.ok(
        "PUT",
        f"/_matrix/client/v3/user/{zara.user_id}/account_data/org.paigham.language",
        zara,
        json={"language": "hi"},
    )
    await hs.ok("PUT", f"/_matrix/client/v1/admin/suspend/{zara.user_id}", boss, json={"suspended": False})
    msgs = await hs.ok("GET", f"/_matrix/client/v3/rooms/{room_id}/messages", zara, params={"dir": "b", "limit": 1})
    assert msgs["chunk"][0]["content"]["body"] == "आपका खाता फिर से सक्रिय है।"
    # an admin's own notice (Synapse's API) is delivered as written
    res = await hs.ok(
        "POST",
        "/_synapse/admin/v1/send_server_notice",
        boss,
        json={"user_id": zara.user_id, "content": {"msgtype": "m.text", "body": "Meeting at 3"}},
    )
    ev = await hs.ok("GET", f"/_matrix/client/v3/rooms/{room_id}/event/{res['event_id']}", zara)
    assert ev["content"]["body"] == "Meeting at 3" and ev["sender"] == "@paigham:test.local"
    await hs.err(
        400,
        "M_INVALID_PARAM",
        "POST",
        "/_synapse/admin/v1/send_server_notice",
        boss,
        json={"user_id": zara.user_id, "content": {"msgtype": "m.image"}},
    )
