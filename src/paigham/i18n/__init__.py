"""Server-side text in the reader's language (English, Hindi, Urdu), from Babel catalogues.

Messages are written in English and marked: `N_("text {name}", name=…)` returns a `Msg` — a str in
English that remembers its message ID and parameters, so it can be rendered again in another
language. Error responses are translated for the request (Accept-Language), server notices for the
user (their chosen language). Catalogues live in locale/<lang>/LC_MESSAGES/paigham.po and are
compiled to .mo with `python scripts/i18n.py` (extract, update, compile).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from babel.support import NullTranslations, Translations

from paigham.messages import N_ as N_
from paigham.messages import Msg as Msg

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "paigham"
LANGUAGES = ("en", "hi", "ur")
RTL = {"ur"}


@lru_cache(maxsize=16)
def catalogue(lang: str) -> NullTranslations:
    if lang not in LANGUAGES:
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [lang], domain=DOMAIN)


def translate(text: str, lang: str) -> str:
    """`text` in `lang` when the catalogue has it (a Msg or an exact known message), else unchanged."""
    if lang == "en" or lang not in LANGUAGES:
        return str(text)
    cat = catalogue(lang)
    if isinstance(text, Msg):
        rendered = cat.gettext(text.msgid)
        try:
            return rendered.format(**text.params) if text.params else rendered
        except (KeyError, IndexError, ValueError):
            return str(text)
    return cat.gettext(str(text))


def negotiate(accept_language: str | None, default: str = "en") -> str:
    """The best supported language of an Accept-Language header (`hi-IN, ur;q=0.8, en;q=0.5`)."""
    best, best_q = default, -1.0
    for i, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-", 1)[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if lang in LANGUAGES and q > best_q and q > 0:
            best, best_q = lang, q - i * 1e-6  # earlier entries win ties
    return best
