"""Cross-script search keys: names in Latin, Devanagari and Urdu (Arabic script) reduce to the same keys.

Every word becomes two keys:

* the *fold*: NFKC, case-folded, transliterated to ASCII (anyascii), with the spellings that differ
  between Hindi and Urdu romanisations unified (sh→s, kh→k, ph→f, q→k, z→j, c→k, w→v, …);
* the *skeleton*: the fold without vowels, y/v/h and repeated letters, and with m→n — Urdu script
  usually omits short vowels and Devanagari's anusvara becomes m, so "sharma", "शर्मा" and "شرما" all
  give "srn", "secretary" and "سیکرٹری" give "skrtr".

Matching is by prefix on either key, so a search can be typed letter by letter (a skeleton prefix
counts once at least half of the word's consonants are typed). Pure code.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from anyascii import anyascii

_DIGRAPHS = [
    ("sh", "s"),
    ("kh", "k"),
    ("gh", "g"),
    ("ph", "f"),
    ("th", "t"),
    ("dh", "d"),
    ("bh", "b"),
    ("jh", "j"),
    ("ch", "c"),
    ("ng", "n"),
]
_LETTERS = str.maketrans({"q": "k", "z": "j", "c": "k", "w": "v", "x": "k"})
_VOWELS = re.compile(r"[aeiouyvh]")
_REPEATS = re.compile(r"(.)\1+")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_SPACE = re.compile(r"[\s,;:/|()\[\]{}\"]+")
_SOFT_C = re.compile(r"c(?=[eiy])")
MAX_TOKENS = 16


def fold_word(word: str) -> str:
    for a, b in _DIGRAPHS:
        word = word.replace(a, b)
    return _REPEATS.sub(r"\1", word.translate(_LETTERS))


def skeleton(folded: str) -> str:
    if folded.isdigit():
        return folded
    return _REPEATS.sub(r"\1", _VOWELS.sub("", folded).replace("m", "n"))


def _english(word: str) -> str:
    """Spellings of English words (designations are often English loanwords, written phonetically in
    Hindi and Urdu): a soft c is an s, -tion is -shan."""
    return _SOFT_C.sub("s", word.replace("tion", "shn"))


@lru_cache(maxsize=65536)
def _fold_raw(raw: str) -> tuple[str, ...]:
    """The folded words of one space-separated piece of text (names repeat: cached)."""
    latin = raw.isascii()
    ascii_ = anyascii(raw).lower().replace("'", "").replace("`", "")
    return tuple(fold_word(_english(w) if latin else w) for w in _NOT_WORD.split(ascii_) if w)


def words(text: str) -> list[str]:
    """The folded words of a text in any script (at most MAX_TOKENS)."""
    out: list[str] = []
    for raw in _SPACE.split(unicodedata.normalize("NFKC", text).casefold()):
        if raw:
            out.extend(_fold_raw(raw))
    return out[:MAX_TOKENS]


@dataclass(frozen=True, slots=True)
class Token:
    fold: str
    skel: str


def tokens(text: str) -> list[Token]:
    return [Token(w, _skeleton(w)) for w in words(text)]


_skeleton = lru_cache(maxsize=65536)(skeleton)


def search_key(texts: list[str]) -> str:
    """The stored key of some texts: ' fold ~skeleton …' — LIKE '% x%' finds a prefix of any word."""
    seen: list[str] = []
    for text in texts:
        for t in tokens(text):
            for part in (t.fold, "~" + t.skel if t.skel else ""):
                if part and part not in seen:
                    seen.append(part)
    return " " + " ".join(seen) + " " if seen else ""


TERM_LEN = 64  # stored terms are cut here (a prefix search still finds longer words)


def index_terms(texts: list[str]) -> list[tuple[str, str]]:
    """The directory index's rows for some texts: (term, word) — each word's fold, and '~' + its
    skeleton, with the word's fold (a match is ranked by the word it came from)."""
    out: dict[tuple[str, str], None] = {}
    for text in texts:
        for t in tokens(text):
            word = t.fold[:TERM_LEN]
            out[(word, word)] = None
            if t.skel:
                out[(("~" + t.skel)[:TERM_LEN], word)] = None
    return list(out)


PAIR_WORDS = 4  # the first words of a text that are paired


def pair_terms(texts: list[str]) -> set[str]:
    """Every ordered pair of words of each text, as 'fold fold' and '~skel skel': a search of two
    words is then one range (the first word whole, the second a prefix), in either order."""
    out: set[str] = set()
    for text in texts:
        toks = tokens(text)[:PAIR_WORDS]
        for a in toks:
            for b in toks:
                if a is not b:
                    out.add(f"{a.fold} {b.fold}"[: 2 * TERM_LEN])
                    if a.skel and b.skel:
                        out.add(f"~{a.skel} {b.skel}"[: 2 * TERM_LEN])
    return out


def term_range(prefix: str) -> tuple[str, str]:
    """The bounds [low, high) of the stored terms that start with `prefix` (terms are ASCII below
    0x7f, so prefix + DEL is above every one of them): a btree range scan on both engines."""
    return prefix, prefix + "\x7f"


def parse_key(key: str) -> list[Token]:
    """The tokens of a stored key (for ranking the candidates a query found)."""
    out: list[Token] = []
    for part in key.split():
        if not part.startswith("~"):
            out.append(Token(part, skeleton(part)))
    return out


# Scores of one query word against one word of a field: exact > prefix > same skeleton > skeleton prefix.
EXACT, PREFIX, SKELETON, SKELETON_PREFIX = 100, 70, 50, 30


def word_score(q: Token, t: Token) -> int:
    if t.fold == q.fold:
        return EXACT
    if t.fold.startswith(q.fold):
        return PREFIX
    if len(q.skel) >= 2 and t.skel == q.skel:
        return SKELETON - min(10, abs(len(t.fold) - len(q.fold)))  # closer spellings first
    if len(q.skel) >= 2 and 2 * len(q.skel) >= len(t.skel) and t.skel.startswith(q.skel):
        return SKELETON_PREFIX  # at least half of the word's consonants typed
    return 0


def field_score(query: list[Token], field_: list[Token]) -> list[int]:
    """For each query word, its best score in the field."""
    return [max((word_score(q, t) for t in field_), default=0) for q in query]
