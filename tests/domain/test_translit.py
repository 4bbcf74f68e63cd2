"""Cross-script search keys: the same name in Latin, Devanagari and Urdu reduces to the same skeleton."""

from __future__ import annotations

import pytest

from paigham.domain.translit import EXACT, PREFIX, SKELETON_PREFIX, Token, search_key, tokens, word_score

SAME = [
    ("Sharma", "शर्मा", "شرما"),
    ("Khan", "ख़ान", "خان"),
    ("Qureshi", "क़ुरैशी", "قریشی"),
    ("Siddiqui", "सिद्दीक़ी", "صدیقی"),
    ("Chaudhary", "चौधरी", "چودھری"),
    ("Zainab", "ज़ैनब", "زینب"),
    ("Anjali", "अंजलि", "انجلی"),
    ("Rakesh", "राकेश", "راکیش"),
    ("Verma", "वर्मा", "ورما"),
    ("Farah", "फ़राह", "فرح"),
    ("Deepak", "दीपक", "دیپک"),
    ("Pooja", "पूजा", "پوجا"),
    ("Secretary", "सेक्रेटरी", "سیکرٹری"),
    ("Section Officer", "सेक्शन ऑफिसर", "سیکشن آفیسر"),
]


@pytest.mark.parametrize(("latin", "devanagari", "urdu"), SAME)
def test_three_scripts_share_a_skeleton(latin: str, devanagari: str, urdu: str) -> None:
    skel = [[t.skel for t in tokens(x)] for x in (latin, devanagari, urdu)]
    assert skel[0] == skel[1] == skel[2], skel


def test_folding_and_normalisation() -> None:
    assert [t.fold for t in tokens("  SHARMA,  Rakesh ")] == ["sarma", "rakes"]
    assert tokens("क़") == tokens("क\u093c")  # precomposed and decomposed nukta
    assert tokens("\uff33\uff48\uff41\uff52\uff4d\uff41") == tokens("sharma")  # full-width letters (NFKC)
    assert tokens("!!! ---") == []
    assert search_key(["Rakesh Sharma", "राकेश शर्मा"]) == " rakes ~rks sarma ~srn srma "


def test_scores_rank_exact_then_prefix_then_skeleton() -> None:
    q = tokens("sharma")[0]
    assert word_score(q, Token("sarma", "srn")) == EXACT
    assert word_score(tokens("shar")[0], Token("sarma", "srn")) == PREFIX
    hindi, urdu = tokens("शर्मा")[0], tokens("شرما")[0]
    assert EXACT > word_score(q, hindi) > word_score(q, urdu) > SKELETON_PREFIX
    assert word_score(tokens("sachiv")[0], tokens("secretary")[0]) == 0  # 2 of 5 consonants
