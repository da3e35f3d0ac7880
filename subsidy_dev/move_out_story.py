"""The release gate in `make run` (issue 13, docs/data-platform.md 拨付前核验):
a firm with a payable award moves its registration and tax registration out
of Songjiang on the data platform; registry-sync publishes the change; payout
holds its unpaid tranches at once (finance never sees them DUE); the dev
clock then runs past the hold grace (policy/workflow.yaml `hold_grace_days`)
and payout cancels them, with the reason. Resumable: a second `make run` on
the same var/ finds the firm already gone and says so."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

#: 上海松江科技城园区发展有限公司: one award (SJ-2023-0008, clause 10.park,
#: 500,000 元), not the 免申即享 firm of the demo, whose proposal must stay payable.
MOVING_FIRM = "91310117RLCXEBGX3X"
#: Days past the hold grace the clock is moved, so the scheduler's next run cancels.
PAST_THE_GRACE_DAYS = 2


@dataclass(frozen=True)
class TrancheLine:
    tranche_id: str
    application_id: str
    number: int
    budget_year: int
    amount_fen: int
    status: str
    reason: str


def tranches(stack: Any, credit_code: str) -> list[TrancheLine]:
    """The firm's tranches as payout's ledger has them now (GetLedger)."""
    import grpc

    from subsidy.v1 import payout_pb2, payout_pb2_grpc

    with grpc.insecure_channel(stack.address("payout")) as channel:
        ledger = payout_pb2_grpc.PayoutServiceStub(channel).GetLedger(
            payout_pb2.GetLedgerRequest(credit_code=credit_code), timeout=10
        )
    return [
        TrancheLine(
            tranche_id=t.tranche_id,
            application_id=g.application_id,
            number=t.number,
            budget_year=t.budget_year,
            amount_fen=t.amount_fen,
            status=payout_pb2.TrancheStatus.Name(t.status).removeprefix("TRANCHE_STATUS_"),
            reason=t.hold_reason,
        )
        for g in ledger.grants
        for t in g.tranches
    ]


def wait_until(
    stack: Any, credit_code: str, done: Any, what: str, timeout: float = 120.0, poll: float = 0.5
) -> list[TrancheLine]:
    """Poll the ledger until ``done(lines)``; a TimeoutError naming what was awaited otherwise."""
    deadline = time.monotonic() + timeout
    lines = tranches(stack, credit_code)
    while not done(lines):
        if time.monotonic() > deadline:
            seen = ", ".join(f"{t.application_id}#{t.number} {t.status}" for t in lines) or "no tranches"
            raise TimeoutError(f"{what}: not within {timeout:.0f}s ({seen})")
        time.sleep(poll)
        lines = tranches(stack, credit_code)
    return lines


def _unpaid(lines: list[TrancheLine]) -> list[TrancheLine]:
    return [t for t in lines if t.status not in ("PAID", "CANCELLED")]


def _show(lines: list[TrancheLine]) -> None:
    from subsidy.cli.report import yuan_column

    for t in sorted(lines, key=lambda t: (t.application_id, t.number)):
        why = f"  ({t.reason})" if t.reason else ""
        print(
            f"  {t.application_id} 第{t.number + 1}期 ({t.budget_year}): {yuan_column(t.amount_fen).strip()} 元 {t.status}{why}"
        )


def play(stack: Any, credit_code: str = MOVING_FIRM) -> list[TrancheLine] | None:
    """The story; the firm's tranches at its end, or None when the stack has no
    data platform (registry-sync) or payout to tell it with."""
    platform = getattr(stack, "platform", None)
    if platform is None or not {"registry_sync", "payout"} <= set(stack.services):
        return None
    from subsidy.core.workflow.settings import load_workflow

    grace_days = load_workflow().on(stack.today()).hold_grace_days
    firm = platform.firm(credit_code) or {}
    name = firm.get("name", credit_code)
    print(f"\n拨付前核验 (release gate): {name} ({credit_code}) before the change:", flush=True)
    before = tranches(stack, credit_code)
    _show(before)
    if firm.get("registered_in_district", True) and firm.get("tax_registered_in_district", True):
        if not _unpaid(before):
            print("  nothing left to pay: the gate has nothing to hold")
            return before
        platform.move_out(credit_code, stack.today())
        print(
            f"The data platform reports on {stack.today()}: registration and tax registration moved out of 松江区; "
            "registry-sync -> subsidy.firms.v1 -> payout ...",
            flush=True,
        )
    else:
        print("  (the firm left the district in an earlier run)")
    held = wait_until(
        stack,
        credit_code,
        lambda lines: all(t.status in ("HELD", "CANCELLED", "PAID") for t in lines) and bool(lines),
        "the firm's unpaid tranches HELD",
    )
    _show(held)
    if any(t.status == "HELD" for t in held):
        moved_to = stack.advance_clock(days=grace_days + PAST_THE_GRACE_DAYS)
        print(
            f"The firm does not come back: the clock moves {grace_days + PAST_THE_GRACE_DAYS} days to "
            f"{moved_to.date()}, past the {grace_days}-day hold grace; payout's scheduler cancels ...",
            flush=True,
        )
        held = wait_until(
            stack,
            credit_code,
            lambda lines: not any(t.status == "HELD" for t in lines),
            "the held tranches CANCELLED after the grace",
        )
        _show(held)
    return held


def pay(
    stack: Any, credit_code: str, due: list[TrancheLine], id_prefix: str = "DEMO-PAY", source: str = "/subsidy_dev/demo"
) -> None:
    """Finance's PaymentConfirmed for each of ``due`` in full, on the stack's
    today, its payment id ``<id_prefix>-<tranche id>`` (so paying again is a
    repeat payout ignores)."""
    from subsidy.v1 import payout_pb2
    from subsidy_dev.finance import confirm_payments

    confirm_payments(
        stack.kafka_bootstrap,
        [
            payout_pb2.PaymentConfirmed(
                payment_id=f"{id_prefix}-{t.tranche_id}",
                tranche_id=t.tranche_id,
                credit_code=credit_code,
                amount_fen=t.amount_fen,
                paid_on=stack.today().isoformat(),
            )
            for t in due
        ],
        source,
    )


def finance_pays(stack: Any, application_id: str, credit_code: str, timeout: float = 120.0) -> list[TrancheLine]:
    """区财政 pays the application's DUE tranches as finance does in production:
    a PaymentConfirmed per tranche on subsidy.payments.v1 (docs/finance-events.md),
    its payment id derived from the tranche so a second `make run` repeats it
    harmlessly (payout ignores a repeated payment id). The application's
    tranches once the ledger has applied them."""

    def mine(lines: list[TrancheLine]) -> list[TrancheLine]:
        return [t for t in lines if t.application_id == application_id]

    lines = wait_until(
        stack,
        credit_code,
        lambda lines: any(t.status in ("DUE", "PAID") for t in mine(lines)),
        f"a tranche of {application_id} DUE",
        timeout,
    )
    pay(stack, credit_code, [t for t in mine(lines) if t.status == "DUE"])
    return mine(
        wait_until(
            stack,
            credit_code,
            lambda lines: all(t.status != "DUE" for t in mine(lines)),
            f"{application_id}'s DUE tranches PAID",
            timeout,
        )
    )
