"""Organisation records: every problem of a bad row is reported at once (issue 14, newcomer's tour:
on 81fc255 `org import` reported only the first problem of a row, so fixing a file took one run per
mistake)."""

from __future__ import annotations

import pytest

from paigham.domain.org import Invalid, parse_official, parse_unit


def test_every_problem_of_an_official_is_reported() -> None:
    with pytest.raises(Invalid) as bad:
        parse_official(
            {"employee_id": "E 1", "user_id": "R Sharma", "email": "nope", "status": "retired", "names": {}},
            "gov.example",
        )
    problems = str(bad.value).split("; ")
    assert [p.split(" ")[0] for p in problems] == ["employee_id", "user_id", "email", "status", "unit_id", "names:"]


def test_every_problem_of_a_unit_is_reported() -> None:
    with pytest.raises(Invalid) as bad:
        parse_unit({"unit_id": "MOF", "parent_id": "MOF", "kind": "Big Ministry", "colour": "red"})
    text = str(bad.value)
    for part in ("unknown field(s) colour", "its own parent", "kind 'Big Ministry'", "at least one name"):
        assert part in text


def test_a_good_record_still_parses() -> None:
    off = parse_official(
        {
            "employee_id": "E1",
            "user_id": "rsharma",
            "names": {"en": "R. Sharma"},
            "unit_id": "MOF",
            "designation": "Under Secretary",
            "expires": "2027-03-31",
        },
        "gov.example",
    )
    assert off.user_id == "@rsharma:gov.example" and off.designation == {"en": "Under Secretary"}
    assert off.expires == "2027-03-31" and off.status == "active"
    assert parse_unit({"unit_id": "MOF", "names": {"hi": "वित्त"}}).kind == "unit"
