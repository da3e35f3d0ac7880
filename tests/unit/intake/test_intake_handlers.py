"""The intake core (subsidy/services/intake/handlers.py) over in-memory fakes."""

from __future__ import annotations

import pytest
from intake_fakes import (
    FIRM,
    PLATFORM_NO_CLOUD,
    PROVIDER,
    REGISTERED,
    UNKNOWN_FIRM,
    FakeRegistry,
    FakeStore,
    cloud_application,
    deps,
    rent_application,
)

from subsidy.contracts import cloudevents, topics
from subsidy.platform.registry import RegistryUnavailable
from subsidy.services.intake import handlers
from subsidy.services.intake.model import (
    AlreadyExists,
    InvalidApplication,
    NotFound,
    StoredApplication,
    UnknownFirm,
)
from subsidy.v1 import application_pb2


def accepted(store: FakeStore, application_id: str) -> application_pb2.Application:
    return application_pb2.Application.FromString(store.rows[application_id].payload)


def test_a_valid_application_is_stored_with_one_outbox_event_and_answered_with_a_receipt():
    d = deps()
    result = handlers.submit(d, rent_application())
    assert not result.duplicate
    r = result.receipt
    assert r.application_id == "T-0001"
    assert r.received_at == "2025-03-01T08:00:00.000000Z"
    assert len(r.payload_sha256) == 64 and len(r.trace_id) == 32
    assert list(d.store.rows) == ["T-0001"]
    assert len(d.store.outbox) == 1


def test_the_outbox_event_is_the_accepted_application_keyed_by_credit_code_with_cloudevents_headers():
    d = deps()
    receipt = handlers.submit(d, rent_application()).receipt
    event = d.store.outbox[0]
    assert event.topic == topics.APPLICATIONS.name
    assert event.key == FIRM.encode()
    assert event.value == d.store.rows["T-0001"].payload
    h = cloudevents.as_dict(event.headers)
    assert h["ce_id"] == "T-0001"
    assert h["ce_type"] == cloudevents.TYPE_APPLICATION_SUBMITTED
    assert h["ce_source"] == handlers.SOURCE
    assert h["content-type"] == "application/protobuf"
    assert cloudevents.trace_id_of(event.headers) == receipt.trace_id


def test_a_trace_id_given_by_the_caller_is_kept():
    d = deps()
    receipt = handlers.submit(d, rent_application(), trace_id="ab" * 16).receipt
    assert receipt.trace_id == "ab" * 16


def test_firm_facts_come_from_the_registry_and_only_the_credit_code_from_the_applicant():
    d = deps()
    claimed = rent_application(
        name="冒名公司", kinds=["PLATFORM"], registered_in_district=False, introduced_on="2024-01-01"
    )
    handlers.submit(d, claimed)
    firm = accepted(d.store, "T-0001").firm
    assert firm.credit_code == FIRM
    assert firm.name == REGISTERED.name
    assert list(firm.kinds) == ["INDUSTRIAL", "SME"]
    assert firm.registered_in_district and firm.tax_registered_in_district and firm.independent_legal_person
    assert firm.introduced_on == ""


def test_a_cloud_provider_listed_that_year_with_cloud_services_is_marked_listed_whatever_the_applicant_said():
    d = deps()
    handlers.submit(d, cloud_application(claimed=False))
    assert accepted(d.store, "T-C-01").cloud_adoption.provider_listed_in_directory is True


@pytest.mark.parametrize(
    "provider, year, why",
    [
        (UNKNOWN_FIRM, 2024, "not in the 名录"),
        (PLATFORM_NO_CLOUD, 2024, "listed without cloud services"),
        (PROVIDER, 2023, "a year without a 名录"),
    ],
)
def test_a_cloud_provider_not_listed_is_marked_not_listed_even_if_the_applicant_claims_it(provider, year, why):
    d = deps()
    handlers.submit(d, cloud_application(provider=provider, year=year, claimed=True))
    assert accepted(d.store, "T-C-01").cloud_adoption.provider_listed_in_directory is False, why


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda a: setattr(a.firm, "credit_code", "91310117MA1K7D2E8X"), "firm.credit_code"),
        (lambda a: a.ClearField("rent"), "claim"),
        (lambda a: setattr(a.rent, "lease_start", "2024-02-30"), "rent.lease_start"),
        (lambda a: setattr(a, "application_id", ""), "application_id"),
        (lambda a: a.firm.kinds.append("BANK"), "firm.kinds[0]"),
    ],
)
def test_invalid_input_is_refused_naming_the_field_and_nothing_is_stored(mutate, field):
    d = deps()
    message = rent_application()
    mutate(message)
    with pytest.raises(InvalidApplication) as caught:
        handlers.submit(d, message)
    assert caught.value.field == field
    assert d.store.rows == {} and d.store.outbox == []
    assert d.registry.calls == 0


def test_an_unknown_firm_is_refused_with_a_clear_message_and_nothing_is_stored():
    d = deps()
    with pytest.raises(UnknownFirm, match="not in the district's registry"):
        handlers.submit(d, rent_application(credit_code=UNKNOWN_FIRM))
    assert d.store.rows == {} and d.store.outbox == []


def test_when_the_registry_is_down_nothing_is_stored():
    d = deps(registry=FakeRegistry([REGISTERED], down=True))
    with pytest.raises(RegistryUnavailable):
        handlers.submit(d, rent_application())
    assert d.store.rows == {} and d.store.outbox == []


def test_the_same_payload_twice_answers_the_original_receipt_and_writes_nothing():
    d = deps()
    first = handlers.submit(d, rent_application())
    again = handlers.submit(d, rent_application())
    assert again.duplicate and again.receipt == first.receipt
    assert len(d.store.outbox) == 1


def test_a_repeated_submission_is_answered_even_while_the_registry_is_down():
    store = FakeStore()
    first = handlers.submit(deps(store=store), rent_application())
    again = handlers.submit(deps(store=store, registry=FakeRegistry(down=True)), rent_application())
    assert again.duplicate and again.receipt == first.receipt


def test_the_same_id_with_another_payload_is_refused_as_already_exists():
    d = deps()
    handlers.submit(d, rent_application())
    other = rent_application()
    other.rent.rent_paid_fen += 1
    with pytest.raises(AlreadyExists, match="different payload"):
        handlers.submit(d, other)
    assert len(d.store.outbox) == 1


def test_the_payload_hash_is_of_the_application_as_submitted_not_as_enriched():
    as_sent = rent_application(name="申请人自报名称")
    plain = rent_application()
    assert handlers.payload_sha256(handlers.validate(as_sent)) != handlers.payload_sha256(handlers.validate(plain))
    assert handlers.payload_sha256(handlers.validate(plain)) == handlers.payload_sha256(
        handlers.validate(rent_application())
    )


def test_a_concurrent_duplicate_that_loses_the_race_answers_with_the_winners_receipt():
    d = deps()
    winner_sha = handlers.payload_sha256(handlers.validate(rent_application()))
    d.store.race_with = StoredApplication("T-0001", FIRM, winner_sha, b"", "2025-03-01T07:59:59.000000Z", "f" * 32)
    result = handlers.submit(d, rent_application())
    assert result.duplicate and result.receipt.trace_id == "f" * 32
    assert d.store.outbox == []


def test_a_concurrent_submission_of_another_payload_under_the_same_id_is_already_exists():
    d = deps()
    d.store.race_with = StoredApplication("T-0001", FIRM, "0" * 64, b"", "2025-03-01T07:59:59.000000Z", "f" * 32)
    with pytest.raises(AlreadyExists):
        handlers.submit(d, rent_application())


def test_get_answers_the_stored_application_and_an_unknown_id_is_not_found():
    d = deps()
    handlers.submit(d, rent_application())
    assert handlers.get(d, "T-0001").application_id == "T-0001"
    with pytest.raises(NotFound):
        handlers.get(d, "T-9999")


def test_a_firms_applications_are_listed_newest_first_page_by_page():
    d = deps()
    for i in range(5):
        handlers.submit(d, rent_application(f"T-{i:04d}"))
    first = handlers.list_for_firm(d, FIRM, page_size=2)
    assert [a.application_id for a in first.applications] == ["T-0004", "T-0003"]
    second = handlers.list_for_firm(d, FIRM, page_size=2, page_token=first.next_page_token)
    assert [a.application_id for a in second.applications] == ["T-0002", "T-0001"]
    last = handlers.list_for_firm(d, FIRM, page_size=2, page_token=second.next_page_token)
    assert [a.application_id for a in last.applications] == ["T-0000"] and last.next_page_token == ""


def test_page_size_zero_means_twenty_and_more_than_a_hundred_means_a_hundred():
    d = deps()
    for i in range(25):
        handlers.submit(d, rent_application(f"T-{i:04d}"))
    assert len(handlers.list_for_firm(d, FIRM).applications) == 20
    assert len(handlers.list_for_firm(d, FIRM, page_size=1000).applications) == 25


@pytest.mark.parametrize(
    "code, size, token, field",
    [
        ("", 0, "", "credit_code"),
        ("91310117MA1K7D2E8X", 0, "", "credit_code"),
        (FIRM, -1, "", "page_size"),
        (FIRM, 0, "not-a-token", "page_token"),
    ],
)
def test_a_bad_listing_request_is_invalid_naming_the_field(code, size, token, field):
    with pytest.raises(InvalidApplication) as caught:
        handlers.list_for_firm(deps(), code, size, token)
    assert caught.value.field == field


def test_a_page_token_of_another_firm_is_refused():
    d = deps(registry=FakeRegistry([REGISTERED]))
    for i in range(3):
        handlers.submit(d, rent_application(f"T-{i:04d}"))
    token = handlers.list_for_firm(d, FIRM, page_size=1).next_page_token
    with pytest.raises(InvalidApplication):
        handlers.list_for_firm(d, PROVIDER, page_size=1, page_token=token)


def test_the_directory_of_a_year_and_year_zero_means_the_latest():
    d = deps()
    assert handlers.directory(d, 2024)[1][0].credit_code == PROVIDER
    assert handlers.directory(d, 0)[0] == 2025
    assert handlers.directory(d, 2019) == (2019, [])


def _decision(decision_id="T-0001@v1", **fields):
    from subsidy.v1 import decision_pb2

    return decision_pb2.Decision(
        decision_id=decision_id, application_id="T-0001", credit_code=FIRM, clause="1.rent", **fields
    ).SerializeToString()


def _reviewed(item="R-1", supersedes="T-0001@v1"):
    from subsidy.v1 import decision_pb2

    return _decision(
        f"{supersedes}/review:{item}",
        outcome="ELIGIBLE",
        review=decision_pb2.ReviewRecord(supersedes_decision_id=supersedes, item_id=item, result="APPROVED"),
    )


def test_a_decision_is_applied_once_and_a_replay_changes_nothing():
    d = deps()
    handlers.submit(d, rent_application())
    assert handlers.apply_decision(d, "T-0001", "T-0001@v1", _decision()) == "applied"
    before = d.store.rows["T-0001"]
    assert handlers.apply_decision(d, "T-0001", "T-0001@v1", _decision()) == "replayed"
    assert d.store.rows["T-0001"] == before and before.state == "DECIDED"
    assert handlers.apply_decision(d, "T-4040", "T-4040@v1", _decision()) == "unknown"


def test_a_decision_that_requires_review_shows_the_application_under_review_until_its_reviewed_decision():
    d = deps()
    handlers.submit(d, rent_application())
    held = _decision(outcome="NEEDS_REVIEW", review_required=True, review_reasons=["NEEDS_REVIEW_OUTCOME"])
    assert handlers.apply_decision(d, "T-0001", "T-0001@v1", held) == "applied"
    assert d.store.rows["T-0001"].state == "UNDER_REVIEW"
    reviewed = _reviewed()
    assert handlers.apply_decision(d, "T-0001", "T-0001@v1/review:R-1", reviewed) == "applied"
    row = d.store.rows["T-0001"]
    assert (row.state, row.decision_id, row.decision) == ("DECIDED", "T-0001@v1/review:R-1", reviewed)


def test_the_reviewed_decision_wins_whichever_arrives_first_and_only_one_is_shown():
    d = deps()
    handlers.submit(d, rent_application())
    reviewed = _reviewed()
    assert handlers.apply_decision(d, "T-0001", "T-0001@v1/review:R-1", reviewed) == "applied"
    held = _decision(review_required=True)
    # The computed decision, late (a replay, another partition): the reviewed one stays.
    assert handlers.apply_decision(d, "T-0001", "T-0001@v1", held) == "superseded"
    assert handlers.apply_decision(d, "T-0001", "T-0001@v2", _decision("T-0001@v2")) == "superseded"
    row = d.store.rows["T-0001"]
    assert (row.decision_id, row.state) == ("T-0001@v1/review:R-1", "DECIDED")
    # A later review replaces an earlier one.
    again = _reviewed("R-2")
    assert handlers.apply_decision(d, "T-0001", "T-0001@v1/review:R-2", again) == "applied"
    assert d.store.rows["T-0001"].decision == again


def test_the_grant_state_is_the_applications_state():
    from subsidy.v1 import payout_pb2

    d = deps()
    handlers.submit(d, rent_application())
    handlers.apply_decision(d, "T-0001", "T-0001@v1", _decision(outcome="ELIGIBLE"))

    def payout(event_id, **kind):
        return handlers.apply_payout_event(d, event_id, "T-0001", payout_pb2.PayoutEvent(event_id=event_id, **kind))

    recorded = payout_pb2.GrantRecorded(
        application_id="T-0001", decision_id="T-0001@v1", granted_fen=500, state=payout_pb2.GRANT_STATE_RESERVED
    )
    assert payout("grant:T-0001", grant_recorded=recorded) == "applied"
    assert d.store.rows["T-0001"].state == "RESERVED"
    payable = payout_pb2.GrantPayable(
        application_id="T-0001", decision_id="T-0001@v1", notice_id="N-1", payable_on="2025-03-14", granted_fen=500
    )
    assert payout("payable:T-0001@v1", grant_payable=payable) == "applied"
    assert payout("payable:T-0001@v1", grant_payable=payable) == "replayed"
    row = d.store.rows["T-0001"]
    grant = payout_pb2.Grant.FromString(row.grant)
    assert (row.state, grant.state, grant.payable_on, grant.notice_id) == (
        "PAYABLE",
        payout_pb2.GRANT_STATE_PAYABLE,
        "2025-03-14",
        "N-1",
    )


def test_a_withdrawn_grant_and_a_grant_of_0_show_as_such():
    from subsidy.services.intake.payouts import state_of
    from subsidy.v1 import payout_pb2

    decided = _decision(outcome="ELIGIBLE")

    def grant(**fields):
        return payout_pb2.Grant(application_id="T-0001", **fields).SerializeToString()

    assert state_of(decided, grant(state=payout_pb2.GRANT_STATE_WITHDRAWN, granted_fen=5)) == "WITHDRAWN"
    assert state_of(decided, grant(state=payout_pb2.GRANT_STATE_RESERVED, granted_fen=0)) == "RECORDED"
    assert state_of(decided, grant(granted_fen=5)) == "RECORDED"  # recorded before grants had states
    assert state_of(None, grant(state=payout_pb2.GRANT_STATE_PAYABLE)) == "RECEIVED"  # waits for its decision
    assert state_of(decided, None) == "DECIDED"
