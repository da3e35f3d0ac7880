"""The intake store on SQLite and on PostgreSQL: the same code, the same tests."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading

import pytest

from subsidy.platform.db import Database
from subsidy.platform.outbox import OutboxMessage
from subsidy.platform.registry import FileRegistry
from subsidy.services.intake import handlers, payouts
from subsidy.services.intake.adapters.directory import FileDirectory
from subsidy.services.intake.adapters.store import SqlStore
from subsidy.services.intake.model import DuplicateKey, StoredApplication
from subsidy.v1 import application_pb2, decision_pb2, payout_pb2

from .test_intake_support import ROOT, database_url, new_id, rent_application

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    db = Database(database_url(request.param, tmp_path, postgres_url), store="intake", pool_size=8)
    s = SqlStore(db)
    s.create_schema()
    s.create_schema()  # idempotent
    yield s
    db.close()


def row(app_id: str, received_at: str = "2025-03-01T08:00:00.000000Z", code: str = "91310117MA1K7D2E8N"):
    return StoredApplication(app_id, code, "ab" * 32, b"\x0a\x01x", received_at, "cd" * 16)


def message(app_id: str) -> OutboxMessage:
    return OutboxMessage("subsidy.applications.v1", b"key", b"\x00value\xff", (("ce_id", app_id.encode()),))


def test_an_application_and_its_outbox_row_are_written_together_and_read_back(store):
    store.add(row("A-1"), message("A-1"))
    assert store.get("A-1") == row("A-1")
    [pending] = store.pending()
    assert (pending.topic, pending.key, pending.value, pending.headers) == (
        "subsidy.applications.v1",
        b"key",
        b"\x00value\xff",
        [("ce_id", b"A-1")],
    )


def test_a_second_add_of_the_same_id_is_a_duplicate_key_and_writes_nothing(store):
    store.add(row("A-1"), message("A-1"))
    with pytest.raises(DuplicateKey):
        store.add(dataclasses.replace(row("A-1"), payload_sha256="ef" * 32), message("A-1"))
    assert store.get("A-1").payload_sha256 == "ab" * 32
    assert len(store.pending()) == 1


def test_the_outbox_is_published_in_order_and_marked_rows_are_not_pending(store):
    for i in range(3):
        store.add(row(f"A-{i}"), message(f"A-{i}"))
    pending = store.pending()
    assert [p.headers[0][1] for p in pending] == [b"A-0", b"A-1", b"A-2"]
    store.mark_published([pending[0].id, pending[1].id], "2025-03-01T08:00:01.000000Z")
    assert [p.id for p in store.pending()] == [pending[2].id] and store.pending_count() == 1


def test_listing_is_newest_first_with_keyset_paging(store):
    for i, at in enumerate(
        [
            "2025-03-01T08:00:00.000000Z",
            "2025-03-02T08:00:00.000000Z",
            "2025-03-02T08:00:00.000000Z",
            "2025-03-03T08:00:00.000000Z",
        ]
    ):
        store.add(row(f"A-{i}", at), message(f"A-{i}"))
    store.add(row("OTHER", code="91310117H2LTFY5G3W"), message("OTHER"))
    first = store.list_by_firm("91310117MA1K7D2E8N", 2)
    assert [r.application_id for r in first] == ["A-3", "A-2"]
    last = first[-1]
    rest = store.list_by_firm("91310117MA1K7D2E8N", 10, (last.received_at, last.application_id))
    assert [r.application_id for r in rest] == ["A-1", "A-0"]


def _decision(decision_id: str, application_id: str = "A-1", **fields) -> bytes:
    return decision_pb2.Decision(
        decision_id=decision_id, application_id=application_id, credit_code="91310117MA1K7D2E8N", **fields
    ).SerializeToString()


def _apply(store, application_id, decision_id, decision, at="2025-03-04T00:00:00.000000Z"):
    return store.apply_decision(application_id, decision_id, decision, at, payouts.replaces, payouts.state_of)


def test_a_decision_is_applied_once_and_a_replay_or_an_unknown_id_changes_nothing(store):
    store.add(row("A-1"), message("A-1"))
    dec = _decision("A-1@v1")
    assert _apply(store, "A-1", "A-1@v1", dec) == "applied"
    decided = store.get("A-1")
    assert (decided.state, decided.decision, decided.decision_id) == ("DECIDED", dec, "A-1@v1")
    assert _apply(store, "A-1", "A-1@v1", dec, "2025-03-05T00:00:00.000000Z") == "replayed"
    assert store.get("A-1") == decided
    assert _apply(store, "NOPE", "NOPE@v1", _decision("NOPE@v1", "NOPE")) == "unknown"


def test_under_review_then_the_reviewed_decision_which_a_late_computed_one_does_not_replace(store):
    store.add(row("A-1"), message("A-1"))
    assert _apply(store, "A-1", "A-1@v1", _decision("A-1@v1", review_required=True)) == "applied"
    assert store.get("A-1").state == "UNDER_REVIEW"
    reviewed = _decision(
        "A-1@v1/review:R-1",
        review=decision_pb2.ReviewRecord(supersedes_decision_id="A-1@v1", item_id="R-1", result="APPROVED"),
    )
    assert _apply(store, "A-1", "A-1@v1/review:R-1", reviewed) == "applied"
    assert _apply(store, "A-1", "A-1@v1", _decision("A-1@v1", review_required=True)) == "superseded"
    shown = store.get("A-1")
    assert (shown.state, shown.decision_id, shown.decision) == ("DECIDED", "A-1@v1/review:R-1", reviewed)


def test_concurrent_submissions_of_the_same_application_store_it_once(store):
    deps = handlers.Deps(
        store=store,
        registry=FileRegistry(ROOT / "demo" / "registry.json"),
        directory=FileDirectory(ROOT / "policy" / "directory"),
    )
    app_id = new_id("RACE")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: handlers.submit(deps, rent_application(app_id)), range(8)))
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.receipt for r in results}) == 1
    assert store.pending_count() == 1
    stored = application_pb2.Application.FromString(store.get(app_id).payload)
    assert stored.firm.name == "上海泗泾智造示范工厂有限公司"


def test_a_decision_and_its_grant_arriving_at_the_same_moment_end_in_the_grants_state_whichever_commits_first(store):
    # The two projections apply these from two topics in two threads; each
    # must see the other's write, or the application stays DECIDED for good.
    at = "2025-03-04T00:00:00.000000Z"
    ids = [f"RACE-{i}" for i in range(40)]
    for app_id in ids:
        store.add(row(app_id), message(app_id))

    def apply(app_id, which, barrier):
        barrier.wait()
        if which == "decision":
            return _apply(store, app_id, f"{app_id}@v1", _decision(f"{app_id}@v1", app_id), at)
        grant = payout_pb2.Grant(
            application_id=app_id, granted_fen=500, state=payout_pb2.GRANT_STATE_RESERVED
        ).SerializeToString()
        return store.apply_payout_event(f"grant:{app_id}", app_id, lambda _: grant, at, payouts.state_of)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for app_id in ids:
            barrier = threading.Barrier(2)
            results = list(pool.map(lambda which, a=app_id, b=barrier: apply(a, which, b), ["decision", "grant"]))
            assert results == ["applied", "applied"]
    assert {app_id: store.get(app_id).state for app_id in ids} == {app_id: "RESERVED" for app_id in ids}


def test_the_history_holds_every_decision_read_and_a_re_decision_at_adoption_replaces_the_reviewed_one(store):
    """Issue 14: GetApplication's history of decisions, each with its policy version."""
    store.add(row("A-9"), message("A-9"))
    computed = _decision("A-9@v1", "A-9", review_required=True, policy_version="v1")
    reviewed = _decision(
        "A-9@v1/review:R-1",
        "A-9",
        policy_version="v1",
        review=decision_pb2.ReviewRecord(supersedes_decision_id="A-9@v1", item_id="R-1", result="APPROVED"),
    )
    redecided = _decision("A-9@v2", "A-9", policy_version="v2", supersedes_decision_id="A-9@v1")
    assert _apply(store, "A-9", "A-9@v1", computed, "2025-03-04T00:00:00.000000Z") == "applied"
    assert _apply(store, "A-9", "A-9@v1/review:R-1", reviewed, "2025-03-05T00:00:00.000000Z") == "applied"
    assert _apply(store, "A-9", "A-9@v2", redecided, "2025-03-06T00:00:00.000000Z") == "applied"
    # A late copy of the reviewed decision of the superseded version does not come back.
    assert _apply(store, "A-9", "A-9@v1/review:R-1", reviewed, "2025-03-07T00:00:00.000000Z") == "superseded"
    shown = store.get("A-9")
    assert shown.decision_id == "A-9@v2"
    history = [decision_pb2.Decision.FromString(d) for d in shown.history]
    assert [(d.decision_id, d.policy_version) for d in history] == [
        ("A-9@v1", "v1"),
        ("A-9@v1/review:R-1", "v1"),
        ("A-9@v2", "v2"),
    ]
