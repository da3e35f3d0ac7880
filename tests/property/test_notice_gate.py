"""Invariants of the notice gate (ADR 0013) over generated histories: any
mix of decisions (some held for review, replays, one-time and capped
scopes) and public-notice lines (payable, withdrawn, replayed, impossible)
in any order, applied by payout's use cases over the in-memory unit of work.

Whatever happens:
- a tranche exists only for a PAYABLE grant, and a PAYABLE grant's tranches
  add up to its grant, in the budget years of its decision, none due before
  its payable day;
- the usage of every scope is what its RESERVED and PAYABLE grants hold
  (WITHDRAWN ones hold nothing), and never more than a cap;
- a line that is refused (Rejected) changes nothing, and a replay of
  anything changes nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from subsidy.core.domain import Entitlement, LimitKind
from subsidy.services.payout import handlers
from subsidy.services.payout.model import GrantState, Rejected

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from unit.payout.fakes import FakeUnitOfWork
from unit.payout.support import FIRM, OTHER_FIRM, RENT_CAP, line, rent_decision

AT = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
ONCE_CAP = 1_000_000


def _decision(app: int, firm: str, amount: int, once: bool, held: bool, shares: tuple[int, ...]):
    d = rent_decision(f"A-{app}", amount, firm=firm, shares=shares)
    if once:
        d = dataclasses.replace(d, entitlements=(Entitlement("7.once", LimitKind.ONCE, ONCE_CAP, ONCE_CAP),))
    if held:
        d = dataclasses.replace(d, review_required=True, review_reasons=("ABOVE_FOUR_EYES_THRESHOLD",))
    return d


DECISIONS = st.builds(
    _decision,
    app=st.integers(0, 7),
    firm=st.sampled_from([FIRM, OTHER_FIRM]),
    amount=st.integers(1, 300_000_000),
    once=st.booleans(),
    held=st.booleans(),
    shares=st.sampled_from([(100,), (40, 30, 30), (50, 50), (34, 33, 33)]),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("decide"), DECISIONS),
        # A line of one of the decisions made so far (by its position), or of any decision at all.
        st.tuples(
            st.just("line"),
            st.one_of(st.integers(0, 29), DECISIONS),
            st.sampled_from(["payable", "withdrawn"]),
            st.integers(0, 400),
        ),
    ),
    max_size=30,
)


def _tables(uow):
    return copy.deepcopy((uow.inbox.rows, uow.grants.rows, uow.tranches.rows, uow.usage.rows, uow.outbox.event_ids))


@given(STEPS)
def test_tranches_only_for_payable_grants_and_usage_is_what_live_grants_hold(steps):
    uow = FakeUnitOfWork()
    decided: list = []
    for step in steps:
        before = _tables(uow)
        if step[0] == "decide":
            handlers.apply_decision(uow, step[1], "ab" * 16, AT)
            assert handlers.apply_decision(uow, step[1], "cd" * 16, AT).result == "replayed"
            decided.append(step[1])
        else:
            _, which, kind, days = step
            if isinstance(which, int):
                if not decided:
                    continue
                decision = decided[which % len(decided)]
            else:
                decision = which
            notice_line = line(decision, kind, (decision.submitted_on + dt.timedelta(days=days)).isoformat())
            try:
                result = handlers.apply_notice_line(uow, notice_line, AT)[0]
            except Rejected:
                assert _tables(uow) == before, "a refused line changed nothing"
                continue
            after = _tables(uow)
            assert handlers.apply_notice_line(uow, notice_line, AT)[0] == "repeat"
            assert _tables(uow) == after, "a repeated line changed nothing"
            if result == "repeat":
                assert after == before

    held = {d for d, (_, result) in uow.inbox.rows.items() if result == "held_for_review"}
    assert not any(g.decision_id in held for g in uow.grants.rows.values()), "a held decision granted nothing"
    for grant in uow.grants.rows.values():
        tranches = [t for t in uow.tranches.rows.values() if t.application_id == grant.application_id]
        if grant.state != GrantState.PAYABLE:
            assert tranches == [], f"{grant.application_id} is {grant.state} and has tranches"
            continue
        assert sum(t.amount_fen for t in tranches) == grant.granted_fen
        assert sorted(t.budget_year for t in tranches) == [
            grant.decision_year + t.number for t in sorted(tranches, key=lambda t: t.number)
        ]
        assert all(t.due_on >= grant.payable_on for t in tranches)
    for (firm, scope), usage in uow.usage.rows.items():
        held_by_live = sum(
            fen
            for g in uow.grants.rows.values()
            if g.credit_code == firm and g.state != GrantState.WITHDRAWN
            for s, fen in g.uses
            if s == scope
        )
        assert usage.used_fen == held_by_live, (firm, scope)
        assert usage.used_fen <= (ONCE_CAP if scope == "7.once" else RENT_CAP)
