"""Translations: extract the marked messages (N_(...)) into messages.pot, merge them into each
language's .po, and compile the .mo files the server loads. Run after changing or adding messages:

    .venv/bin/python scripts/i18n.py          # extract, update, compile
    .venv/bin/python scripts/i18n.py --check  # fail if a message lacks a translation or a .mo is stale
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "src" / "paigham" / "i18n" / "locale"
POT = LOCALE / "messages.pot"
LANGUAGES = ("en", "hi", "ur")
PYBABEL = [sys.executable, "-m", "babel.messages.frontend"]


def run(*args: str) -> None:
    done = subprocess.run([*PYBABEL, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"pybabel {args[0]} failed:\n{done.stderr}")


def check() -> int:
    bad = 0
    for lang in LANGUAGES:
        po = LOCALE / lang / "LC_MESSAGES" / "paigham.po"
        with open(po, "rb") as fh:
            cat = read_po(fh, locale=lang)
        missing = [m.id for m in cat if m.id and not m.string and lang != "en"]
        fuzzy = [m.id for m in cat if m.id and m.fuzzy]
        for msg in missing + fuzzy:
            print(f"{po.relative_to(ROOT)}: not translated: {msg!r}")
        bad += len(missing) + len(fuzzy)
    return 1 if bad else 0


def main() -> int:
    if "--check" in sys.argv:
        return check()
    run("extract", "-F", "babel.cfg", "-k", "N_", "--no-location", "--sort-output",
        "--project", "Paigham", "-o", str(POT), "src/paigham")
    for lang in LANGUAGES:
        po = LOCALE / lang / "LC_MESSAGES" / "paigham.po"
        if po.exists():
            run("update", "-i", str(POT), "-o", str(po), "-l", lang, "--no-fuzzy-matching")
        else:
            run("init", "-i", str(POT), "-o", str(po), "-l", lang)
        with open(po, "rb") as fh:
            cat = read_po(fh, locale=lang)
        with open(po.with_suffix(".mo"), "wb") as out:
            write_mo(out, cat)
    return check()


if __name__ == "__main__":
    sys.exit(main())
