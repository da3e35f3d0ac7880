"""The demo: submit applications to a running intake over gRPC, follow them
until decided, and show the result next to what the calculator computes."""

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


def wait_decided(stub: Any, application_ids: list[str], timeout: float = DECIDE_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Poll GetApplication until every id is decided; returns id -> ApplicationStatus."""
    from subsidy.v1 import intake_pb2

    pending = list(dict.fromkeys(application_ids))
    decided: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    total = len(pending)
    while pending and time.monotonic() < deadline:
        still = []
        for app_id in pending:
            status = stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=app_id), timeout=10).application
            if status.state == intake_pb2.APPLICATION_STATE_DECIDED:
                decided[app_id] = status
            else:
                still.append(app_id)
        pending = still
        print(f"\r  decided {len(decided)}/{total}", end="", flush=True)
        if pending:
            time.sleep(0.5)
    print(flush=True)
    if pending:
        raise TimeoutError(f"not decided after {timeout:.0f}s: {', '.join(pending)}")
    return decided


def run_demo(intake_address: str, applications_path: Path) -> None:
    from subsidy.report import OUTCOME_NAMES, _render, yuan_column

    applications = [json.loads(line) for line in applications_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    channel, stub = _stubs(intake_address)
    with channel:
        print(f"Submitting {len(applications)} applications over gRPC to intake ...", flush=True)
        submitted = submit_all(stub, applications)
        refused = [(i, r) for i, r in submitted if r not in ("accepted", "duplicate")]
        for app_id, why in refused:
            print(f"  {app_id}: refused: {why}")
        ok_ids = [i for i, r in submitted if r in ("accepted", "duplicate")]
        print(f"  accepted {sum(r == 'accepted' for _, r in submitted)}, "
              f"duplicates {sum(r == 'duplicate' for _, r in submitted)}, refused {len(refused)}")
        print("Waiting for the eligibility decisions (intake -> Kafka -> eligibility -> Kafka -> intake) ...", flush=True)
        decided = wait_decided(stub, ok_ids)
    rows = []
    for app_id in dict.fromkeys(ok_ids):
        status = decided[app_id]
        d = status.decision
        basis = [r.code for r in d.reasons if r.code != "AWARD_BASIS"]
        rows.append([
            app_id,
            status.application.firm.name,
            d.clause,
            f"{d.outcome} {OUTCOME_NAMES.get(d.outcome, '')}",
            yuan_column(d.max_award_fen),
            status.receipt.trace_id,
            ", ".join(dict.fromkeys(basis)),
        ])
    print()
    print("\n".join(_render(["application", "firm", "clause", "outcome", "ceiling 元", "trace id", "reasons"], rows, right={4})))
    sys.stdout.flush()
