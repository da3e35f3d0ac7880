"""Listings across firms (issue 15): the filters of ListApplications and
ListProposals checked at the edge (subsidy/services/intake/search.py), the
use cases over the in-memory store, and page tokens bound to their filters."""

from __future__ import annotations

import pytest
from intake_fakes import FIRM, PROVIDER, REGISTERED, FakeRegistry, deps, rent_application

from subsidy.core.domain import Firm
from subsidy.services.intake import handlers, proposals, search
from subsidy.services.intake.model import InvalidApplication, StoredProposal
from subsidy.v1 import application_pb2

OTHER = Firm(
    credit_code=PROVIDER,
    name="ACME 上海松云_工业%互联网",
    kinds=("SME",),
    registered_in_district=True,
    tax_registered_in_district=True,
    independent_legal_person=True,
)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"code": "91310117MA1K7D2E8X"}, "credit_code"),
        ({"firm_name": "名" * 101}, "firm_name"),
        ({"firm_name": "上海\x00"}, "firm_name"),
        ({"firm_name": "上海\u202e"}, "firm_name"),  # a format character (bidi override)
        ({"clause": "1"}, "clause"),
        ({"clause": "16"}, "clause"),
        ({"state": "PAID"}, "state"),
    ],
)
def test_each_bad_application_filter_is_refused_naming_its_field(kwargs, field):
    with pytest.raises(InvalidApplication) as caught:
        search.application_filters(**kwargs)
    assert caught.value.field == field


def test_good_filters_are_kept_the_name_stripped_and_empty_means_any():
    assert search.application_filters() == search.Filters()
    f = search.application_filters(FIRM, "  松云 ", "10.cloud", "PAYABLE")
    assert f == search.Filters(FIRM, "松云", "10.cloud", "PAYABLE")
    assert search.application_filters(firm_name="名" * 100).firm_name == "名" * 100
    with pytest.raises(InvalidApplication) as caught:
        search.proposal_filters(state="RECEIVED")
    assert caught.value.field == "state"
    assert search.proposal_filters(FIRM, "EXPIRED") == search.Filters(credit_code=FIRM, state="EXPIRED")


def test_like_wildcards_and_the_escape_character_are_escaped():
    assert search.like_pattern("a%b_c\\d") == "%a\\%b\\_c\\\\d%"


def two_firms():
    d = deps(registry=FakeRegistry([REGISTERED, OTHER]))
    handlers.submit(d, rent_application("T-A1"))
    handlers.submit(d, rent_application("T-B1", credit_code=PROVIDER))
    handlers.submit(d, rent_application("T-A2"))
    return d


def ids(page):
    return [a.application_id for a in page.applications]


def test_a_submission_stores_the_registry_name_and_the_clause_for_the_search():
    d = two_firms()
    row = d.store.rows["T-B1"]
    assert (row.firm_name, row.clause) == ("ACME 上海松云_工业%互联网", "1.rent")


def test_staff_list_every_firm_and_search_by_part_of_the_name_case_insensitively():
    d = two_firms()
    assert ids(handlers.list_applications(d, search.application_filters())) == ["T-A2", "T-B1", "T-A1"]
    assert ids(handlers.list_applications(d, search.application_filters(firm_name="acme"))) == ["T-B1"]
    assert ids(handlers.list_applications(d, search.application_filters(firm_name="泗泾"))) == ["T-A2", "T-A1"]
    assert ids(handlers.list_applications(d, search.application_filters(FIRM, firm_name="acme"))) == []
    assert ids(handlers.list_applications(d, search.application_filters(clause="4"))) == []
    assert ids(handlers.list_applications(d, search.application_filters(clause="1.rent", state="RECEIVED"))) == [
        "T-A2",
        "T-B1",
        "T-A1",
    ]


def test_a_page_token_continues_its_own_search_and_is_refused_for_another():
    d = two_firms()
    every = search.application_filters()
    first = handlers.list_applications(d, every, page_size=2)
    assert ids(first) == ["T-A2", "T-B1"] and first.next_page_token
    rest = handlers.list_applications(d, every, page_size=2, page_token=first.next_page_token)
    assert ids(rest) == ["T-A1"] and rest.next_page_token == ""
    for other in (search.application_filters(firm_name="泗泾"), search.application_filters(FIRM)):
        with pytest.raises(InvalidApplication) as caught:
            handlers.list_applications(d, other, page_size=2, page_token=first.next_page_token)
        assert caught.value.field == "page_token"
    with pytest.raises(InvalidApplication) as caught:
        handlers.list_applications(d, every, page_token="bm90LWpzb24")
    assert caught.value.field == "page_token"


def test_the_search_columns_of_a_stored_payload_and_of_one_that_is_not():
    payload = rent_application("T-1", name="甲公司").SerializeToString()
    assert search.search_columns(payload) == ("甲公司", "甲公司", "1.rent")
    assert search.search_columns(application_pb2.Application(application_id="x").SerializeToString()) == ("", "", "")
    assert search.search_columns(b"\xff\xff\xff") == ("", "", "")


class ProposalRows:
    def __init__(self, rows):
        self.rows = rows
        self.asked = []

    def search_proposals(self, filters, limit, after=None):
        self.asked.append((filters, limit, after))
        rows = sorted(
            (
                r
                for r in self.rows
                if (not filters.credit_code or r.credit_code == filters.credit_code)
                and (not filters.state or r.state == filters.state)
            ),
            key=lambda r: (r.created_at, r.proposal_id),
            reverse=True,
        )
        if after is not None:
            rows = [r for r in rows if (r.created_at, r.proposal_id) < after]
        return rows[:limit]


def proposal(pid, code, state, at):
    return StoredProposal(pid, code, "9", "F:1", state, b"", "2026-11-01", "2026-12-01", at)


def test_proposals_of_every_firm_by_state_paged_with_tokens_bound_to_the_filters():
    store = ProposalRows(
        [
            proposal("P-1", FIRM, "PROPOSED", "2026-11-01T00:00:01Z"),
            proposal("P-2", PROVIDER, "PROPOSED", "2026-11-01T00:00:02Z"),
            proposal("P-3", PROVIDER, "DECLINED", "2026-11-01T00:00:03Z"),
        ]
    )
    d = proposals.ProposalDeps(intake=None, store=store, policy=None, rules=None, workflow=None, clock=None)
    rows, token = proposals.list_proposals(d, search.proposal_filters(state="PROPOSED"), page_size=1)
    assert [r.proposal_id for r in rows] == ["P-2"] and token
    rows, end = proposals.list_proposals(d, search.proposal_filters(state="PROPOSED"), 1, token)
    assert [r.proposal_id for r in rows] == ["P-1"] and end == ""
    with pytest.raises(InvalidApplication) as caught:
        proposals.list_proposals(d, search.proposal_filters(), 1, token)
    assert caught.value.field == "page_token"
    rows, _ = proposals.list_proposals(d, search.proposal_filters(PROVIDER))
    assert [r.proposal_id for r in rows] == ["P-3", "P-2"]
    with pytest.raises(InvalidApplication) as caught:
        proposals.list_for_firm(d, "")
    assert caught.value.field == "credit_code"


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self):
        self.code = None

    def invocation_metadata(self):
        return ()

    async def abort(self, code, message, trailing_metadata=()):
        self.code = code
        raise _Aborted(message)


def test_the_servicer_itself_keeps_an_enterprise_to_its_own_firm():
    """Behind the access interceptor's check (access.yaml), the servicer holds
    the same line: an ENTERPRISE principal listing with no credit code (every
    firm) or another firm's is PERMISSION_DENIED and nothing is read."""
    import asyncio

    import grpc

    from subsidy.platform.security.identity import Principal, acting_as
    from subsidy.services.intake.adapters.grpc import IntakeServicer
    from subsidy.v1 import intake_pb2

    d = two_firms()
    servicer = IntakeServicer(d)
    firm = Principal("ENTERPRISE", FIRM, "firm-user", "jwt")

    def call(request, principal):
        context = _Context()

        async def run():
            with acting_as(principal):
                return await servicer.ListApplications(request, context)

        try:
            return asyncio.run(run()), context.code
        except _Aborted:
            return None, context.code

    for request in (
        intake_pb2.ListApplicationsRequest(firm_name="ACME"),
        intake_pb2.ListApplicationsRequest(credit_code=PROVIDER),
    ):
        assert call(request, firm) == (None, grpc.StatusCode.PERMISSION_DENIED)
    own, _ = call(intake_pb2.ListApplicationsRequest(credit_code=FIRM, firm_name="ACME"), firm)
    assert list(own.applications) == []  # the other firm's name inside its own firm: nothing
    every, _ = call(intake_pb2.ListApplicationsRequest(firm_name="acme"), Principal("REVIEWER", "", "rv", "jwt"))
    assert [a.application.application_id for a in every.applications] == ["T-B1"]
    bad, code = call(intake_pb2.ListApplicationsRequest(state=99), Principal("REVIEWER", "", "rv", "jwt"))
    assert (bad, code) == (None, grpc.StatusCode.INVALID_ARGUMENT)
