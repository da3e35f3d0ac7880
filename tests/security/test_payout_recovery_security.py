"""Recovery (追回, issue 13) at payout's edge with JWT authentication: only a
REVIEWER opens one, and the recovery names the reviewer's token subject
(kept in the ledger, never published); FINANCE, OPERATOR, the firm and the
portal are refused and nothing is written; FINANCE and OPERATOR read
recoveries through GetLedger (paid, recovered, net)."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from security.conftest import ENTERPRISE_CODE
from subsidy.core.domain import Decision, Entitlement, LimitKind, Reason
from subsidy.services.payout import handlers
from subsidy.services.payout.model import NoticeLine, Payment
from subsidy.v1 import payout_pb2, payout_pb2_grpc

AT = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def _md(signers, role, sub, code=""):
    return (("authorization", f"Bearer {signers['rsa'].token(role, code, sub=sub)}"),)


def _paid_grant(store, app_id):
    """A grant of 1000 fen for the enterprise's firm, payable, its one tranche paid."""
    decision = Decision(
        decision_id=f"{app_id}@v",
        application_id=app_id,
        credit_code=ENTERPRISE_CODE,
        clause="1.rent",
        outcome="ELIGIBLE",
        max_award_fen=1000,
        reasons=(Reason("AWARD_BASIS", "1", "依据第1条"),),
        policy_version="v",
        decision_year=2025,
        submitted_on=dt.date(2025, 2, 20),
        entitlements=(Entitlement("1.rent", LimitKind.CUMULATIVE_CAP, 1000, 500_000_000),),
        tranche_shares_percent=(100,),
    )
    handlers.apply_decision(store, decision, "ab" * 16, AT)
    line = NoticeLine(
        "payable",
        f"payable:{decision.decision_id}",
        decision.decision_id,
        app_id,
        ENTERPRISE_CODE,
        "N-1",
        dt.date(2025, 2, 20),
    )
    handlers.apply_notice_line(store, line, AT)
    handlers.apply_payment(
        store, Payment(f"P-{app_id}", f"{app_id}/tranche-0", ENTERPRISE_CODE, 1000, "2025-03-01"), AT
    )


@pytest.mark.parametrize(
    ("role", "code"), [("FINANCE", ""), ("OPERATOR", ""), ("ENTERPRISE", ENTERPRISE_CODE), ("PORTAL", "")]
)
def test_only_a_reviewer_opens_a_recovery(jwt_servers, signers, role, code):
    app_id = f"SEC-RECOVERY-{role}"
    _paid_grant(jwt_servers.payout_store, app_id)
    request = payout_pb2.OpenRecoveryRequest(application_id=app_id, amount_fen=100, reason="虚报")
    with grpc.insecure_channel(jwt_servers.address("payout")) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.OpenRecovery(request, metadata=_md(signers, role, "someone", code), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        ledger = handlers.ledger(jwt_servers.payout_store, ENTERPRISE_CODE)
        assert not any(g.recoveries for g in ledger.grants if g.application_id == app_id)

        opened = stub.OpenRecovery(request, metadata=_md(signers, "REVIEWER", "reviewer-li"), timeout=10)
        assert opened.created and opened.recovery.amount_fen == 100
        ledger = handlers.ledger(jwt_servers.payout_store, ENTERPRISE_CODE)
        [recovery] = next(g for g in ledger.grants if g.application_id == app_id).recoveries
        assert recovery.opened_by == "reviewer-li"
        # The subject is the ledger's: neither the answer nor the event published names the reviewer.
        assert b"reviewer-li" not in opened.recovery.SerializeToString()
        with jwt_servers.payout_store.db.transaction() as tx:
            [(value,)] = tx.all(
                "SELECT value FROM payout_outbox WHERE event_id = ?", (f"recovery:{opened.recovery.recovery_id}",)
            )
        assert b"reviewer-li" not in bytes(value)


@pytest.mark.parametrize("role", ["FINANCE", "OPERATOR", "REVIEWER"])
def test_finance_and_operators_read_paid_recovered_and_net(jwt_servers, signers, role):
    app_id = f"SEC-RECOVERY-READ-{role}"
    _paid_grant(jwt_servers.payout_store, app_id)
    with grpc.insecure_channel(jwt_servers.address("payout")) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        stub.OpenRecovery(
            payout_pb2.OpenRecoveryRequest(application_id=app_id, amount_fen=400, reason="虚报"),
            metadata=_md(signers, "REVIEWER", "reviewer-li"),
            timeout=10,
        )
        ledger = stub.GetLedger(
            payout_pb2.GetLedgerRequest(credit_code=ENTERPRISE_CODE), metadata=_md(signers, role, "reader"), timeout=10
        )
    grant = next(g for g in ledger.grants if g.application_id == app_id)
    assert (grant.paid_fen, grant.recovered_fen, grant.net_fen) == (1000, 0, 1000)
    assert [r.amount_fen for r in grant.recoveries] == [400]
