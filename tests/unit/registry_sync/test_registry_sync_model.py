"""registry-sync's change validation and fold (subsidy/services/registry_sync/model.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from subsidy.core import credit_code
from subsidy.services.registry_sync.model import BadChange, empty_facts, fold, parse_change

TODAY = dt.date(2026, 3, 1)
CODE = "91310117313Q6C3D6G"


def change(**overrides):
    base = {
        "sequence": 7,
        "credit_code": CODE,
        "kind": "REGISTRATION",
        "effective_on": "2026-02-27",
        "data": {"in_district": False},
    }
    base.update(overrides)
    return base


def firm_change(**data):
    firm = {
        "name": "上海九科",
        "kinds": ["INDUSTRIAL"],
        "registered_in_district": True,
        "tax_registered_in_district": True,
        "independent_legal_person": True,
    }
    firm.update(data)
    return change(kind="FIRM", data=firm)


def refused(obj) -> BadChange:
    with pytest.raises(BadChange) as info:
        parse_change(obj, TODAY)
    return info.value


def test_a_registration_change_parses():
    parsed = parse_change(change(), TODAY)
    assert (parsed.sequence, parsed.kind, parsed.effective_on, dict(parsed.data)) == (
        7,
        "REGISTRATION",
        dt.date(2026, 2, 27),
        {"in_district": False},
    )


def test_a_bad_check_character_is_refused_naming_the_field():
    bad = CODE[:-1] + ("A" if CODE[-1] != "A" else "B")
    exc = refused(change(credit_code=bad))
    assert exc.field == "credit_code"
    assert "check character" in str(exc)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ("not an object", "change"),
        (change(sequence=0), "sequence"),
        (change(sequence="7"), "sequence"),
        (change(sequence=True), "sequence"),
        (change(kind="MERGER"), "kind"),
        (change(effective_on="2026-02-30"), "effective_on"),
        (change(effective_on="2027-06-01"), "effective_on"),  # more than a year ahead
        (change(extra=1), "extra"),
        (change(data={"in_district": "yes"}), "data.in_district"),
        (change(data={"in_district": True, "when": 1}), "data.when"),
        (change(kind="REVENUE", data={"year": 2025, "revenue_fen": 1.5}), "data.revenue_fen"),
        (change(kind="REVENUE", data={"year": 2025, "revenue_fen": True}), "data.revenue_fen"),
        (change(kind="REVENUE", data={"year": 2025, "revenue_fen": -1}), "data.revenue_fen"),
        (change(kind="REVENUE", data={"year": 2027, "revenue_fen": 1}), "data.year"),
        (
            change(
                kind="RECOGNITION_AWARDED",
                data={"kind": "DCMM_LEVEL", "level": "3", "reference": "R", "awarded_on": "2026-02-28"},
            ),
            "data.awarded_on",
        ),
        (change(kind="RECOGNITION_AWARDED", data={"kind": "NOBEL", "level": "3", "reference": "R"}), "data.kind"),
        (firm_change(kinds=["SPACESHIP"]), "data.kinds[0]"),
        (firm_change(introduced_on="2026-02-28"), "data.introduced_on"),
        (change(kind="PROFILE", data={}), "data"),
    ],
)
def test_malformed_changes_name_the_field(obj, field):
    assert refused(obj).field == field


def test_a_change_dated_ahead_within_a_year_parses_and_is_for_the_caller_to_hold():
    parsed = parse_change(change(effective_on="2026-04-01"), TODAY)
    assert parsed.effective_on > TODAY


def test_fold_needs_the_firm_to_be_known():
    with pytest.raises(BadChange, match="unknown firm"):
        fold(None, parse_change(change(), TODAY))


def test_fold_a_firm_then_changes():
    facts = fold(None, parse_change(firm_change(), TODAY))
    assert facts["registered_in_district"] is True
    assert facts["feed_sequence"] == 7
    moved = fold(facts, parse_change(change(sequence=8), TODAY))
    assert moved["registered_in_district"] is False
    assert moved["tax_registered_in_district"] is True
    assert moved["feed_sequence"] == 8
    assert facts["registered_in_district"] is True, "fold never mutates its input"


def test_recognitions_are_keyed_by_kind_and_reference():
    facts = fold(None, parse_change(firm_change(), TODAY))
    award = {"kind": "DCMM_LEVEL", "level": "2", "reference": "D-1", "awarded_on": "2026-02-01", "issuer": "x"}
    facts = fold(facts, parse_change(change(sequence=8, kind="RECOGNITION_AWARDED", data=award), TODAY))
    facts = fold(
        facts,
        parse_change(change(sequence=9, kind="RECOGNITION_AWARDED", data={**award, "level": "3"}), TODAY),
    )
    assert [(r["kind"], r["level"]) for r in facts["recognitions"]] == [("DCMM_LEVEL", "3")]
    facts = fold(
        facts,
        parse_change(
            change(sequence=10, kind="RECOGNITION_WITHDRAWN", data={"kind": "DCMM_LEVEL", "reference": "D-1"}), TODAY
        ),
    )
    assert facts["recognitions"] == []


def test_revenue_and_identifier_usage_are_keyed_by_year():
    facts = fold(None, parse_change(firm_change(), TODAY))
    for seq, fen in ((8, 100), (9, 250)):
        facts = fold(
            facts, parse_change(change(sequence=seq, kind="REVENUE", data={"year": 2025, "revenue_fen": fen}), TODAY)
        )
    facts = fold(facts, parse_change(change(sequence=10, kind="REVENUE", data={"year": 2024, "revenue_fen": 5}), TODAY))
    assert facts["revenues"] == [{"year": 2024, "revenue_fen": 5}, {"year": 2025, "revenue_fen": 250}]
    usage = {"year": 2025, "registrations": 10, "resolutions": 2000}
    facts = fold(facts, parse_change(change(sequence=11, kind="IDENTIFIER_USAGE", data=usage), TODAY))
    assert facts["identifier_usage"] == [usage]


def test_as_of_never_goes_back():
    facts = {**empty_facts(CODE), "name": "x", "as_of": "2026-02-28", "feed_sequence": 3}
    later = fold(facts, parse_change(change(sequence=4, effective_on="2026-02-01"), TODAY))
    assert later["as_of"] == "2026-02-28"


def test_the_fixture_codes_are_valid():
    assert credit_code.is_valid(CODE)
