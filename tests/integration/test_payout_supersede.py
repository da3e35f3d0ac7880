"""A superseding decision (a policy version's adoption, issue 14) through the
payout service on the harness's real Kafka broker, on SQLite and PostgreSQL:
the RESERVED grant takes the new amount (cap-checked, over the firm's history
without the old grant), GrantAdjusted says what was released or topped up,
the same superseding decision twice changes nothing, a PAYABLE grant keeps
its amount, and the notice line of the superseded decision is dead-lettered
naming the decision that now holds the grant."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from subsidy.contracts import topics
from subsidy.platform.clock import FixedClock
from subsidy.v1 import payout_pb2

from .test_payout_support import (
    RENT_CAP,
    Producer,
    RunningPayout,
    database_url,
    dead_letters,
    granted_and_payable,
    new_firm,
    new_id,
    payout_events,
    rent_decision,
    settings,
    wait_for,
)

pytestmark = pytest.mark.integration

S = payout_pb2


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def payout(request, kafka_bootstrap, tmp_path_factory):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    url = database_url(request.param, tmp_path_factory.mktemp("payout-supersede"), postgres_url)
    with RunningPayout(settings(kafka_bootstrap, url), FixedClock(dt.date(2025, 3, 1))) as svc:
        yield svc


@pytest.fixture(scope="module")
def producer(kafka_bootstrap):
    p = Producer(kafka_bootstrap)
    yield p
    p.close()


def superseding(old, amount_fen, version="it+final"):
    new = rent_decision(old.application_id, old.credit_code, amount_fen, policy_version=version)
    return dataclasses.replace(new, supersedes_decision_id=old.decision_id)


def grant_of(svc, firm, app, decision_id):
    def ready():
        ledger = svc.stub.GetLedger(S.GetLedgerRequest(credit_code=firm), timeout=5)
        grant = next((g for g in ledger.grants if g.application_id == app), None)
        return ledger if grant is not None and grant.decision_id == decision_id else None

    return wait_for(ready, timeout=30)


def test_the_superseding_decision_releases_or_tops_up_the_reservation_once(payout, producer, kafka_bootstrap):
    firm, other, app = new_firm(), new_id(), new_id()
    producer.decision(rent_decision(other, firm, 300_000_000))  # 300万 of the 500万 cap elsewhere
    old = rent_decision(app, firm, 100_000_000)
    producer.decision(old)
    payout_events(kafka_bootstrap, firm, [f"grant:{other}", f"grant:{app}"])
    # Lower: 40万 released.
    lower = superseding(old, 60_000_000)
    producer.decision(lower)
    [adjusted] = [
        e[2].grant_adjusted
        for e in payout_events(kafka_bootstrap, firm, [f"adjusted:{lower.decision_id}"])
        if e[0] == f"adjusted:{lower.decision_id}"
    ]
    assert (adjusted.previous_decision_id, adjusted.decision_id) == (old.decision_id, lower.decision_id)
    assert (adjusted.previous_granted_fen, adjusted.granted_fen) == (100_000_000, 60_000_000)
    assert (adjusted.released_fen, adjusted.topped_up_fen) == (40_000_000, 0)
    assert (adjusted.previous_policy_version, adjusted.policy_version) == ("it+payout", "it+final")
    ledger = grant_of(payout, firm, app, lower.decision_id)
    assert ledger.scopes[0].used_fen == 360_000_000
    # Higher, beyond the cap room the other grant leaves: topped up to the cap only.
    higher = dataclasses.replace(superseding(lower, 250_000_000, "it+final2"), supersedes_decision_id=lower.decision_id)
    producer.decision(higher)
    producer.decision(higher)  # the same superseding decision twice
    marker = new_id()  # once its grant is out, both copies were consumed
    producer.decision(rent_decision(marker, firm, 1000))
    events = payout_events(kafka_bootstrap, firm, [f"adjusted:{higher.decision_id}", f"grant:{marker}"], settle=1.0)
    adjustments = [e[2].grant_adjusted for e in events if e[0] == f"adjusted:{higher.decision_id}"]
    assert len(adjustments) == 1
    assert (adjustments[0].granted_fen, adjustments[0].topped_up_fen) == (RENT_CAP - 300_000_000, 140_000_000)
    assert [r.code for r in adjustments[0].reasons][-1:] == ["CAP_PARTIAL"]
    ledger = grant_of(payout, firm, app, higher.decision_id)
    grant = next(g for g in ledger.grants if g.application_id == app)
    assert (grant.granted_fen, grant.decision_id, grant.state) == (
        RENT_CAP - 300_000_000,
        f"{app}@it+final2",
        S.GRANT_STATE_RESERVED,
    )
    assert ledger.scopes[0].used_fen == RENT_CAP  # the marker's 1000 fen found no room left
    # The notice line of a superseded decision names the one that holds the grant now.
    producer.notice_line(lower)
    [letter] = dead_letters(kafka_bootstrap, topics.NOTICES_DLQ.name, firm.encode())
    assert higher.decision_id in letter.error and "superseded" in letter.error


def test_a_payable_grant_keeps_its_amount(payout, producer, kafka_bootstrap):
    firm, app = new_firm(), new_id()
    old = rent_decision(app, firm, 100_000_000)
    granted_and_payable(producer, kafka_bootstrap, old, wait_for_tranches=3)
    new = superseding(old, 60_000_000)
    producer.decision(new)
    marker = new_id()
    producer.decision(rent_decision(marker, firm, 1000))
    events = payout_events(kafka_bootstrap, firm, [f"grant:{marker}"], settle=1.0)
    assert not [e for e in events if e[0].startswith("adjusted:")]
    ledger = grant_of(payout, firm, app, old.decision_id)
    grant = next(g for g in ledger.grants if g.application_id == app)
    assert (grant.granted_fen, grant.state) == (100_000_000, S.GRANT_STATE_PAYABLE)
    assert sum(t.amount_fen for t in grant.tranches) == 100_000_000
