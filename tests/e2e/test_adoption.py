"""Adopting a policy version end to end (issue 14): intake, eligibility (the
fictional final in shadow), payout and review as real processes on the real
broker, everything over gRPC. An award goes through review and its public
notice under the draft (PAYABLE, 300万); a pending application's grant is
reserved under the draft (5万). Two demo reviewers adopt the final (one alone
is refused): the pending application's reservation in the ledger becomes
what `subsidy simulate`'s calculator gives under the final (8万), intake shows
both decisions with their versions, and the award past its notice keeps its
300万 (the adoption report says the final would have given 200万). The
reviewers pass no application: eligibility finds the open one and the noticed
one at intake itself (ADR 0021), and refuses a caller who names them.
Eligibility runs as `make run` runs it (``stack.demo_env``): it verifies the
stack's dev tokens, the reviewers call with their own, and a caller naming
itself by metadata is refused; ListVersions then shows the adoption and the
trail. Through subsidy_dev/adoption_story.py, the function `make run` calls."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import grpc
import pytest

from subsidy.contracts.calculator import Simulation
from subsidy.core.versions import load_versions
from subsidy.v1 import (
    intake_pb2,
    intake_pb2_grpc,
    payout_pb2,
    payout_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
)
from subsidy_dev.adoption_story import FINAL, PENDING, show_adoption
from subsidy_dev.demo import settle, submit_all
from subsidy_dev.identities import FINANCE, REVIEWER_1, REVIEWER_2, DemoIdentity
from subsidy_dev.stack import LocalStack, demo_env

pytestmark = pytest.mark.integration

#: A third reviewer, with a token of the stack's identity provider.
REVIEWER_X = DemoIdentity("reviewer-x", "REVIEWER", "第三位审核人员（测试）")

REPO = Path(__file__).resolve().parents[2]
NOTICED = next(
    json.loads(line)
    for line in (REPO / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    if '"SJ-2025-0007"' in line
)


def ledger(stack, firm):
    with grpc.insecure_channel(stack.address("payout")) as channel:
        return payout_pb2_grpc.PayoutServiceStub(channel).GetLedger(
            payout_pb2.GetLedgerRequest(credit_code=firm), timeout=10
        )


def test_two_reviewers_adopt_the_final_and_the_pending_reservation_follows_it(kafka_bootstrap, tmp_path):
    versions = load_versions()
    draft, final = versions.get("songjiang-ii-2022-draft").policy, versions.get(FINAL).policy
    # Eligibility as `make run` runs it: the final in shadow, the dev tokens verified.
    extra = demo_env(tmp_path / "stack")
    assert extra["eligibility"]["SUBSIDY_ELIGIBILITY_SHADOW_VERSION"] == FINAL
    # Its own trail: the session's broker is shared with the other tests' stacks.
    extra["eligibility"]["SUBSIDY_ELIGIBILITY_ADOPTION_TOPIC"] = f"e2e.adoptions.{uuid.uuid4().hex[:8]}"
    with LocalStack(
        tmp_path / "stack",
        kafka_bootstrap=kafka_bootstrap,
        services=("intake", "eligibility", "payout", "review"),
        extra_env=extra,
    ) as stack:
        with grpc.insecure_channel(stack.intake_address) as channel:
            intake = intake_pb2_grpc.IntakeServiceStub(channel)
            assert dict(submit_all(intake, [NOTICED])) == {NOTICED["application_id"]: "accepted"}
            [noticed] = settle(stack, intake, [NOTICED["application_id"]], timeout=180).values()
        assert (noticed.grant.granted_fen, noticed.grant.state) == (300_000_000, payout_pb2.GRANT_STATE_PAYABLE)

        shown = show_adoption(stack)

        # The reviewers named the version only: what is open and what is noticed eligibility found at intake.
        assert not shown.request.open_applications and not shown.request.noticed_awards
        # Four eyes: one reviewer alone is refused; the second adopts.
        assert "four-eyes" in shown.refused_alone
        assert shown.adopted.status == "adopted"
        assert shown.adopted.proposed_by != shown.adopted.approved_by
        # The shadow ran beside the draft on both submissions.
        assert shown.shadow is not None and shown.shadow.applications >= 2
        # The pending application: 5万 under the draft, re-decided under the final.
        before, after = shown.before, shown.after
        assert (before.grant.granted_fen, before.decision.policy_version) == (5_000_000, draft.version)
        simulate = Simulation(final)
        expected = simulate.apply(simulate.decide(PENDING))["granted_fen"]
        assert expected == 8_000_000
        [redecided] = shown.adopted.redecisions
        assert redecided.decision_id == f"{PENDING['application_id']}@{final.version}"
        assert redecided.supersedes_decision_id == before.decision.decision_id
        assert (after.grant.granted_fen, after.grant.decision_id) == (expected, redecided.decision_id)
        assert [(d.decision_id, d.policy_version) for d in after.decisions] == [
            (before.decision.decision_id, draft.version),
            (redecided.decision_id, final.version),
        ]
        # The ledger itself: the reservation replaced (8万 used of the scope, not 13万).
        pending_ledger = ledger(stack, PENDING["firm"]["credit_code"])
        [grant] = [g for g in pending_ledger.grants if g.application_id == PENDING["application_id"]]
        assert (grant.granted_fen, grant.state) == (expected, payout_pb2.GRANT_STATE_RESERVED)
        assert sum(s.used_fen for s in pending_ledger.scopes) == expected
        # Past its notice: kept at 300万; the report says what the final would have given.
        [kept] = [g for g in ledger(stack, NOTICED["firm"]["credit_code"]).grants if g.application_id == "SJ-2025-0007"]
        assert (kept.granted_fen, kept.state) == (300_000_000, payout_pb2.GRANT_STATE_PAYABLE)
        [line] = shown.adopted.report
        assert (line.application_id, line.kept_fen, line.new_max_award_fen) == (
            "SJ-2025-0007",
            300_000_000,
            200_000_000,
        )
        # Eligibility knows the reviewers by their tokens: without one, or naming oneself by metadata, refused.
        with grpc.insecure_channel(stack.eligibility_address) as channel:
            policy = policy_service_pb2_grpc.PolicyServiceStub(channel)
            self_named = (("x-subsidy-subject", "reviewer-x"), ("x-subsidy-role", "REVIEWER"))
            with pytest.raises(grpc.RpcError) as anonymous:
                policy.AdoptVersion(shown.request, metadata=self_named, timeout=30)
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # Any of them reads the state: adopted by the two, in the trail's order.
            state = policy.ListVersions(
                policy_service_pb2.ListVersionsRequest(), metadata=stack.identities.metadata(FINANCE), timeout=30
            )
            [listed] = [v for v in state.versions if v.version_id == FINAL]
            assert (listed.status, listed.register_status) == ("adopted", "candidate")
            assert (listed.adoption.proposed_by, listed.adoption.approved_by) == (
                REVIEWER_1.subject,
                REVIEWER_2.subject,
            )
            # and, once the broker acknowledged its re-decisions, eligibility's record of it
            # (nothing owed: the retry publishes nothing more).
            assert [(e.event, e.subject) for e in state.events] == [
                ("proposed", REVIEWER_1.subject),
                ("refused", REVIEWER_1.subject),
                ("adopted", REVIEWER_2.subject),
                ("redecisions_published", "eligibility"),
            ]
        # A caller who still names the applications is refused, naming the field; nothing recorded.
        with grpc.insecure_channel(stack.eligibility_address) as channel:
            policy = policy_service_pb2_grpc.PolicyServiceStub(channel)
            with grpc.insecure_channel(stack.intake_address) as intake_channel:
                pending = (
                    intake_pb2_grpc.IntakeServiceStub(intake_channel)
                    .GetApplication(intake_pb2.GetApplicationRequest(application_id=PENDING["application_id"]))
                    .application.application
                )
            naming = policy_service_pb2.AdoptVersionRequest(
                version_id=FINAL, policy_version=final.version, open_applications=[pending]
            )
            with pytest.raises(grpc.RpcError) as refused:
                policy.AdoptVersion(naming, metadata=stack.identities.metadata(REVIEWER_X), timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith("open_applications: no longer accepted")
