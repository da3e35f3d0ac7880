"""Release gates end to end (issue 13, done-when): the data platform's test
double, registry-sync, intake, eligibility, review and payout as real
processes on the real broker. A firm with a three-year award (public notice
and all) is paid its first tranche by finance (a PaymentConfirmed on
subsidy.payments.v1), then moves out of the district between tranche 1 and
tranche 2: tranche 2, already due, is HELD at once; it moves back within the
grace: DUE again; it moves out again and the grace runs out on the dev
clock: CANCELLED, and the third year's tranche is held when it falls due,
then cancelled too. The paid tranche stays PAID throughout (leaving is not a
recovery), and finance never sees a tranche of a firm that left become DUE."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from subsidy.v1 import intake_pb2_grpc
from subsidy_dev import move_out_story
from subsidy_dev.demo import settle, submit_all
from subsidy_dev.stack import LocalStack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
APP = next(
    json.loads(line)
    for line in (REPO / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    if '"SJ-2025-0004"' in line
)
FIRM = APP["firm"]["credit_code"]


def statuses(lines: list[move_out_story.TrancheLine]) -> dict[int, str]:
    return {t.number: t.status for t in lines if t.application_id == APP["application_id"]}


def until(stack: LocalStack, want: dict[int, str], timeout: float = 90) -> dict[int, str]:
    """The application's tranches by number once they are ``want`` (payout's GetLedger)."""
    lines = move_out_story.wait_until(
        stack, FIRM, lambda lines: statuses(lines) == want, f"tranches {want}", timeout=timeout
    )
    return statuses(lines)


def test_a_firm_that_leaves_has_its_tranches_held_released_when_it_returns_and_cancelled_after_the_grace(
    kafka_bootstrap, tmp_path
):
    fast = {"payout": {"SUBSIDY_PAYOUT_SCHEDULER_INTERVAL_SECONDS": "0.5"}}
    with LocalStack(
        tmp_path / "stack",
        kafka_bootstrap=kafka_bootstrap,
        services=("intake", "eligibility", "payout", "review", "registry_sync"),
        extra_env=fast,
    ) as stack:
        with grpc.insecure_channel(stack.intake_address) as channel:
            intake = intake_pb2_grpc.IntakeServiceStub(channel)
            assert dict(submit_all(intake, [APP])) == {APP["application_id"]: "accepted"}
            settle(stack, intake, [APP["application_id"]], timeout=180)
        # Payable on 2026-10-10 (the dev clock after the notice): the 2025 and
        # 2026 tranches fall due at once, the 2027 one on 2027-04-28.
        until(stack, {0: "DUE", 1: "DUE", 2: "SCHEDULED"})
        first = next(
            t
            for t in move_out_story.tranches(stack, FIRM)
            if t.application_id == APP["application_id"] and t.number == 0
        )
        move_out_story.pay(stack, FIRM, [first], id_prefix="E2E-PAY", source="/tests/e2e/release-gates")
        until(stack, {0: "PAID", 1: "DUE", 2: "SCHEDULED"})

        stack.platform.move_out(FIRM, stack.today())  # between tranche 1 (paid) and tranche 2
        until(stack, {0: "PAID", 1: "HELD", 2: "SCHEDULED"})

        stack.platform.move_back(FIRM, stack.today())  # within the 90-day grace
        until(stack, {0: "PAID", 1: "DUE", 2: "SCHEDULED"})

        stack.platform.move_out(FIRM, stack.today())
        until(stack, {0: "PAID", 1: "HELD", 2: "SCHEDULED"})
        stack.advance_clock(days=92)  # the grace runs out
        until(stack, {0: "PAID", 1: "CANCELLED", 2: "SCHEDULED"})

        stack.advance_clock(days=120)  # past 2027-04-28: the last tranche falls due while the firm is away
        until(stack, {0: "PAID", 1: "CANCELLED", 2: "HELD"})
        stack.advance_clock(days=92)
        until(stack, {0: "PAID", 1: "CANCELLED", 2: "CANCELLED"})
