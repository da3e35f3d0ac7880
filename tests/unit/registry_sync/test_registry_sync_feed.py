"""registry-sync reading the FakeDataPlatform's feed (a real HTTP server on
loopback) into its SQLite store and outbox: folding, idempotence, held
changes, dead letters, resync, and the bad-feed cases of issue 13 item 5."""

from __future__ import annotations

import datetime as dt

import pytest

from subsidy.core.credit_code import complete
from subsidy.services.registry_sync import handlers
from subsidy.services.registry_sync.adapters.feed import HttpFeed
from subsidy.services.registry_sync.adapters.loop import SyncLoop
from subsidy.services.registry_sync.ports import FeedBroken, FeedUnavailable

from .support import FIRM_A, FIRM_B, TOKEN, make_rig


@pytest.fixture
def rig():
    rig = make_rig()
    yield rig
    rig.close()


def test_first_sync_publishes_each_firm_once_and_a_second_round_nothing(rig):
    outcome = handlers.run_once(rig.deps)
    assert outcome.applied == 16 and outcome.published == 16 and outcome.caught_up
    records = rig.facts_records()
    assert sorted(r.credit_code for r in records) == sorted(set(r.credit_code for r in records))
    assert len(records) == 16
    # the record: key the credit code, CloudEvents headers with the derived id
    event_id, topic, key, _, headers = rig.outbox("subsidy.firms.v1")[0]
    assert key.decode() == records[0].credit_code
    assert headers["ce_id"] == event_id == f"firm:{records[0].credit_code}/r1"
    assert headers["ce_type"] == "cn.gov.songjiang.subsidy.firm.facts.v1"
    again = handlers.run_once(rig.deps)
    assert again.applied == 0 and again.published == 0
    assert len(rig.outbox()) == 16


def test_a_certification_and_a_move_out_reach_the_facts(rig):
    handlers.run_once(rig.deps)
    rig.platform.certify(FIRM_A, "DCMM_LEVEL", "3", "DCMM-2026-0042")
    rig.platform.move_out(FIRM_B)
    outcome = handlers.run_once(rig.deps)
    assert outcome.applied == 3 and outcome.published == 2
    latest = {r.credit_code: r for r in rig.facts_records()}
    assert [(x.kind, x.level, x.reference) for x in latest[FIRM_A].recognitions] == [
        ("DCMM_LEVEL", "3", "DCMM-2026-0042")
    ]
    assert latest[FIRM_A].feed_sequence == 17
    assert not latest[FIRM_B].registered_in_district and not latest[FIRM_B].tax_registered_in_district
    assert latest[FIRM_B].as_of == "2026-03-01"


def test_the_same_change_delivered_twice_publishes_nothing_new(rig):
    handlers.run_once(rig.deps)
    rig.platform.certify(FIRM_A)
    handlers.run_once(rig.deps)
    before = rig.outbox()
    # The page is delivered again (a cursor from before it, as after a crash of the platform's side).
    with rig.store.unit() as tx:
        state = tx.state()
        tx.set_state(type(state)("v1.16", 16, state.high_water, state.last_success_at, state.resyncs))
    outcome = handlers.run_once(rig.deps)
    assert outcome.applied == 0 and outcome.skipped == 1
    assert rig.outbox() == before


def test_a_crash_in_the_middle_of_a_page_leaves_nothing_and_the_retry_applies_everything_once(rig):
    handlers.run_once(rig.deps)
    rig.platform.certify(FIRM_A)
    rig.platform.move_out(FIRM_B)

    class Killed(BaseException):
        pass

    real_unit = rig.store.unit
    writes = {"n": 0}

    def dying_unit():
        cm = real_unit()

        class Wrapper:
            def __enter__(self):
                tx = cm.__enter__()
                real_enqueue = tx.enqueue

                def enqueue(message, at):
                    writes["n"] += 1
                    if writes["n"] == 2:  # after the first firm's record, before the cursor moves
                        raise Killed()
                    real_enqueue(message, at)

                tx.enqueue = enqueue
                return tx

            def __exit__(self, *exc):
                return cm.__exit__(*exc)

        return Wrapper()

    rig.store.unit = dying_unit
    with pytest.raises(Killed):
        handlers.run_once(rig.deps)
    rig.store.unit = real_unit
    assert len(rig.outbox()) == 16, "the page's transaction rolled back whole"
    assert rig.store.state().last_sequence == 16
    outcome = handlers.run_once(rig.deps)
    assert outcome.applied == 3 and outcome.published == 2
    assert len(rig.outbox()) == 18


def test_bad_changes_are_dead_lettered_with_the_field_and_other_firms_go_on(rig):
    handlers.run_once(rig.deps)
    bad_check = FIRM_A[:-1] + ("A" if FIRM_A[-1] != "A" else "B")
    unknown = complete("91310117MA1J0000")
    rig.platform.change("REGISTRATION", bad_check, {"in_district": False})
    rig.platform.change("REGISTRATION", unknown, {"in_district": False})
    rig.platform.append_raw(["not", "an", "object"], with_sequence=False)
    rig.platform.append_raw(
        {
            "credit_code": FIRM_A,
            "kind": "REVENUE",
            "effective_on": "2026-03-01",
            "data": {"year": 2025, "revenue_fen": "lots"},
        }
    )
    rig.platform.change("REGISTRATION", FIRM_A, {"in_district": False}, "2027-12-31")  # beyond a year ahead
    rig.platform.move_out(FIRM_B)  # good changes after the bad ones
    outcome = handlers.run_once(rig.deps)
    assert outcome.rejected_total == 5
    assert outcome.applied == 2
    letters = rig.dead_letters()
    errors = [letter.error for letter in letters]
    assert (
        errors[0].startswith("credit_code: not a valid unified social credit code") and "check character" in errors[0]
    )
    assert errors[1].startswith("credit_code: unknown firm " + unknown)
    assert errors[2].startswith("change: must be a JSON object")
    assert errors[3].startswith("data.revenue_fen: must be a whole number")
    assert errors[4].startswith("effective_on: 2027-12-31 is more than 366 days after today")
    assert all(letter.consumer == "registry-sync" for letter in letters)
    assert letters[0].source_offset == 17 and letters[0].key.decode() == bad_check
    assert b'"revenue_fen": "lots"' in letters[3].value
    latest = {r.credit_code: r for r in rig.facts_records()}
    assert not latest[FIRM_B].registered_in_district
    # the same bad changes read again make no second letter
    with rig.store.unit() as tx:
        state = tx.state()
        tx.set_state(type(state)("v1.16", 16, state.high_water, state.last_success_at, state.resyncs))
    handlers.run_once(rig.deps)
    assert len(rig.dead_letters()) == 5


def test_a_change_dated_ahead_is_held_until_its_day(rig):
    handlers.run_once(rig.deps)
    rig.platform.move_out(FIRM_A, "2026-04-01")
    outcome = handlers.run_once(rig.deps)
    assert outcome.held == 2 and outcome.published == 0
    assert rig.store.held_count() == 2
    rig.clock.set(dt.date(2026, 3, 31))
    assert handlers.run_once(rig.deps).released == 0
    rig.clock.set(dt.date(2026, 4, 1))
    outcome = handlers.run_once(rig.deps)
    assert outcome.released == 2 and outcome.published == 1
    assert rig.store.held_count() == 0
    latest = {r.credit_code: r for r in rig.facts_records()}
    assert not latest[FIRM_A].registered_in_district
    assert latest[FIRM_A].as_of == "2026-04-01"
    assert handlers.run_once(rig.deps).published == 0


def test_a_cursor_the_platform_forgot_means_a_resync_without_duplicates(rig):
    handlers.run_once(rig.deps)
    rig.platform.certify(FIRM_A)
    rig.platform.forget_history()  # the certification is only in the snapshot now
    before = len(rig.outbox())
    outcome = handlers.run_once(rig.deps)
    assert outcome.resynced
    assert outcome.published == 1, "only the firm whose facts changed"
    assert len(rig.outbox()) == before + 1
    latest = {r.credit_code: r for r in rig.facts_records()}
    assert latest[FIRM_A].recognitions[0].kind == "DCMM_LEVEL"
    assert rig.store.state().cursor == "v1.17"
    rig.platform.move_out(FIRM_B)
    assert handlers.run_once(rig.deps).applied == 2


def test_a_fresh_reader_after_compaction_starts_from_the_snapshot(rig):
    rig.platform.forget_history()
    outcome = handlers.run_once(rig.deps)
    assert outcome.resynced and outcome.published == 16


def test_500s_are_retried_then_the_page_is_taken(rig):
    rig.platform.fail(status=500, path="/changes", times=2)
    outcome = handlers.run_once(rig.deps)
    assert outcome.applied == 16
    assert sum(1 for r in rig.platform.requests if r.startswith("GET /changes")) >= 3


def test_the_platform_down_leaves_the_cursor_and_loses_nothing(rig):
    handlers.run_once(rig.deps)
    rig.platform.certify(FIRM_A)
    rig.platform.down()
    loop = SyncLoop(rig.deps, poll_interval_s=0.01, max_backoff_s=0.05)
    assert loop.round() is None and loop.round() is None
    assert loop.failures_in_a_row == 2 and "unavailable" in (loop.last_error or "")
    assert rig.store.state().last_sequence == 16
    rig.platform.up()
    assert loop.round().applied == 1
    assert loop.failures_in_a_row == 0 and loop.last_success is not None


def test_a_timeout_is_a_failed_round_not_a_hang():
    rig = make_rig(timeout=0.2, attempts=2)
    try:
        rig.platform.fail(delay_s=0.6, path="/changes", times=2)
        with pytest.raises(FeedUnavailable, match="timed out after 2 attempts"):
            handlers.run_once(rig.deps)
        assert rig.store.state().last_sequence == 0
        assert handlers.run_once(rig.deps).applied == 16
    finally:
        rig.close()


def test_an_answer_that_is_not_a_page_takes_nothing(rig):
    rig.platform.fail(garbage=True, path="/changes")
    with pytest.raises(FeedBroken, match="not JSON"):
        handlers.run_once(rig.deps)
    assert rig.outbox() == []


def test_a_wrong_token_is_refused_without_retrying(rig):
    feed = HttpFeed(rig.platform.url, "wrong", attempts=3, backoff=0.01)
    with pytest.raises(FeedUnavailable, match="HTTP 401"):
        feed.changes("", 10)
    assert len(rig.platform.requests) == 1
    assert "wrong" not in repr(feed) and TOKEN not in repr(rig.feed)


def test_the_registry_contract_is_served_over_the_same_state(rig):
    from subsidy.platform.registry import HttpRegistry

    registry = HttpRegistry(rig.platform.url)
    assert registry.firm(FIRM_B).firm.registered_in_district
    rig.platform.move_out(FIRM_B)
    assert not registry.firm(FIRM_B).firm.registered_in_district
    assert registry.firm(complete("91310117MA1J0000")) is None


def test_the_double_with_a_journal_goes_on_from_its_last_sequence_after_a_restart(tmp_path):
    from subsidy_dev.platform_fake import FakeDataPlatform

    journal = tmp_path / "feed.jsonl"
    first = FakeDataPlatform.from_file("demo/registry.json", journal=journal)
    first.certify(FIRM_A)
    again = FakeDataPlatform.from_file("demo/registry.json", journal=journal)
    assert again.high_water == first.high_water == 17
    assert again.move_out(FIRM_B) == [18, 19]
    assert again.state()[FIRM_A]["recognitions"][0]["kind"] == "DCMM_LEVEL"


def test_hours_of_outage_back_off_to_the_cap_and_the_metrics_say_how_stale(rig):
    from subsidy.services.registry_sync import metrics

    wall = {"now": 1_000_000.0}
    loop = SyncLoop(rig.deps, poll_interval_s=5, max_backoff_s=300, wall=lambda: wall["now"])
    assert loop.round().applied == 16
    assert metrics.LAST_SUCCESS._value.get() == 1_000_000.0
    assert metrics.LAG_CHANGES._value.get() == 0
    rig.platform.down()
    waits = []
    for _ in range(8):
        wall["now"] += 600
        assert loop.round() is None
        waits.append(loop.next_wait())
    assert waits == [10, 20, 40, 80, 160, 300, 300, 300]
    assert metrics.LAG_SECONDS._value.get() == 8 * 600
    rig.platform.up()
    rig.platform.certify(FIRM_A)
    wall["now"] += 600
    assert loop.round().applied == 1 and loop.next_wait() == 5
    assert metrics.LAG_SECONDS._value.get() == 0


def test_a_bad_snapshot_entry_is_dead_lettered_and_the_others_are_taken(rig):
    good = dict(rig.platform.state()[FIRM_A])
    rig.platform.snapshot_extra = [
        {**good, "credit_code": FIRM_A[:-1] + ("A" if FIRM_A[-1] != "A" else "B")},
        {**good, "credit_code": complete("91310117MA1J0001"), "as_of": "2027-01-01"},
        {**good, "credit_code": complete("91310117MA1J0002"), "feed_sequence": -1},
    ]
    rig.platform.forget_history()
    outcome = handlers.run_once(rig.deps)
    assert outcome.resynced and outcome.published == 16
    errors = [letter.error for letter in rig.dead_letters()]
    assert errors[0].startswith("firms[16].credit_code: not a valid unified social credit code")
    assert errors[1].startswith("firms[17].as_of: 2027-01-01 is after today")
    assert errors[2].startswith("firms[18].feed_sequence: must be a whole number >= 0")
