"""The cap reconciliation's pure core (subsidy/services/payout/reconcile.py):
what a grant holds per scope, and the comparison with the usage rows."""

from __future__ import annotations

import json

from subsidy.services.payout.reconcile import GrantUses, Mismatch, UsageRecord, held_by, reconcile

A, B = "91310117MA1J3X0A3U", "913101170000000009"


def grant(firm=A, uses=(("1.rent", 100),), state="PAYABLE", outcome="ELIGIBLE", released=0, raw=None):
    column = raw if raw is not None else json.dumps([list(u) for u in uses])
    return GrantUses(firm, outcome, state, column, released)


def test_what_a_grant_holds():
    assert held_by(grant(uses=(("s", 70), ("t", 30)))) == {"s": 70, "t": 30}
    assert held_by(grant(state="WITHDRAWN")) == {}
    assert held_by(grant(outcome="INELIGIBLE")) == {}
    # A void award's freed room comes off its uses in order: 80 of s(70)+t(30) leaves t 20.
    assert held_by(grant(uses=(("s", 70), ("t", 30)), released=80)) == {"s": 0, "t": 20}
    assert held_by(grant(state=None)) == {"1.rent": 100}  # NULL state: PAYABLE (migration 0003)
    assert held_by(grant(raw=None, uses=())) == {}
    assert held_by(GrantUses(A, "ELIGIBLE", "PAYABLE", None, 0)) is None


def test_equal_usage_is_clean_and_each_difference_is_named():
    grants = [grant(uses=(("1.rent", 100),)), grant(uses=(("1.rent", 50),)), grant(firm=B, uses=(("x", 5),))]
    usage = [UsageRecord(A, "1.rent", "cumulative_cap", 500, 150), UsageRecord(B, "x", "once", 5, 5)]
    result = reconcile(grants, usage)
    assert (result.mismatches, result.firms, result.scopes) == ((), 2, 2)

    usage[0] = UsageRecord(A, "1.rent", "cumulative_cap", 120, 151)
    assert reconcile(grants, usage).mismatches == (
        Mismatch(A, "1.rent", "usage", 151, 150, 120),
        Mismatch(A, "1.rent", "over_cap", 151, 150, 120),
    )
    # A usage row no grant explains, and a grant with no usage row.
    result = reconcile(grants, [UsageRecord(B, "x", "once", 5, 5), UsageRecord(B, "y", "once", 9, 9)])
    assert sorted((m.credit_code, m.scope, m.recorded_fen, m.recomputed_fen) for m in result.mismatches) == sorted(
        [(A, "1.rent", 0, 150), (B, "y", 9, 0)]
    )


def test_a_firm_with_a_grant_older_than_its_uses_is_unverifiable_not_a_mismatch():
    grants = [GrantUses(A, "ELIGIBLE", "PAYABLE", None, 0), grant(uses=(("1.rent", 10),))]
    result = reconcile(grants, [UsageRecord(A, "1.rent", "cumulative_cap", 500, 999)])
    assert result.mismatches == () and result.unverifiable_firms == (A,)
