"""Values and errors of the intake core. No I/O here."""

from __future__ import annotations

import dataclasses

RECEIVED = "RECEIVED"
DECIDED = "DECIDED"
RECORDED = "RECORDED"
# The notice gate (issue 12; ADR 0013): under review, then the grant's state.
UNDER_REVIEW = "UNDER_REVIEW"
RESERVED = "RESERVED"
PAYABLE = "PAYABLE"
WITHDRAWN = "WITHDRAWN"
STATES = (RECEIVED, DECIDED, RECORDED, UNDER_REVIEW, RESERVED, PAYABLE, WITHDRAWN)


# ------------------------------------------------------------------ values

#: Between a firm's credit code and its own reference in a firm-scoped
#: application id (``firm_scoped_id``).
SCOPE_SEPARATOR = ":"


def firm_scoped_id(credit_code: str, reference: str) -> str:
    """The application id of an enterprise's own submission: its credit code,
    ``:`` and the reference it chose (``91310117MA1J12345X:SJ-2025-7100``).

    Ids chosen by callers are one namespace; an enterprise's are scoped by its
    firm, so that one firm can neither take (pre-claim) an id another firm
    will use nor learn, from ALREADY_EXISTS, which ids another firm holds
    (issue 17, item 3; ADR 0020)."""
    return credit_code + SCOPE_SEPARATOR + reference


def firm_reference(credit_code: str, application_id: str) -> str:
    """The reference an enterprise chose, from its firm-scoped id (the inverse
    of ``firm_scoped_id``): an id sent back from a receipt names the same
    application as the reference itself. Without the prefix: as is."""
    return application_id.removeprefix(credit_code + SCOPE_SEPARATOR)


@dataclasses.dataclass(frozen=True)
class DirectoryEntry:
    """One line of the annual 名录 (clause 5)."""

    credit_code: str
    name: str
    category: str  # PLATFORM or SOLUTION_PROVIDER
    cloud_services: bool


@dataclasses.dataclass(frozen=True)
class Receipt:
    application_id: str
    received_at: str  # RFC 3339 UTC
    payload_sha256: str
    trace_id: str


@dataclasses.dataclass(frozen=True)
class StoredApplication:
    """One row of the applications table."""

    application_id: str
    credit_code: str
    payload_sha256: str
    payload: bytes  # the accepted subsidy.v1.Application, registry facts included
    received_at: str
    trace_id: str
    state: str = RECEIVED
    decision: bytes | None = None
    decision_id: str | None = None
    decided_at: str | None = None
    grant: bytes | None = None  # subsidy.v1.Grant, from the payout events
    #: Every decision read for it (subsidy.v1.Decision), in the order read:
    #: computed, reviewed, re-decided at a policy version's adoption (issue 14).
    history: tuple[bytes, ...] = ()
    #: What the search across firms matches (issue 15; intake search.py):
    #: the registry's firm name as accepted and the claim's clause id.
    firm_name: str = ""
    clause: str = ""

    @property
    def receipt(self) -> Receipt:
        return Receipt(self.application_id, self.received_at, self.payload_sha256, self.trace_id)


# 免申即享 proposals (issue 13, item 4; proto/subsidy/v1/proposal.proto)
PROPOSED = "PROPOSED"
CONFIRMED = "CONFIRMED"
DECLINED = "DECLINED"
EXPIRED = "EXPIRED"
PROPOSAL_STATES = (PROPOSED, CONFIRMED, DECLINED, EXPIRED)


@dataclasses.dataclass(frozen=True)
class StoredProposal:
    """One row of intake_proposals: ``proposal`` is the subsidy.v1.Proposal as last published."""

    proposal_id: str
    credit_code: str
    clause: str
    fact_reference: str
    state: str
    proposal: bytes
    proposed_on: str
    expires_on: str
    created_at: str


@dataclasses.dataclass(frozen=True)
class Submitted:
    receipt: Receipt
    duplicate: bool


@dataclasses.dataclass(frozen=True)
class Page:
    applications: list[StoredApplication]
    next_page_token: str


# ------------------------------------------------------------------ errors


class IntakeError(Exception):
    """Base of what the use cases refuse with; the server maps each to a gRPC code."""


class InvalidApplication(IntakeError):
    """The request breaks the contract; ``field`` names the offending field."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class UnknownFirm(IntakeError):
    """The registry has no firm with this credit code."""


class AlreadyExists(IntakeError):
    """The application id is taken by a different payload."""


class NotFound(IntakeError):
    """No application with this id."""


class ProposalClosed(IntakeError):
    """The proposal was declined, has expired or is past its window: it can no longer be confirmed or declined."""


class DuplicateKey(Exception):
    """Store: the application id is already stored (raised by ``ApplicationStore.add``).
    ``existing`` is the stored row when the store read it in the same transaction."""

    def __init__(self, application_id: str, existing: StoredApplication | None = None):
        super().__init__(application_id)
        self.application_id = application_id
        self.existing = existing
