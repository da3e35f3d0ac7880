"""Payout locks the firms of a batch in one global order (issue 19): a batch
of decisions for firms B, A, B locks A then B before any decision is applied,
as the scheduler does, so a second replica or the scheduler cannot deadlock
with it. The firm is the decision's own, whatever the record's key."""

from __future__ import annotations

import contextlib
import datetime as dt
from types import SimpleNamespace

from subsidy.core.credit_code import complete
from subsidy.services.payout.adapters.kafka import DecisionApplier

A = complete("9131011700000001")
B = complete("9131011700000002")


class RecordingStore:
    def __init__(self) -> None:
        self.locked: list[str] = []
        self.commits = 0
        self.firms = SimpleNamespace(lock=lambda code, at: self.locked.append(code))

    def __enter__(self) -> RecordingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def commit(self) -> None:
        self.commits += 1

    def batch(self):
        return contextlib.nullcontext()


def record(firm: str | None, key: bytes | None = b"any") -> SimpleNamespace:
    value = b"\xff\xfe not a decision"
    if firm is not None:
        from integration.test_payout_support import rent_decision

        from subsidy.contracts import codec

        value = codec.decision_to_proto(rent_decision(f"APP-{firm[-4:]}", firm)).SerializeToString()
    return SimpleNamespace(key=key, value=value, headers=[], topic="subsidy.decisions.v1", partition=0, offset=0)


def test_a_batch_locks_its_firms_once_each_in_credit_code_order_whatever_the_keys():
    store = RecordingStore()
    applier = DecisionApplier(store, now=lambda: dt.datetime(2026, 1, 2, tzinfo=dt.UTC))  # type: ignore[arg-type]
    applier.lock_firms([record(B, key=A.encode()), record(A, key=b"spread-1"), record(B, key=None)])
    assert store.locked == sorted([A, B]) and store.commits == 1


def test_records_that_hold_no_decision_lock_nothing():
    store = RecordingStore()
    applier = DecisionApplier(store)  # type: ignore[arg-type]
    applier.lock_firms([record(None, key=A.encode()), record(None, key=None)])
    assert store.locked == [] and store.commits == 0
