"""`make run`'s policy-version story (issue 14, item 6; docs/policy-versions.md):
the candidate (the fictional final) runs in shadow beside the draft, the
running difference is shown, two demo reviewers adopt it over gRPC (one alone
is refused), and one pending application -- its grant RESERVED, not yet on a
notice -- is re-decided: old and new amounts, decision ids and versions, as
the ledger and intake now show them. Awards past their notice keep their
amounts; the adoption report lists what the final would have given them.
The reviewers name only the version: eligibility itself finds, at intake, the
applications not yet past their notice and the awards past it (ADR 0021).

``show_adoption(stack)`` is the one function the demo calls, after the demo
applications are settled (past their notice). The stack must run intake,
eligibility (told intake's address: subsidy_dev/stack.py) and payout;
eligibility verifying the stack's dev tokens, as `make run` runs it
(``stack.demo_env``): the two demo reviewers call with their own tokens
(``stack.identities``), and eligibility knows each by the token's subject,
as it knows a reviewer the console signed in; and with
``SUBSIDY_ELIGIBILITY_SHADOW_VERSION=fictional-final-2023`` for the shadow
part (without it the story says so and goes on). A second
`make run` on the same var dir finds the version adopted and shows the
application as it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

FINAL = "fictional-final-2023"

#: The pending application of the story: 上海洞泾精工 moves more of its systems to
#: a listed cloud provider (clause 10.cloud). The draft caps the clause at 5万 a
#: firm, the final at 8万: on a fresh ledger 5万 then 8万; in `make run`, where
#: the firm already holds 1.8万 of it (SJ-2025-0002), 3.2万 then 6.2万.
PENDING: dict[str, Any] = {
    "application_id": "SJ-2025-9101",
    "submitted_on": "2025-09-15",
    "firm": {
        "credit_code": "913101176Q60N7RY4N",
        "name": "上海洞泾精工五金制品有限公司",
        "kinds": ["SME"],
        "registered_in_district": True,
        "tax_registered_in_district": True,
        "independent_legal_person": True,
    },
    "cloud_adoption": {
        "provider_credit_code": "91310117H2LTFY5G3W",
        "provider_listed_in_directory": True,
        "service_year": 2025,
        "spend_fen": 12_000_000,
    },
}


@dataclass
class AdoptionShown:
    """What the story did, for the tests: the adoption's answers and the pending
    application before and after."""

    adopted: Any = None  # AdoptVersionResponse of the approval (None when adopted before)
    refused_alone: str = ""  # the details of the refusal of one reviewer alone
    shadow: Any = None  # GetShadowDifferenceResponse, or None without shadow
    before: Any = None  # the pending application's ApplicationStatus before the adoption
    after: Any = None  # ... and after the ledger applied the re-decision
    request: Any = None  # the AdoptVersionRequest both reviewers sent: the version, no applications


def _yuan(fen: int) -> str:
    from subsidy.cli.report import yuan_column

    return yuan_column(fen).strip() + " 元"


def show_adoption(stack: Any, timeout: float = 180.0) -> AdoptionShown:
    import grpc

    from subsidy.core.versions import load_versions
    from subsidy.v1 import intake_pb2, intake_pb2_grpc, policy_service_pb2, policy_service_pb2_grpc
    from subsidy_dev.demo import submit_all, wait_ledger_acted
    from subsidy_dev.identities import REVIEWER_1, REVIEWER_2

    shown = AdoptionShown()
    # The reviewers' own tokens, signed by the stack's identity provider (eligibility verifies them).
    as_first, as_second = stack.identities.metadata(REVIEWER_1), stack.identities.metadata(REVIEWER_2)
    final_version = load_versions().get(FINAL).policy.version
    print(f"\nPolicy versions (issue 14): adopting the fictional final {final_version} ...", flush=True)
    with (
        grpc.insecure_channel(stack.intake_address) as intake_channel,
        grpc.insecure_channel(stack.eligibility_address) as policy_channel,
    ):
        intake = intake_pb2_grpc.IntakeServiceStub(intake_channel)
        policy = policy_service_pb2_grpc.PolicyServiceStub(policy_channel)

        # 1. A pending application: decided under the draft, its grant reserved, not yet noticed.
        app_id = PENDING["application_id"]
        submit_all(intake, [PENDING])
        shown.before = wait_ledger_acted(intake, [app_id], timeout)[app_id]
        print(
            f"  pending: {app_id} ({PENDING['firm']['name']}, clause 10.cloud) reserved "
            f"{_yuan(shown.before.grant.granted_fen)} under {shown.before.decision.policy_version}"
        )

        # 2. The shadow difference so far (the candidate beside the draft, never paid).
        try:
            shown.shadow = policy.GetShadowDifference(
                policy_service_pb2.GetShadowDifferenceRequest(), metadata=as_first, timeout=10
            )
        except grpc.RpcError as exc:
            print(f"  shadow evaluation is not running here ({exc.details()})")
        else:
            s = shown.shadow
            print(f"  shadow: {s.applications} applications decided under both since {s.since}")
            print("    budget year        adopted       shadow   difference")
            for y in s.years:
                print(
                    f"    {y.year:<11} {_yuan(y.adopted_fen):>14} {_yuan(y.shadow_fen):>12} "
                    f"{_yuan(y.difference_fen):>12}"
                )
            differ = [c.clause for c in s.clauses if c.differences]
            print(f"    clauses decided differently: {', '.join(differ) or 'none'} ({s.basis.split(';')[0]})")

        # 3. The request names the version and the files reviewed, nothing else:
        # eligibility finds what is open and what is past its notice at intake.
        request = policy_service_pb2.AdoptVersionRequest(
            version_id=FINAL, policy_version=final_version, reason="区科委审定虚构定稿（演示）"
        )
        shown.request = request

        # 4. Four eyes: the first reviewer proposes; alone they cannot adopt; the second adopts.
        try:
            first = policy.AdoptVersion(request, metadata=as_first, timeout=30)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or "was adopted at" not in (exc.details() or ""):
                raise
            print(f"  already adopted: {exc.details()}")
        else:
            print(f"  {REVIEWER_1.name} proposes the adoption: {first.status}")
            try:
                policy.AdoptVersion(request, metadata=as_first, timeout=30)
            except grpc.RpcError as exc:
                shown.refused_alone = exc.details() or ""
                print(f"  {REVIEWER_1.name} again, alone: refused ({exc.code().name}: {shown.refused_alone})")
            shown.adopted = policy.AdoptVersion(request, metadata=as_second, timeout=60)
            a = shown.adopted
            print(
                f"  {REVIEWER_2.name} approves: {a.status} at {a.adopted_at}, effective from {a.effective_from}; "
                f"{len(a.redecisions)} open application(s) found at intake re-decided and published"
            )
            for line in a.report:
                print(
                    f"  past its notice, kept: {line.application_id} clause {line.clause} keeps "
                    f"{_yuan(line.kept_fen)}; the final would have given {_yuan(line.new_max_award_fen)} "
                    f"({line.new_outcome})"
                )

        # 5. The pending application, re-decided: the ledger's grant and intake's history.
        deadline = time.monotonic() + timeout
        after = shown.before
        while time.monotonic() < deadline:
            after = intake.GetApplication(
                intake_pb2.GetApplicationRequest(application_id=app_id), timeout=10
            ).application
            if after.grant.decision_id.endswith(final_version):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(
                f"{app_id}: the ledger did not apply the re-decision under {final_version} in {timeout:.0f}s"
            )
        shown.after = after
        print(f"  re-decided: {app_id}")
        print(f"    before: {_yuan(shown.before.grant.granted_fen)}  decision {shown.before.decision.decision_id}")
        print(f"    after:  {_yuan(after.grant.granted_fen)}  decision {after.grant.decision_id}")
        print("    decisions (GetApplication):")
        for d in after.decisions:
            supersedes = f", supersedes {d.supersedes_decision_id}" if d.supersedes_decision_id else ""
            print(
                f"      {d.decision_id}: {d.outcome} {_yuan(d.max_award_fen)} (version {d.policy_version}{supersedes})"
            )
    return shown
