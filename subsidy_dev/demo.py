"""The demo: submit applications to a running intake over gRPC, follow them
until decided (and, with the payout service running, until the ledger has
recorded the grant); with the review service, the people's part
(subsidy_dev/review_story.py: review, four-eyes, the public notice, an
objection, the clock moved past the period) until the grants are payable and
their tranches scheduled; then show the result beside what the calculator
computes, the policy versions' difference, and a firm that leaves the district
(subsidy_dev/move_out_story.py: its tranches held, then cancelled)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

DECIDE_TIMEOUT_SECONDS = 120
#: 免申即享 in the demo (docs/proposals.md): the data platform's test double
#: certifies this software firm DCMM level 3; it has not applied for it.
PROPOSAL_FIRM = "913101170BCJ72CC83"
PROPOSAL_REFERENCE = "DCMM-2026-SH-0903"


def _stubs(address: str):
    import grpc

    from subsidy.v1 import intake_pb2_grpc

    channel = grpc.insecure_channel(address)
    return channel, intake_pb2_grpc.IntakeServiceStub(channel)


def submit_all(stub: Any, applications: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Submit each application; returns (application id, what happened)."""
    import grpc
    from google.protobuf import json_format

    from subsidy.v1 import application_pb2, intake_pb2

    results = []
    for app in applications:
        message = json_format.ParseDict(app, application_pb2.Application())
        try:
            reply = stub.SubmitApplication(intake_pb2.SubmitApplicationRequest(application=message), timeout=30)
            results.append((app["application_id"], "duplicate" if reply.duplicate else "accepted"))
        except grpc.RpcError as exc:
            results.append((app["application_id"], f"{exc.code().name}: {exc.details()}"))
    return results


def wait_for_state(
    stub: Any,
    application_ids: list[str],
    states: set[int],
    timeout: float = DECIDE_TIMEOUT_SECONDS,
    label: str = "decided",
) -> dict[str, Any]:
    """Poll GetApplication until every id is in one of `states`; returns id -> ApplicationStatus."""
    from subsidy.v1 import intake_pb2

    pending = list(dict.fromkeys(application_ids))
    done: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    total = len(pending)
    while pending and time.monotonic() < deadline:
        still = []
        for app_id in pending:
            status = stub.GetApplication(
                intake_pb2.GetApplicationRequest(application_id=app_id), timeout=10
            ).application
            if status.state in states:
                done[app_id] = status
            else:
                still.append(app_id)
        pending = still
        print(f"\r  {label} {len(done)}/{total}", end="", flush=True)
        if pending:
            time.sleep(0.5)
    print(flush=True)
    if pending:
        raise TimeoutError(f"not {label} after {timeout:.0f}s: {', '.join(pending)}")
    return done


def wait_decided(stub: Any, application_ids: list[str], timeout: float = DECIDE_TIMEOUT_SECONDS) -> dict[str, Any]:
    from subsidy.v1 import intake_pb2

    return wait_for_state(
        stub, application_ids, {intake_pb2.APPLICATION_STATE_DECIDED} | ledger_acted_states(), timeout
    )


def ledger_acted_states() -> set[int]:
    """The ledger has done what it does without people: a grant recorded
    (RESERVED, or 0), or the decision held for review."""
    from subsidy.v1 import intake_pb2

    return {
        intake_pb2.APPLICATION_STATE_RECORDED,
        intake_pb2.APPLICATION_STATE_UNDER_REVIEW,
        intake_pb2.APPLICATION_STATE_RESERVED,
        intake_pb2.APPLICATION_STATE_PAYABLE,
        intake_pb2.APPLICATION_STATE_WITHDRAWN,
    }


def wait_ledger_acted(stub: Any, application_ids: list[str], timeout: float = DECIDE_TIMEOUT_SECONDS) -> dict[str, Any]:
    return wait_for_state(stub, application_ids, ledger_acted_states(), timeout, "taken up by the ledger")


def wait_recorded(stub: Any, application_ids: list[str], timeout: float = DECIDE_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Until the payout ledger's grant is final for each (0, PAYABLE with its
    tranches, or WITHDRAWN): after review and the public notice."""
    from subsidy.v1 import intake_pb2

    final = {
        intake_pb2.APPLICATION_STATE_RECORDED,
        intake_pb2.APPLICATION_STATE_PAYABLE,
        intake_pb2.APPLICATION_STATE_WITHDRAWN,
    }

    def complete(ids: list[str]) -> dict[str, Any]:
        return wait_for_state(stub, ids, final, timeout, "payable or final in the ledger")

    recorded = complete(application_ids)
    # The grant event comes first; wait until every tranche it announces arrived too.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        short = [i for i, s in recorded.items() if len(s.grant.tranches) < _tranche_count(s)]
        if not short:
            break
        time.sleep(0.3)
        recorded.update({i: s for i, s in _get(stub, short).items()})
    return recorded


def settle(
    stack: Any, stub: Any, application_ids: list[str], timeout: float = DECIDE_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """Until every application's grant is final: through the people's part
    when the review service runs (what `make run` shows), then the ledger."""
    statuses = wait_ledger_acted(stub, application_ids, timeout)
    if "review" in stack.services:
        _people(stack, stub, statuses)
    return wait_recorded(stub, application_ids, timeout)


def _tranche_count(status: Any) -> int:
    from subsidy.v1 import intake_pb2

    if status.grant.granted_fen == 0 or status.state == intake_pb2.APPLICATION_STATE_WITHDRAWN:
        return 0
    return max(1, len(status.decision.tranche_shares_percent))


def _get(stub: Any, ids: list[str]) -> dict[str, Any]:
    from subsidy.v1 import intake_pb2

    return {
        i: stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=i), timeout=10).application for i in ids
    }


def run_demo(stack: Any, applications_path: Path) -> None:
    from subsidy.cli.report import OUTCOME_NAMES, _render, yuan_column
    from subsidy.contracts.calculator import Simulation
    from subsidy.core.policy import load_policy

    applications = [
        json.loads(line) for line in applications_path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    with_payout = "payout" in stack.services
    channel, stub = _stubs(stack.intake_address)
    with channel:
        print(f"Submitting {len(applications)} applications over gRPC to intake ...", flush=True)
        submitted = submit_all(stub, applications)
        refused = [(i, r) for i, r in submitted if r not in ("accepted", "duplicate")]
        for app_id, why in refused:
            print(f"  {app_id}: refused: {why}")
        ok_ids = list(dict.fromkeys(i for i, r in submitted if r in ("accepted", "duplicate")))
        print(
            f"  accepted {sum(r == 'accepted' for _, r in submitted)}, "
            f"duplicates {sum(r == 'duplicate' for _, r in submitted)}, refused {len(refused)}"
        )
        proposed = propose_and_confirm(stack, channel)
        if proposed is not None:
            ok_ids.append(proposed[0])
            applications.append(proposed[1])
        print(
            "Waiting for the eligibility decisions (intake -> Kafka -> eligibility -> Kafka -> intake) ...", flush=True
        )
        statuses = wait_decided(stub, ok_ids)
        reviewed: dict[str, Any] = {}
        if with_payout:
            print("Waiting for the payout ledger (decisions -> payout -> subsidy.payouts.v1 -> intake) ...", flush=True)
            statuses = wait_ledger_acted(stub, ok_ids)
            if "review" in stack.services:
                reviewed = _people(stack, stub, statuses)
            statuses = wait_recorded(stub, ok_ids)

    simulation = Simulation(load_policy())
    expected: dict[str, dict] = {}
    for app in applications:
        expected.setdefault(app["application_id"], simulation.apply(simulation.decide(app)))

    rows, by_year, disagreements = [], {}, []
    for app_id in ok_ids:
        status = statuses[app_id]
        d, g = status.decision, status.grant
        reasons = [r.code for r in list(d.reasons) + list(g.reasons) if r.code != "AWARD_BASIS"]
        row = [
            app_id,
            status.application.firm.name,
            d.clause,
            f"{d.outcome} {OUTCOME_NAMES.get(d.outcome, '')}",
            yuan_column(d.max_award_fen),
        ]
        want = expected[app_id]
        if d.HasField("review"):
            row[3] += f" (审核: {' + '.join(d.review.reviewers)})"
        got = (d.clause, d.outcome, d.max_award_fen)
        if with_payout:
            tranches = sorted(g.tranches, key=lambda t: t.number)
            row += [
                yuan_column(g.granted_fen),
                "; ".join(f"{t.budget_year}: {yuan_column(t.amount_fen)}" for t in tranches),
            ]
            for t in tranches:
                by_year[t.budget_year] = by_year.get(t.budget_year, 0) + t.amount_fen
            got += (g.granted_fen, [(t.budget_year, t.amount_fen) for t in tranches])
            want_tuple = (
                want["clause"],
                want["outcome"],
                want["max_award_fen"],
                want["granted_fen"],
                [(t["year"], t["amount_fen"]) for t in want["tranches"]],
            )
        else:
            want_tuple = (want["clause"], want["outcome"], want["max_award_fen"])
        if app_id in reviewed and want["outcome"] == "NEEDS_REVIEW":
            pass  # the text sets no amount: people did (clauses 13, 15); nothing to compare with
        elif got != want_tuple:
            disagreements.append(app_id)
        rows.append(row + [", ".join(dict.fromkeys(reasons))])
    header = ["application", "firm", "clause", "outcome", "ceiling 元"]
    header += ["granted 元", "tranches (budget year: 元)"] if with_payout else []
    print()
    print("\n".join(_render(header + ["reasons"], rows, right={4, 5} if with_payout else {4})))
    if with_payout:
        print("\nDistrict outlay per budget year (区财政支出), from the payout ledger:")
        year_rows = [[str(y), yuan_column(by_year[y])] for y in sorted(by_year)]
        year_rows.append(["total 合计", yuan_column(sum(by_year.values()))])
        print("\n".join(_render(["budget year", "元"], year_rows, right={1})))
    verdict = "agrees with" if not disagreements else f"DISAGREES on {', '.join(disagreements)} with"
    manual = sorted(i for i in reviewed if expected[i]["outcome"] == "NEEDS_REVIEW")
    aside = f" (reviewers set the amounts of {', '.join(manual)}, which the text leaves to them)" if manual else ""
    print(f"\nThe pipeline {verdict} `subsidy simulate` on the same applications{aside}.")
    _show_policy_diff(stack, applications_path)
    if with_payout and "eligibility" in stack.services:
        from subsidy_dev import adoption_story

        adoption_story.show_adoption(stack)
    if with_payout:
        from subsidy_dev import move_out_story

        if proposed is not None:
            print(f"\n区财政 pays the 免申即享 award {proposed[0]}: a PaymentConfirmed on subsidy.payments.v1 ...")
            for t in move_out_story.finance_pays(stack, proposed[0], PROPOSAL_FIRM):
                print(f"  {t.tranche_id} ({t.budget_year}): {yuan_column(t.amount_fen).strip()} 元 {t.status}")
        move_out_story.play(stack)
    if "notify" in stack.services:
        _show_notifications(stack)
    if "console" in stack.services:
        _show_console(stack, statuses[ok_ids[0]].application.firm.credit_code if ok_ids else "")
    sys.stdout.flush()


def propose_and_confirm(stack: Any, channel: Any, timeout: float = DECIDE_TIMEOUT_SECONDS) -> tuple[str, dict] | None:
    """免申即享 (docs/proposals.md), when the stack runs registry-sync: the data
    platform's test double certifies PROPOSAL_FIRM DCMM level 3; registry-sync
    publishes its facts; intake proposes the award; the firm confirms with its
    payee account, and the application goes the normal way. The application id
    and its contract JSON (for the comparison with `subsidy simulate`), or None."""
    from google.protobuf import json_format

    from subsidy.core.proposals import proposal_id
    from subsidy.v1 import intake_pb2, proposal_pb2, proposal_pb2_grpc

    platform = getattr(stack, "platform", None)
    if "registry_sync" not in stack.services or platform is None:
        return None
    pid = proposal_id(PROPOSAL_FIRM, "9", f"DCMM_LEVEL:{PROPOSAL_REFERENCE}")
    held = platform.state().get(PROPOSAL_FIRM, {}).get("recognitions", [])
    if not any(r.get("reference") == PROPOSAL_REFERENCE for r in held):
        platform.certify(PROPOSAL_FIRM, "DCMM_LEVEL", "3", PROPOSAL_REFERENCE, awarded_on=stack.today())
    print(
        f"\n免申即享: the data platform reports {PROPOSAL_FIRM} certified DCMM level 3 ({PROPOSAL_REFERENCE}); "
        "registry-sync -> subsidy.firms.v1 -> intake proposes ...",
        flush=True,
    )
    stub = proposal_pb2_grpc.ProposalServiceStub(channel)
    deadline = time.monotonic() + timeout
    found = None
    while found is None:
        listed = stub.ListProposals(proposal_pb2.ListProposalsRequest(credit_code=PROPOSAL_FIRM, page_size=100))
        found = next((p for p in listed.proposals if p.proposal_id == pid), None)
        if found is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no proposal {pid} within {timeout:.0f}s")
            time.sleep(0.5)
    print(
        f"  proposal {pid}: clause {found.clause}, {found.expected_award_fen / 100:,.2f} 元 expected, "
        f"to confirm by {found.expires_on}"
    )
    if found.state == proposal_pb2.PROPOSAL_STATE_PROPOSED:
        answer = stub.ConfirmProposal(
            proposal_pb2.ConfirmProposalRequest(
                proposal_id=pid,
                consent=True,
                payee_account=proposal_pb2.PayeeAccount(
                    bank_name="上海银行松江支行", account_name="演示企业", account_number="31600703000900903"
                ),
            )
        )
        print(f"  the firm confirmed it: application {answer.receipt.application_id} submitted", flush=True)
    else:
        print(f"  already {proposal_pb2.ProposalState.Name(found.state)} (an earlier run)")
    intake = _stubs_of(channel)
    status = intake.GetApplication(intake_pb2.GetApplicationRequest(application_id=pid)).application
    return pid, json_format.MessageToDict(status.application, preserving_proto_field_name=True)


def _stubs_of(channel: Any) -> Any:
    from subsidy.v1 import intake_pb2_grpc

    return intake_pb2_grpc.IntakeServiceStub(channel)


def _show_console(stack: Any, a_credit_code: str = "") -> None:
    """Where the staff console is and who one can be there (docs/console.md)."""
    from subsidy.cli.report import _render
    from subsidy_dev.identities import PEOPLE

    print(f"\nThe staff console (管理台): {stack.console_url}/signin  -- choose a demo identity there:")
    rows = [[person.name, person.role, person.subject] for person in PEOPLE]
    print("\n".join("  " + line for line in _render(["identity", "role", "token subject"], rows, right=set())))
    if a_credit_code:
        print(f"  or a firm (企业): its credit code, e.g. {a_credit_code}")


def _people(stack: Any, intake: Any, statuses: dict[str, Any]) -> dict[str, Any]:
    """Review, four-eyes and the public notice, as the demo's people do them
    (subsidy_dev/review_story.py); returns the reviewed items by application id."""
    from subsidy.cli.report import yuan_column
    from subsidy.v1 import intake_pb2
    from subsidy_dev import review_story

    idp = stack.identities
    held = [i for i, s in statuses.items() if s.state == intake_pb2.APPLICATION_STATE_UNDER_REVIEW]
    print(
        f"\n{len(held)} decisions need people (审核: NEEDS_REVIEW, or at or above the four-eyes threshold); "
        f"reviewing as {review_story.REVIEWER_1.name}, second approval by {review_story.REVIEWER_2.name} ...",
        flush=True,
    )
    outcome = review_story.review_all(stack.address("review"), idp, held)
    for app_id in held:
        amount = outcome.approved.get(app_id)
        asked = " after asking the firm for a document (补充材料)" if app_id in outcome.information_asked else ""
        verdict = f"APPROVED {yuan_column(amount).strip()} 元" if amount is not None else "REJECTED"
        print(f"  {app_id} clause {statuses[app_id].decision.clause}: {verdict}{asked}")
    after_review = wait_for_state(
        intake, list(statuses), ledger_acted_states() - {intake_pb2.APPLICATION_STATE_UNDER_REVIEW}, label="reviewed"
    )
    reserved = [i for i, s in after_review.items() if s.state == intake_pb2.APPLICATION_STATE_RESERVED]
    print(f"Publishing the public notice (公示) of {len(reserved)} approved awards ...", flush=True)
    closed = review_story.publish_and_close_notices(stack, idp, reserved, object_to=reserved[0] if reserved else None)
    for notice in closed.notices:
        print(
            f"  notice {notice.notice_id}: published {notice.published_on}, period {notice.period_first_day} to "
            f"{notice.period_last_day} (5 working days), {len(notice.lines)} lines"
        )
        _save_notice_pdf(stack, idp, notice.notice_id)
    if closed.objected_line:
        print(
            f"  an objection (异议) against the line of {reserved[0]} was lodged through the portal "
            f"and dismissed by {review_story.REVIEWER_2.name}"
        )
    print(f"  the clock moved to {stack.today()}: every line payable; payout schedules the tranches now", flush=True)
    return {i: True for i in held}


def _save_notice_pdf(stack: Any, idp: Any, notice_id: str) -> None:
    import grpc

    from subsidy.v1 import review_pb2, review_pb2_grpc
    from subsidy_dev.identities import REVIEWER_1

    with grpc.insecure_channel(stack.address("review")) as channel:
        reply = review_pb2_grpc.ReviewServiceStub(channel).GetNotice(
            review_pb2.GetNoticeRequest(notice_id=notice_id), metadata=idp.metadata(REVIEWER_1), timeout=30
        )
    folder = Path(stack.var_dir) / "notices"
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in notice_id)
    (folder / f"{safe}.pdf").write_bytes(reply.pdf)
    (folder / f"{safe}.html").write_text(reply.html, encoding="utf-8")
    print(f"  the notice as published: {folder / safe}.pdf and .html")


def _show_notifications(stack: Any, settle_seconds: float = 10.0) -> None:
    mail_dir = Path(stack.mail_dir)
    deadline = time.monotonic() + settle_seconds
    count = -1
    while time.monotonic() < deadline:  # until the count stops growing
        now = len(list(mail_dir.rglob("*.eml"))) if mail_dir.exists() else 0
        if now == count and now > 0:
            break
        count = now
        time.sleep(1.0)
    files = sorted(mail_dir.rglob("*.eml")) if mail_dir.exists() else []
    print(f"\nNotifications sent (e-mails written to {mail_dir}/, no SMTP configured): {len(files)}")
    import email
    from email import policy as email_policy

    for path in files[:12]:
        message = email.message_from_bytes(path.read_bytes(), policy=email_policy.default)
        print(f"  {path.name}: {message['Subject']}")
    if len(files) > 12:
        print(f"  ... and {len(files) - 12} more")


def _show_policy_diff(stack: Any, applications_path: Path) -> None:
    """Policy versions (issue 14, docs/policy-versions.md): the fictional final
    against the draft on the demo applications, as `subsidy policy diff`
    prints it, and the chart of the outlay per budget year under the var dir."""
    from subsidy.cli import policy_diff
    from subsidy.cli.chart import ChartError, outlay_chart
    from subsidy.contracts.calculator import Comparison
    from subsidy.core.versions import diff, load_versions

    versions = load_versions()
    old, new = versions.get("songjiang-ii-2022-draft"), versions.get("fictional-final-2023")
    comparison = Comparison(old.policy, new.policy)
    for line in applications_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            comparison.add(json.loads(line))
    print(f"\nPolicy versions: `subsidy policy diff {old.id} {new.id}` (the final is FICTIONAL, for the demo):\n")
    print(policy_diff.text(old, new, diff(old, new), comparison), end="")
    chart = Path(stack.var_dir) / "policy-diff-outlay.svg"
    try:
        outlay_chart(chart, comparison.by_year(), old.id, new.id + "（虚构）", f"区财政支出: {old.id} vs {new.id}")
    except ChartError as exc:
        print(f"(no chart: {exc})")
    else:
        print(f"Chart of the outlay per budget year under both versions: {chart}")
