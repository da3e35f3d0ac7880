"""The payout core: history rules over an in-memory ledger (the fake of the real one)."""

import datetime as dt

from subsidy.core.domain import ELIGIBLE, INELIGIBLE, Decision, Entitlement, LimitKind
from subsidy.core.ledger import InMemoryLedger, plan_grant, schedule


def decision(app_id="A-1", firm="913101173AGYGLUY2P", lines=(), outcome=ELIGIBLE, year=2024, shares=(100,)):
    lines = tuple(lines)
    return Decision(
        decision_id=f"{app_id}@v1",
        application_id=app_id,
        credit_code=firm,
        clause="1.rent",
        outcome=outcome,
        max_award_fen=sum(e.amount_fen for e in lines),
        reasons=(),
        policy_version="v1",
        decision_year=year,
        submitted_on=dt.date(year, 3, 1),
        entitlements=lines,
        tranche_shares_percent=shares,
    )


def capped(amount, cap=500, scope="1.rent"):
    return Entitlement(scope, LimitKind.CUMULATIVE_CAP, amount, cap)


def once(amount, scope="9/level=3"):
    return Entitlement(scope, LimitKind.ONCE, amount)


def test_a_claim_within_its_cap_is_granted_in_full():
    plan = InMemoryLedger().apply(decision(lines=[capped(300)]))
    assert plan.granted_fen == 300 and not plan.reasons


def test_a_claim_beyond_what_is_left_gets_what_is_left_then_nothing():
    ledger = InMemoryLedger()
    ledger.apply(decision("A-1", lines=[capped(300)], year=2023))
    second = ledger.apply(decision("A-2", lines=[capped(300)], year=2024))
    third = ledger.apply(decision("A-3", lines=[capped(300)], year=2025))
    assert second.granted_fen == 200 and second.reasons[0].code == "CAP_PARTIAL"
    assert third.granted_fen == 0 and third.reasons[0].code == "CAP_EXHAUSTED" and third.tranches == ()


def test_caps_are_kept_per_firm():
    ledger = InMemoryLedger()
    ledger.apply(decision("A-1", lines=[capped(500)]))
    other = ledger.apply(decision("A-2", firm="913101173W7WKKHD9B", lines=[capped(500)]))
    assert other.granted_fen == 500


def test_a_one_time_award_is_granted_once_per_scope():
    ledger = InMemoryLedger()
    assert ledger.apply(decision("A-1", lines=[once(20)])).granted_fen == 20
    again = ledger.apply(decision("A-2", lines=[once(20)]))
    assert again.granted_fen == 0 and again.reasons[0].code == "ALREADY_AWARDED"
    assert ledger.apply(decision("A-3", lines=[once(25, scope="9/level=4")])).granted_fen == 25


def test_the_same_application_id_twice_pays_nothing_more():
    ledger = InMemoryLedger()
    ledger.apply(decision("A-1", lines=[capped(100)]))
    replay = ledger.apply(decision("A-1", lines=[capped(100)]))
    assert replay.duplicate and replay.granted_fen == 0 and replay.reasons[0].code == "DUPLICATE_APPLICATION"
    assert ledger.used_fen("913101173AGYGLUY2P", "1.rent") == 100


def test_an_ineligible_application_still_counts_as_applied():
    ledger = InMemoryLedger()
    ledger.apply(decision("A-1", outcome=INELIGIBLE))
    assert ledger.apply(decision("A-1", lines=[capped(100)])).duplicate


def test_planning_writes_nothing_until_recorded():
    ledger = InMemoryLedger()
    plan = plan_grant(decision(lines=[capped(100)]), ledger)
    assert plan.granted_fen == 100 and ledger.usage == {} and not ledger.is_applied("A-1")


def test_forty_thirty_thirty_floors_then_the_last_takes_the_remainder():
    tranches = schedule("A-1", 296296296, 2024, (40, 30, 30))
    assert [(t.year, t.amount_fen) for t in tranches] == [(2024, 118518518), (2025, 88888888), (2026, 88888890)]
    assert [t.tranche_id for t in tranches] == ["A-1/tranche-0", "A-1/tranche-1", "A-1/tranche-2"]


def test_a_tranche_that_rounds_to_nothing_is_left_out():
    assert [(t.year, t.amount_fen) for t in schedule("A-1", 2, 2024, (40, 30, 30))] == [(2026, 2)]


def test_a_partial_grant_is_split_by_the_schedule():
    ledger = InMemoryLedger()
    ledger.apply(decision("A-1", lines=[capped(900, cap=1000, scope="1.purchase")], shares=(40, 30, 30)))
    plan = ledger.apply(decision("A-2", lines=[capped(900, cap=1000, scope="1.purchase")], shares=(40, 30, 30)))
    assert plan.granted_fen == 100
    assert [t.amount_fen for t in plan.tranches] == [40, 30, 30]
