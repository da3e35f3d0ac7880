"""The review use cases over the SQL store on PostgreSQL (SQLite:
tests/unit/review/test_store.py): the whole story, a refusal rolling back,
the audit trail append-only in the database, and two reviewers racing for
one item or one pool: exactly one wins, the other is refused, nothing is
written twice."""

from __future__ import annotations

import threading

import pytest

from subsidy.platform.db import Database
from subsidy.services.review.adapters.store import SqlStore

from .test_review_support import database_url

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres_url, tmp_path):
    s = SqlStore(Database(database_url("postgresql", tmp_path, postgres_url), store="review", pool_size=4))
    s.create_schema()
    yield s
    s.db.close()


def test_the_whole_story_on_postgresql(store):
    from unit.review import test_store

    test_store.test_the_whole_story_on_sqlite(store)


def test_a_refusal_rolls_back_on_postgresql(store):
    from unit.review import test_store

    test_store.test_a_refusal_rolls_back(store)


def test_the_audit_trail_is_append_only_on_postgresql(store):
    from unit.review import test_store

    test_store.test_the_audit_trail_is_append_only_in_the_database(store)


def race(*calls):
    results: list = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i, call):
        start.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the loser's refusal is the result
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_two_reviewers_claiming_one_item_one_wins(store):
    from unit.review import test_handlers as h

    item_id = h.queued(store)
    results = race(
        lambda: h.handlers.claim(store, item_id, h.ALICE, h.NOW),
        lambda: h.handlers.claim(store, item_id, h.BOB, h.NOW),
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and len(losers) == 1 and isinstance(losers[0], h.FailedPrecondition)
    actions = [e.action for e in h.handlers.audit_trail(store, item_id, 0, "")[0]]
    assert actions == ["QUEUED", "CLAIMED"]


def test_two_publishers_list_each_award_once(store):
    from unit.review import test_handlers as h

    for i in range(5):
        h.grant(store, f"RACE-{i}", 1_000 + i)
    results = race(
        lambda: h.handlers.publish_notice(store, h.ALICE, h.WF, h.TODAY, h.NOW),
        lambda: h.handlers.publish_notice(store, h.BOB, h.WF, h.TODAY, h.NOW),
    )
    published = [r for r in results if not isinstance(r, Exception)]
    assert len(published) == 1, results
    assert isinstance([r for r in results if isinstance(r, Exception)][0], h.FailedPrecondition)
    (_, lines) = published[0]
    assert sorted(x.application_id for x in lines) == [f"RACE-{i}" for i in range(5)]


def test_an_adjusted_grant_replaces_the_pooled_one_and_supersedes_its_running_line_on_postgresql(store):
    from unit.review import test_adjusted

    test_adjusted.test_a_change_to_an_award_in_its_notice_period_is_reviewed_then_noticed_afresh(store, True)
