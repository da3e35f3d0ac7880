"""The intake store's searches across firms (issue 15) on SQLite and on
PostgreSQL: ListApplications' filters (credit code, part of the firm name
case-folded with LIKE's wildcards taken literally, clause, state) and
ListProposals' (firm, state), newest first, paged through the use cases; and
migration 0005's backfill of the search columns of rows stored before it."""

from __future__ import annotations

import pytest

from subsidy.platform import migrations
from subsidy.platform.db import Database
from subsidy.platform.outbox import OutboxMessage
from subsidy.services.intake import search
from subsidy.services.intake.adapters.migrations import v0005_search_columns
from subsidy.services.intake.adapters.store import SqlStore
from subsidy.services.intake.model import InvalidApplication, StoredApplication, StoredProposal

from .test_intake_support import database_url, rent_application

pytestmark = pytest.mark.integration

A = "91310117MA1K7D2E8N"
B = "91310117H2LTFY5G3W"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    db = Database(database_url(request.param, tmp_path, postgres_url), store="intake", pool_size=4)
    s = SqlStore(db)
    s.create_schema()
    yield s
    db.close()


def add(store, app_id, code, name, at, clause="1.rent", state="RECEIVED"):
    payload = rent_application(app_id, code, name=name).SerializeToString()
    row = StoredApplication(app_id, code, "ab" * 32, payload, at, "cd" * 16, state, firm_name=name, clause=clause)
    store.add(row, OutboxMessage("subsidy.applications.v1", b"k", b"v", ()))


def ids(rows):
    return [r.application_id for r in rows]


def filled(store):
    add(store, "A-1", A, "上海泗泾智造示范工厂有限公司", "2026-01-01T00:00:01.000000Z")
    add(store, "B-1", B, "ACME_云%工业\\互联网", "2026-01-01T00:00:02.000000Z", clause="10.cloud", state="PAYABLE")
    add(store, "A-2", A, "上海泗泾智造示范工厂有限公司", "2026-01-01T00:00:03.000000Z", state="PAYABLE")
    add(store, "B-2", B, "ACME_云%工业\\互联网", "2026-01-01T00:00:03.000000Z")
    return store


def test_every_filter_alone_and_together_across_firms(store):
    s = filled(store)
    f = search.application_filters
    assert ids(s.search(f(), 10)) == ["B-2", "A-2", "B-1", "A-1"]
    assert ids(s.search(f(A), 10)) == ["A-2", "A-1"]
    assert ids(s.search(f(firm_name="泗泾智造"), 10)) == ["A-2", "A-1"]
    assert ids(s.search(f(firm_name="acme"), 10)) == ["B-2", "B-1"]  # case-folded on both sides
    assert ids(s.search(f(clause="10.cloud"), 10)) == ["B-1"]
    assert ids(s.search(f(state="PAYABLE"), 10)) == ["A-2", "B-1"]
    assert ids(s.search(f(A, "泗泾", "1.rent", "PAYABLE"), 10)) == ["A-2"]
    assert ids(s.search(f(A, firm_name="acme"), 10)) == []
    # the same rows through the old per-firm listing
    assert ids(s.list_by_firm(B, 10)) == ["B-2", "B-1"]
    assert s.get("B-1").firm_name == "ACME_云%工业\\互联网" and s.get("B-1").clause == "10.cloud"


def test_like_wildcards_and_backslash_in_a_name_match_only_themselves(store):
    s = filled(store)
    f = search.application_filters
    assert ids(s.search(f(firm_name="%"), 10)) == ["B-2", "B-1"]
    assert ids(s.search(f(firm_name="_"), 10)) == ["B-2", "B-1"]
    assert ids(s.search(f(firm_name="e_云"), 10)) == ["B-2", "B-1"]
    assert ids(s.search(f(firm_name="me_"), 10)) == ["B-2", "B-1"]
    assert ids(s.search(f(firm_name="泗_智"), 10)) == []  # _ is not any character
    assert ids(s.search(f(firm_name="泗%智"), 10)) == []
    assert ids(s.search(f(firm_name="业\\互"), 10)) == ["B-2", "B-1"]
    assert ids(s.search(f(firm_name="'; DROP TABLE intake_applications; --"), 10)) == []
    assert len(s.search(f(), 10)) == 4


def test_paging_across_firms_with_equal_times_skips_and_repeats_nothing(store):
    from subsidy.services.intake import handlers

    s = filled(store)

    class D:
        store = s

    seen, token = [], ""
    while True:
        page = handlers.list_applications(D, search.application_filters(), 1, token)
        seen += ids(page.applications)
        token = page.next_page_token
        if not token:
            break
    assert seen == ["B-2", "A-2", "B-1", "A-1"]
    first = handlers.list_applications(D, search.application_filters(state="PAYABLE"), 1)
    with pytest.raises(InvalidApplication) as caught:
        handlers.list_applications(D, search.application_filters(state="RECEIVED"), 1, first.next_page_token)
    assert caught.value.field == "page_token"


def proposal(pid, code, state, at):
    return StoredProposal(pid, code, "9", f"F:{pid}", state, b"\x0a\x01x", "2026-11-01", "2026-12-01", at)


def test_proposals_of_every_firm_or_one_in_a_state_newest_first(store):
    for p in (
        proposal("P-1", A, "PROPOSED", "2026-11-01T00:00:01Z"),
        proposal("P-2", B, "PROPOSED", "2026-11-01T00:00:02Z"),
        proposal("P-3", B, "PROPOSED", "2026-11-01T00:00:03Z"),
    ):
        assert store.add_proposal(p, OutboxMessage("subsidy.proposals.v1", b"k", b"v", ()))
    declined = OutboxMessage("subsidy.proposals.v1", b"k", b"v", ())
    assert store.decide_proposal("P-3", "PROPOSED", "DECLINED", b"\x0a\x01y", "2026-11-02T00:00:00Z", declined)
    f = search.proposal_filters
    assert [p.proposal_id for p in store.search_proposals(f(), 10)] == ["P-3", "P-2", "P-1"]
    assert [p.proposal_id for p in store.search_proposals(f(state="PROPOSED"), 10)] == ["P-2", "P-1"]
    assert [p.proposal_id for p in store.search_proposals(f(B, "DECLINED"), 10)] == ["P-3"]
    assert [p.proposal_id for p in store.search_proposals(f(), 10, ("2026-11-01T00:00:02Z", "P-2"))] == ["P-1"]


def test_migration_0005_fills_the_search_columns_of_rows_stored_before_it(store):
    add(store, "OLD-1", A, "上海泗泾智造示范工厂有限公司", "2026-01-01T00:00:01.000000Z")
    add(store, "OLD-2", B, "ACME 云", "2026-01-01T00:00:02.000000Z")
    with store.db.transaction() as tx:  # as the previous release wrote them: no search columns
        tx.execute("UPDATE intake_applications SET firm_name = NULL, firm_name_key = NULL, clause = NULL")
    assert ids(store.search(search.application_filters(firm_name="acme"), 10)) == []
    with store.db.connection() as raw:
        engine = migrations._engine(raw, store.db.dialect)
        with engine.connect() as connection, connection.begin():
            assert v0005_search_columns.backfill(connection) == 2
            assert v0005_search_columns.backfill(connection) == 0  # nothing left: idempotent
    assert ids(store.search(search.application_filters(firm_name="acme"), 10)) == ["OLD-2"]
    assert ids(store.search(search.application_filters(clause="1.rent"), 10)) == ["OLD-2", "OLD-1"]
