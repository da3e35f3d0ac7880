"""The demo: submit applications to a running intake over gRPC, follow them
until decided (and, with the payout service running, until the ledger has
recorded the grant), and show the result beside what the calculator computes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

DECIDE_TIMEOUT_SECONDS = 120


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
        stub,
        application_ids,
        {intake_pb2.APPLICATION_STATE_DECIDED, intake_pb2.APPLICATION_STATE_RECORDED},
        timeout,
    )


def wait_recorded(stub: Any, application_ids: list[str], timeout: float = DECIDE_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Until the payout ledger's grant (and its tranches) is known for each."""
    from subsidy.v1 import intake_pb2

    def complete(ids: list[str]) -> dict[str, Any]:
        return wait_for_state(stub, ids, {intake_pb2.APPLICATION_STATE_RECORDED}, timeout, "recorded in the ledger")

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


def _tranche_count(status: Any) -> int:
    return 0 if status.grant.granted_fen == 0 else max(1, len(status.decision.tranche_shares_percent))


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
        print(
            "Waiting for the eligibility decisions (intake -> Kafka -> eligibility -> Kafka -> intake) ...", flush=True
        )
        statuses = wait_decided(stub, ok_ids)
        if with_payout:
            print("Waiting for the payout ledger (decisions -> payout -> subsidy.payouts.v1 -> intake) ...", flush=True)
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
        if got != want_tuple:
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
    print(f"\nThe pipeline {verdict} `subsidy simulate` on the same applications.")
    if "notify" in stack.services:
        _show_notifications(stack)
    sys.stdout.flush()


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
