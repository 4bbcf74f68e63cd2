"""Names for the directory workload: people as a ministry's HR records and self-registered accounts
show them, in Latin, Devanagari and Urdu (Arabic) script. Common first names and surnames of North
India and Pakistan, each written as people write it in each script (not machine transliteration):
the directory must match "Sharma", "शर्मा" and "شرما" to one another.

Surnames are drawn with a skew (a few very common, a long tail), as in real registers, so a search
for "sharma" meets thousands of matches at 200,000 accounts."""

from __future__ import annotations

import csv
import io
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from paigham.org.sample import FIRST as SAMPLE_FIRST
from paigham.org.sample import LAST as SAMPLE_LAST

FIRST = [
    *SAMPLE_FIRST,  # the sample organisation's (Rakesh … Ayesha), and more:
    ("Rajesh", "राजेश", "راجیش"), ("Suresh", "सुरेश", "سریش"), ("Ramesh", "रमेश", "رمیش"),
    ("Anita", "अनीता", "انیتا"), ("Mohammed", "मोहम्मद", "محمد"), ("Fatima", "फ़ातिमा", "فاطمہ"),
    ("Ali", "अली", "علی"), ("Hassan", "हसन", "حسن"), ("Sana", "सना", "ثنا"), ("Asif", "आसिफ़", "آصف"),
    ("Nusrat", "नुसरत", "نصرت"), ("Tariq", "तारिक़", "طارق"), ("Sanjay", "संजय", "سنجے"),
    ("Neha", "नेहा", "نیہا"), ("Manoj", "मनोज", "منوج"), ("Rekha", "रेखा", "ریکھا"),
    ("Ashok", "अशोक", "اشوک"), ("Geeta", "गीता", "گیتا"), ("Vijay", "विजय", "وجے"),
    ("Shabana", "शबाना", "شبانہ"), ("Yusuf", "यूसुफ़", "یوسف"), ("Rukhsana", "रुख़साना", "رخسانہ"),
    ("Harish", "हरीश", "ہریش"), ("Lata", "लता", "لتا"), ("Naveen", "नवीन", "نوین"),
    ("Shahid", "शाहिद", "شاہد"), ("Parveen", "परवीन", "پروین"), ("Gopal", "गोपाल", "گوپال"),
]
LAST = [
    *SAMPLE_LAST,  # Sharma … Chaudhary, and more:
    ("Kumar", "कुमार", "کمار"),
    ("Yadav", "यादव", "یادو"), ("Mishra", "मिश्रा", "مشرا"), ("Pandey", "पांडे", "پانڈے"),
    ("Tiwari", "तिवारी", "تیواری"), ("Saxena", "सक्सेना", "سکسینہ"), ("Malik", "मलिक", "ملک"),
    ("Sheikh", "शेख़", "شیخ"), ("Hussain", "हुसैन", "حسین"), ("Mirza", "मिर्ज़ा", "مرزا"),
    ("Naqvi", "नक़वी", "نقوی"), ("Agarwal", "अग्रवाल", "اگروال"), ("Bhatt", "भट्ट", "بھٹ"),
    ("Kapoor", "कपूर", "کپور"), ("Srivastava", "श्रीवास्तव", "سریواستو"), ("Thakur", "ठाकुर", "ٹھاکر"),
    ("Rao", "राव", "راؤ"), ("Nair", "नायर", "نائر"), ("Das", "दास", "داس"), ("Bano", "बानो", "بانو"),
]
SCRIPTS = ("en", "hi", "ur")


@dataclass(frozen=True, slots=True)
class Person:
    localpart: str
    first: tuple[str, str, str]
    last: tuple[str, str, str]

    def name(self, script: int) -> str:
        return f"{self.first[script]} {self.last[script]}"


def people(n: int, seed: int, prefix: str) -> Iterator[Person]:
    """`n` people with distinct localparts (`<prefix><first>.<last>.<number>`)."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 0.8 for i in range(len(LAST))]  # a few common surnames, a long tail
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choices(LAST, weights)[0]
        yield Person(f"{prefix}{first[0].lower()}.{last[0].lower()}.{i}", first, last)


def units_csv(units: int) -> str:
    """A ministry with `units` sections (the org import's units file)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["unit_id", "parent_id", "kind", "name_en", "name_hi", "name_ur"])
    w.writerow(["MIN", "", "ministry", "Ministry of Personnel", "कार्मिक मंत्रालय", "وزارت عملہ"])
    for u in range(units):
        w.writerow([f"SEC{u}", "MIN", "section", f"Section {u}", f"अनुभाग {u}", f"سیکشن {u}"])
    return out.getvalue()


DESIGNATIONS = [
    ("Under Secretary", "अवर सचिव", "انڈر سیکرٹری"), ("Section Officer", "अनुभाग अधिकारी", "سیکشن آفیسر"),
    ("Assistant", "सहायक", "اسسٹنٹ"), ("Deputy Secretary", "उप सचिव", "ڈپٹی سیکرٹری"),
]


def officials_csv(n: int, units: int, seed: int) -> str:
    """`n` officials (the org import's officials file): names in English and Hindi, a third also in Urdu."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["employee_id", "user_id", "unit_id", "name_en", "name_hi", "name_ur", "designation_en",
                "designation_hi", "designation_ur"])
    for i, p in enumerate(people(n, seed, "o.")):
        d = DESIGNATIONS[i % len(DESIGNATIONS)]
        w.writerow([f"E{i}", p.localpart, f"SEC{i % units}", p.name(0), p.name(1), p.name(2) if i % 3 == 0 else "",
                    *d])
    return out.getvalue()


def accounts_csv(n: int, seed: int) -> str:
    """`n` plain accounts (`paigham user import`): a display name in one script each, as people type
    their own — half Latin, a quarter Devanagari, a quarter Urdu."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["user_id", "displayname"])
    for i, p in enumerate(people(n, seed, "p.")):
        w.writerow([p.localpart, p.name((0, 0, 1, 2)[i % 4])])
    return out.getvalue()


def queries(n: int, seed: int) -> list[str]:
    """Full names to type, in the mix of scripts people search in (60 % Latin, 25 % Devanagari, 15 % Urdu);
    some only a first name or a surname."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        script = rng.choices((0, 1, 2), (60, 25, 15))[0]
        shape = rng.random()
        out.append(last[script] if shape < 0.15 else first[script] if shape < 0.25 else
                   f"{first[script]} {last[script]}")
    return out
