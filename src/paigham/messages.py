"""Marked messages: `N_("text {name}", name=…)` returns a `Msg`, a str in English that remembers its
message ID and parameters so `paigham.i18n` can render it again in the reader's language. A leaf
module (pure), so the domain rules can mark their texts without importing the catalogues."""

from __future__ import annotations

from typing import Any


class Msg(str):
    """An English message that can be rendered again in another language."""

    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, **params: Any) -> Msg:
        obj = super().__new__(cls, msgid.format(**params) if params else msgid)
        obj.msgid = msgid
        obj.params = params
        return obj


def N_(msgid: str, **params: Any) -> Msg:  # the conventional name of the gettext marker
    return Msg(msgid, **params)
