"""Issue 17, item 3: an enterprise's application ids are scoped to its firm
(handlers.submit / handlers.get with ``firm_scope``; ADR 0020). One firm can
neither take an id another firm will use nor learn which ids it holds; the
portal's ids (its own numbering, trusted) are stored as given."""

from __future__ import annotations

import dataclasses

import pytest
from intake_fakes import FIRM, PROVIDER, REGISTERED, FakeRegistry, deps, rent_application

from subsidy.contracts import cloudevents
from subsidy.services.intake import handlers
from subsidy.services.intake.model import AlreadyExists, InvalidApplication, NotFound, firm_reference, firm_scoped_id
from subsidy.v1 import application_pb2

OTHER = dataclasses.replace(REGISTERED, credit_code=PROVIDER, name="上海松云工业互联网科技有限公司")


def two_firms():
    return deps(registry=FakeRegistry([REGISTERED, OTHER]))


def test_the_scoped_id_is_the_credit_code_a_colon_and_the_reference_and_back():
    assert firm_scoped_id(FIRM, "SJ-2025-7100") == f"{FIRM}:SJ-2025-7100"
    assert firm_reference(FIRM, f"{FIRM}:SJ-2025-7100") == "SJ-2025-7100"
    assert firm_reference(FIRM, "SJ-2025-7100") == "SJ-2025-7100"
    assert firm_reference(FIRM, f"{PROVIDER}:X") == f"{PROVIDER}:X"  # another firm's prefix is part of the reference


def test_an_enterprise_submission_is_stored_and_published_under_its_firm_scoped_id():
    d = two_firms()
    receipt = handlers.submit(d, rent_application("SJ-2025-7100"), firm_scope=FIRM).receipt
    scoped = f"{FIRM}:SJ-2025-7100"
    assert receipt.application_id == scoped
    assert list(d.store.rows) == [scoped]
    event = d.store.outbox[0]
    assert application_pb2.Application.FromString(event.value).application_id == scoped
    assert cloudevents.as_dict(event.headers)["ce_id"] == scoped
    # the receipt's hash is of the application as submitted: the id as the caller gave it
    assert receipt.payload_sha256 == handlers.payload_sha256(handlers.validate(rent_application("SJ-2025-7100")))


def test_two_firms_may_use_the_same_id_and_neither_blocks_or_sees_the_other():
    d = two_firms()
    mine = handlers.submit(d, rent_application("SJ-2025-7100"), firm_scope=FIRM)
    theirs = handlers.submit(d, rent_application("SJ-2025-7100", credit_code=PROVIDER), firm_scope=PROVIDER)
    assert not mine.duplicate and not theirs.duplicate
    assert {mine.receipt.application_id, theirs.receipt.application_id} == {
        f"{FIRM}:SJ-2025-7100",
        f"{PROVIDER}:SJ-2025-7100",
    }
    assert handlers.get(d, "SJ-2025-7100", firm_scope=FIRM).credit_code == FIRM
    assert handlers.get(d, "SJ-2025-7100", firm_scope=PROVIDER).credit_code == PROVIDER


def test_a_portal_id_of_another_firm_neither_blocks_an_enterprise_nor_is_revealed_to_it():
    d = two_firms()
    handlers.submit(d, rent_application("SJ-2025-7200", credit_code=PROVIDER))  # the portal, for the other firm
    other_payload = rent_application("SJ-2025-7200")
    other_payload.rent.rent_paid_fen += 1  # another payload: no ALREADY_EXISTS either way
    mine = handlers.submit(d, other_payload, firm_scope=FIRM)
    assert not mine.duplicate and mine.receipt.application_id == f"{FIRM}:SJ-2025-7200"
    assert handlers.get(d, "SJ-2025-7200", firm_scope=FIRM).credit_code == FIRM


def test_the_enterprise_repeating_its_submission_or_sending_its_receipts_id_back_is_a_duplicate():
    d = two_firms()
    first = handlers.submit(d, rent_application("SJ-2025-7100"), firm_scope=FIRM)
    again = handlers.submit(d, rent_application("SJ-2025-7100"), firm_scope=FIRM)
    by_receipt = handlers.submit(d, rent_application(first.receipt.application_id), firm_scope=FIRM)
    assert again.duplicate and by_receipt.duplicate
    assert again.receipt == by_receipt.receipt == first.receipt
    assert len(d.store.outbox) == 1
    assert handlers.get(d, first.receipt.application_id, firm_scope=FIRM).application_id == first.receipt.application_id


def test_another_payload_under_its_own_id_is_already_exists_naming_its_own_application():
    d = two_firms()
    handlers.submit(d, rent_application("SJ-2025-7100"), firm_scope=FIRM)
    other = rent_application("SJ-2025-7100")
    other.rent.rent_paid_fen += 1
    with pytest.raises(AlreadyExists, match=f"{FIRM}:SJ-2025-7100"):
        handlers.submit(d, other, firm_scope=FIRM)


def test_the_portals_application_of_the_same_firm_under_that_id_answers_the_enterprise():
    """The portal submitted it for the firm: the firm repeating it is a
    duplicate (not a second application), another payload ALREADY_EXISTS."""
    d = two_firms()
    portal = handlers.submit(d, rent_application("SJ-2025-7300"))
    repeat = handlers.submit(d, rent_application("SJ-2025-7300"), firm_scope=FIRM)
    assert repeat.duplicate and repeat.receipt == portal.receipt
    other = rent_application("SJ-2025-7300")
    other.rent.rent_paid_fen += 1
    with pytest.raises(AlreadyExists):
        handlers.submit(d, other, firm_scope=FIRM)
    assert list(d.store.rows) == ["SJ-2025-7300"]
    assert handlers.get(d, "SJ-2025-7300", firm_scope=FIRM).application_id == "SJ-2025-7300"


def test_the_receipts_id_sent_back_names_its_own_submission_even_beside_a_later_portal_one():
    d = two_firms()
    own = handlers.submit(d, rent_application("SJ-2025-7600"), firm_scope=FIRM)
    portal = handlers.submit(d, rent_application("SJ-2025-7600"))  # later, the portal under the bare id
    assert portal.receipt.application_id == "SJ-2025-7600" and not portal.duplicate
    again = handlers.submit(d, rent_application(own.receipt.application_id), firm_scope=FIRM)
    assert again.duplicate and again.receipt == own.receipt
    # the bare id now names the portal's, the full id the firm's own
    assert handlers.get(d, "SJ-2025-7600", firm_scope=FIRM).application_id == "SJ-2025-7600"
    assert handlers.get(d, own.receipt.application_id, firm_scope=FIRM).application_id == own.receipt.application_id


def test_get_of_another_firms_id_finds_nothing_of_the_callers_and_leaves_the_refusal_to_the_edge():
    d = two_firms()
    handlers.submit(d, rent_application("SJ-2025-7400", credit_code=PROVIDER), firm_scope=PROVIDER)
    with pytest.raises(NotFound):
        handlers.get(d, "SJ-2025-7400", firm_scope=FIRM)
    # the full id of another firm's application is found; the gRPC edge
    # answers it exactly as a free id (tests/security/test_existence_oracle.py)
    assert handlers.get(d, f"{PROVIDER}:SJ-2025-7400", firm_scope=FIRM).credit_code == PROVIDER


@pytest.mark.parametrize(
    "app_id, problem",
    [
        (f"{FIRM}:", "is required"),
        (f"{FIRM}:-x", "must start with a letter or a digit"),
        ("A" * 46, "at most 45"),
    ],
)
def test_an_id_with_no_room_or_no_reference_is_refused_naming_application_id_and_nothing_is_stored(app_id, problem):
    d = two_firms()
    with pytest.raises(InvalidApplication) as refused:
        handlers.submit(d, rent_application(app_id), firm_scope=FIRM)
    assert refused.value.field == "application_id" and problem in refused.value.problem
    assert d.store.rows == {} and d.store.outbox == []


def test_45_characters_fit_and_make_a_64_character_id():
    d = two_firms()
    receipt = handlers.submit(d, rent_application("A" * 45), firm_scope=FIRM).receipt
    assert len(receipt.application_id) == 64


def test_without_a_firm_scope_ids_are_stored_as_given():
    d = two_firms()
    assert handlers.submit(d, rent_application("SJ-2025-7500")).receipt.application_id == "SJ-2025-7500"
