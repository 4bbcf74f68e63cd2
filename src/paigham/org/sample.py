"""A generated sample organisation (ministries → departments → sections, officials with names in
Latin, Devanagari and Urdu script): for demos, the tests and the import benchmark."""

from __future__ import annotations

import csv
import io
from typing import Any

MINISTRIES = [
    ("FIN", "Ministry of Finance", "वित्त मंत्रालय", "وزارت خزانہ"),
    ("HOME", "Ministry of Home Affairs", "गृह मंत्रालय", "وزارت داخلہ"),
    ("EDU", "Ministry of Education", "शिक्षा मंत्रालय", "وزارت تعلیم"),
    ("HLTH", "Ministry of Health", "स्वास्थ्य मंत्रालय", "وزارت صحت"),
]
DEPARTMENTS = [
    ("REV", "Department of Revenue", "राजस्व विभाग", "محکمہ محصولات"),
    ("EXP", "Department of Expenditure", "व्यय विभाग", "محکمہ اخراجات"),
    ("PER", "Department of Personnel", "कार्मिक विभाग", "محکمہ عملہ"),
    ("LEG", "Legal Department", "विधि विभाग", "محکمہ قانون"),
]
FIRST = [
    ("Rakesh", "राकेश", "راکیش"),
    ("Priya", "प्रिया", "پریا"),
    ("Amit", "अमित", "امت"),
    ("Sunita", "सुनीता", "سنیتا"),
    ("Imran", "इमरान", "عمران"),
    ("Farah", "फ़राह", "فرح"),
    ("Vikram", "विक्रम", "وکرم"),
    ("Anjali", "अंजलि", "انجلی"),
    ("Salman", "सलमान", "سلمان"),
    ("Kavita", "कविता", "کویتا"),
    ("Arjun", "अर्जुन", "ارجن"),
    ("Zainab", "ज़ैनब", "زینب"),
    ("Deepak", "दीपक", "دیپک"),
    ("Meera", "मीरा", "میرا"),
    ("Nadeem", "नदीम", "ندیم"),
    ("Pooja", "पूजा", "پوجا"),
    ("Rahul", "राहुल", "راہل"),
    ("Ayesha", "आयशा", "عائشہ"),
]
LAST = [
    ("Sharma", "शर्मा", "شرما"),
    ("Verma", "वर्मा", "ورما"),
    ("Khan", "ख़ान", "خان"),
    ("Gupta", "गुप्ता", "گپتا"),
    ("Singh", "सिंह", "سنگھ"),
    ("Qureshi", "क़ुरैशी", "قریشی"),
    ("Mehta", "मेहता", "مہتا"),
    ("Ansari", "अंसारी", "انصاری"),
    ("Iyer", "अय्यर", "ایر"),
    ("Siddiqui", "सिद्दीक़ी", "صدیقی"),
    ("Joshi", "जोशी", "جوشی"),
    ("Rizvi", "रिज़वी", "رضوی"),
    ("Patel", "पटेल", "پٹیل"),
    ("Chaudhary", "चौधरी", "چودھری"),
]
DESIGNATIONS = [
    ("Secretary", "सचिव", "سیکرٹری"),
    ("Joint Secretary", "संयुक्त सचिव", "جوائنٹ سیکرٹری"),
    ("Deputy Secretary", "उप सचिव", "ڈپٹی سیکرٹری"),
    ("Under Secretary", "अवर सचिव", "انڈر سیکرٹری"),
    ("Section Officer", "अनुभाग अधिकारी", "سیکشن آفیسر"),
    ("Assistant Section Officer", "सहायक अनुभाग अधिकारी", "اسسٹنٹ سیکشن آفیسر"),
]


def _names(en: str, hi: str, ur: str) -> dict[str, str]:
    return {"en": en, "hi": hi, "ur": ur}


def sample_org(
    officials: int, *, ministries: int = 3, departments: int = 4, sections: int = 8, prefix: str = ""
) -> dict[str, Any]:
    """A JSON import document: ministries, their departments, their sections, and `officials` people."""
    units: list[dict[str, Any]] = []
    leaves: list[str] = []
    for m in MINISTRIES[:ministries]:
        mid = f"{prefix}{m[0]}"
        units.append({"unit_id": mid, "parent_id": None, "kind": "ministry", "names": _names(*m[1:])})
        for d in DEPARTMENTS[:departments]:
            did = f"{mid}-{d[0]}"
            units.append({"unit_id": did, "parent_id": mid, "kind": "department", "names": _names(*d[1:])})
            for s in range(1, sections + 1):
                sid = f"{did}-S{s}"
                units.append(
                    {
                        "unit_id": sid,
                        "parent_id": did,
                        "kind": "section",
                        "names": _names(f"Section {s}", f"अनुभाग {s}", f"سیکشن {s}"),
                    }
                )
                leaves.append(sid)
    people: list[dict[str, Any]] = []
    for i in range(officials):
        f, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        title = DESIGNATIONS[min(i % 17, len(DESIGNATIONS) - 1)]
        people.append(
            {
                "employee_id": f"{prefix}E{i:06d}",
                "user_id": f"{prefix.lower()}{f[0].lower()}.{last[0].lower()}.{i}",
                "names": _names(f"{f[0]} {last[0]}", f"{f[1]} {last[1]}", f"{f[2]} {last[2]}"),
                "designation": _names(*title),
                "unit_id": leaves[i % len(leaves)],
                "email": f"e{i}@gov.example",
                "phone": None,
                "status": "active",
                "expires": None,
            }
        )
    return {"version": 1, "units": units, "officials": people}


def officials_csv(doc: dict[str, Any]) -> str:
    cols = [
        "employee_id",
        "user_id",
        "name_en",
        "name_hi",
        "name_ur",
        "designation_en",
        "designation_hi",
        "designation_ur",
        "unit_id",
        "email",
        "phone",
        "status",
        "expires",
    ]
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(cols)
    for o in doc["officials"]:
        w.writerow(
            [
                o["employee_id"],
                o["user_id"],
                o["names"]["en"],
                o["names"]["hi"],
                o["names"]["ur"],
                o["designation"]["en"],
                o["designation"]["hi"],
                o["designation"]["ur"],
                o["unit_id"],
                o["email"] or "",
                o["phone"] or "",
                o["status"],
                o["expires"] or "",
            ]
        )
    return out.getvalue()


def units_csv(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["unit_id", "parent_id", "kind", "name_en", "name_hi", "name_ur"])
    for u in doc["units"]:
        w.writerow(
            [u["unit_id"], u["parent_id"] or "", u["kind"], u["names"]["en"], u["names"]["hi"], u["names"]["ur"]]
        )
    return out.getvalue()
