"""The same use cases over the SQL store on SQLite (adapters/store.py): a
whole review and notice run, idempotent replays, a refusal that rolls back,
and the audit trail that the database itself keeps append-only. PostgreSQL:
tests/integration/test_review_store.py."""

from __future__ import annotations

import datetime as dt

import pytest

from subsidy.platform.db import Database
from subsidy.services.review.adapters.store import SqlStore

from . import test_handlers as h


@pytest.fixture
def store(tmp_path):
    s = SqlStore(Database(f"sqlite:///{tmp_path / 'review.db'}", store="review"))
    s.create_schema()
    yield s
    s.db.close()


def run_the_story(uow):
    """Queue, four-eyes approval, publish, object, dismiss, close; returns the item id."""
    item_id = h.queued(uow)
    assert h.handlers.queue_decision(uow, h.decision(), h.WF, h.TODAY, h.NOW, h.TRACE) == "replayed"
    h.handlers.claim(uow, item_id, h.ALICE, h.NOW)
    h.decide(
        uow, item_id, result="APPROVED", amount_fen=500_000, basis="30%", reviewer_amounts={"training_cost_fen": 9}
    )
    with pytest.raises(h.PermissionDenied):
        h.handlers.second_approve(uow, item_id, h.ALICE, h.WF, h.TODAY, h.NOW)
    back = h.handlers.send_back(uow, item_id, h.BOB, "重新核定", h.NOW)
    assert back.returns == ("重新核定",)
    h.decide(
        uow, item_id, result="APPROVED", amount_fen=500_000, basis="30%", reviewer_amounts={"training_cost_fen": 9}
    )
    item = h.handlers.second_approve(uow, item_id, h.BOB, h.WF, h.TODAY, h.NOW)
    assert item.status == "APPROVED" and item.reviewer_amounts == (("training_cost_fen", 9),)
    assert item.returns == ("重新核定",)  # kept through the SQL round trip
    row, lines = h.published(uow)
    o = h.handlers.lodge_objection(uow, h.Actor("p", "PORTAL"), lines[0].line_id, "", "存疑", h.TODAY, h.NOW)
    h.handlers.resolve_objection(uow, h.ALICE, o.objection_id, "DISMISSED", "无据", dt.date(2025, 1, 27), h.NOW)
    assert len(h.handlers.close_notice_periods(uow, dt.date(2025, 2, 7), h.NOW)) == 2
    return item_id, row


def test_the_whole_story_on_sqlite(store):
    item_id, row = run_the_story(store)
    with store:
        item = store.items.get(item_id)
        assert item.second_reviewer == "bob" and item.decision.review_required
        assert {x.status for x in store.lines.of_notice(row.notice_id)} == {"PAYABLE"}
    entries, _ = h.handlers.audit_trail(store, item_id, 0, "")
    assert [e.action for e in entries] == [
        "QUEUED",
        "CLAIMED",
        "DECIDED_APPROVED",
        "SENT_BACK",
        "DECIDED_APPROVED",
        "SECOND_APPROVED",
    ]
    pending, _ = store.outbox_stats()
    kinds = {r.topic for r in store.outbox_table.pending(500)}
    assert kinds == {"subsidy.reviews.v1", "subsidy.notices.v1", "subsidy.decisions.v1"} and pending > 5


def test_a_refusal_rolls_back(store):
    item_id = h.queued(store)
    h.handlers.claim(store, item_id, h.ALICE, h.NOW)
    before = store.outbox_stats()[0]
    with pytest.raises(h.InvalidArgument, match="amount_fen"):
        h.decide(store, item_id, result="APPROVED", amount_fen=100_000_001, basis="x")
    with store:
        assert store.items.get(item_id).status == "CLAIMED"
    assert store.outbox_stats()[0] == before
    assert len(h.handlers.audit_trail(store, item_id, 0, "")[0]) == 2


def test_the_audit_trail_is_append_only_in_the_database(store):
    h.queued(store)
    with pytest.raises(Exception, match="append-only"), store.db.transaction() as tx:
        tx.execute("UPDATE review_audit SET subject = 'mallory'")
    with pytest.raises(Exception, match="append-only"), store.db.transaction() as tx:
        tx.execute("DELETE FROM review_audit")


def test_overdue_items_are_counted(store):
    h.queued(store)
    assert store.item_stats(dt.date(2025, 2, 27)) == ({"OPEN": 1}, 0)
    assert store.item_stats(dt.date(2025, 2, 28)) == ({"OPEN": 1}, 1)
