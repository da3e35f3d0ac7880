"""The intake use cases: submit, get, list, directory. Plain functions over
the ports in ports.py; no gRPC, no SQL, no Kafka, no network.

The server (server.py) calls them in a worker thread and maps the errors of
model.py to gRPC status codes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from subsidy.contracts import cloudevents, codec, topics
from subsidy.contracts.codec import BadInput
from subsidy.core.clauses.cloud_adoption import CloudAdoptionClaim
from subsidy.core.dates import rfc3339
from subsidy.core.domain import Application
from subsidy.platform.logs import fields
from subsidy.platform.outbox import OutboxMessage
from subsidy.platform.registry import Registry, RegistryUnavailable
from subsidy.services.intake import payouts, search
from subsidy.services.intake.model import (
    SCOPE_SEPARATOR,
    AlreadyExists,
    DuplicateKey,
    InvalidApplication,
    NotFound,
    Page,
    StoredApplication,
    Submitted,
    UnknownFirm,
    firm_reference,
    firm_scoped_id,
)
from subsidy.services.intake.ports import ApplicationStore, Directory

log = logging.getLogger("subsidy.services.intake")

SOURCE = "/songjiang/subsidy/intake"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class Deps:
    """Everything the use cases need, wired by bootstrap.py (or a test)."""

    store: ApplicationStore
    registry: Registry
    directory: Directory
    clock: Callable[[], dt.datetime] = _utc_now
    new_trace_id: Callable[[], str] = cloudevents.new_trace_id


# ------------------------------------------------------------------ submit


def validate(message: Any) -> Application:
    """The single validator (subsidy.contracts.codec) over a subsidy.v1.Application."""
    try:
        return codec.application_from_proto(message)
    except BadInput as exc:
        raise InvalidApplication(exc.path, exc.problem) from None


def payload_sha256(application: Application) -> str:
    """SHA-256 of the application as submitted, in canonical form: the
    validated application as a protobuf message, serialized deterministically.
    snake_case or lowerCamelCase, JSON or protobuf, unknown fields: the same
    application always hashes the same."""
    canonical = codec.application_to_proto(application).SerializeToString(deterministic=True)
    return hashlib.sha256(canonical).hexdigest()


def enrich(application: Application, deps: Deps) -> Application:
    """Replace the firm facts with the registry's; set the cloud provider's
    名录 listing from the directory of the claim's service year."""
    code = application.firm.credit_code
    record = deps.registry.firm(code)
    if record is None:
        raise UnknownFirm(
            f"firm {code} is not in the district's registry (government data platform); "
            "a firm must be registered before it applies"
        )
    accepted = dataclasses.replace(application, firm=record.firm)
    claim = application.claim
    if isinstance(claim, CloudAdoptionClaim):
        listed = provider_listed(deps.directory, claim.service_year, claim.provider_credit_code)
        accepted = dataclasses.replace(accepted, claim=dataclasses.replace(claim, provider_listed_in_directory=listed))
    return accepted


def provider_listed(directory: Directory, year: int, provider_credit_code: str) -> bool:
    """Listed that year with cloud services. A year without a 名录: not listed."""
    if not provider_credit_code:
        return False
    return any(e.credit_code == provider_credit_code and e.cloud_services for e in directory.entries(year))


def _answer_existing(existing: StoredApplication, sha: str) -> Submitted:
    """A repeat of ``existing``: its receipt (logged as a duplicate) for the same payload, else ALREADY_EXISTS."""
    if existing.payload_sha256 == sha:
        log.info(
            "duplicate submission", extra=fields(application_id=existing.application_id, trace_id=existing.trace_id)
        )
        return Submitted(existing.receipt, duplicate=True)
    # Nothing of the stored payload (not even part of its hash). For an
    # enterprise the id is always its own firm's (firm-scoped ids).
    raise AlreadyExists(
        f"application {existing.application_id} was already submitted with a different payload; "
        "use a new application_id"
    )


def _existing_or_raise(deps: Deps, app_id: str, sha: str, error: Exception) -> Submitted:
    """Enrichment failed: a repeat of an application already accepted is
    still answered (with its receipt, or ALREADY_EXISTS), else ``error``."""
    existing = deps.store.get(app_id)
    if existing is None:
        raise error
    return _answer_existing(existing, sha)


def _own_reference(application: Application, firm: str) -> str:
    """The id an enterprise chose, without its firm's prefix if it sent a
    receipt's id back; it must itself be an identifier of the grammar."""
    try:
        reference = codec.parse_identifier(firm_reference(firm, application.application_id), "application_id")
    except BadInput as exc:
        raise InvalidApplication(exc.path, exc.problem) from None
    if not reference:
        raise InvalidApplication("application_id", "is required")
    return reference


def scope_to_firm(application: Application, firm: str) -> Application:
    """An enterprise's own submission under its firm-scoped id
    (model.firm_scoped_id). The reference it chose must leave room for the
    prefix: the id must still fit the identifier grammar downstream."""
    reference = application.application_id
    scoped = firm_scoped_id(firm, reference)
    if len(scoped) > codec.MAX_ID_CHARS:
        room = codec.MAX_ID_CHARS - len(firm) - len(SCOPE_SEPARATOR)
        raise InvalidApplication(
            "application_id",
            f"is {len(reference)} characters; an enterprise's own application id has at most {room} "
            f"(intake scopes it to the firm as '<credit code>{SCOPE_SEPARATOR}<application_id>')",
        )
    return dataclasses.replace(application, application_id=scoped)


def submit(deps: Deps, message: Any, trace_id: str | None = None, firm_scope: str = "") -> Submitted:
    """Validate, enrich from the registry, store with an outbox row (one
    transaction), answer with a receipt. Idempotent on (application_id, payload).

    ``firm_scope`` is the credit code an ENTERPRISE caller is bound to ("" for
    the portal, staff, 免申即享 and the dev stack without authentication): its
    application id names an application of its own firm only. That is the one
    the portal submitted for it under that id, if any, else its own
    submission under ``<credit code>:<id>`` (model.firm_scoped_id). The receipt
    carries the id the application has everywhere downstream; the payload
    hash is of the application as submitted, the caller's id as it gave it
    (without the prefix, if it sent a receipt's id back).

    A repeat is found by the insert itself (the store reads the stored row
    in the same transaction), not by a look-up before it: a repeat costs a
    registry look-up, a first submission one database round trip fewer."""
    application = validate(message)
    sent_back = False  # the id of its own receipt: its own submission, nothing else
    if firm_scope:
        reference = _own_reference(application, firm_scope)
        sent_back = reference != application.application_id
        application = dataclasses.replace(application, application_id=reference)
    sha = payload_sha256(application)
    if firm_scope:
        # The firm's own application under this id, submitted by the portal
        # (or before ids were scoped): a repeat answers as it always did. Another
        # firm's application under it is none of this caller's business.
        portal = None if sent_back else deps.store.get(application.application_id)
        if portal is not None and portal.credit_code == firm_scope:
            return _answer_existing(portal, sha)
        application = scope_to_firm(application, firm_scope)
    app_id = application.application_id
    try:
        accepted = enrich(application, deps)
    except (UnknownFirm, RegistryUnavailable) as exc:
        return _existing_or_raise(deps, app_id, sha, exc)
    trace_id = trace_id or deps.new_trace_id()
    now = deps.clock()
    payload = codec.application_to_proto(accepted).SerializeToString(deterministic=True)
    row = StoredApplication(
        application_id=app_id,
        credit_code=accepted.firm.credit_code,
        payload_sha256=sha,
        payload=payload,
        received_at=rfc3339(now),
        trace_id=trace_id,
        firm_name=accepted.firm.name,
        clause=accepted.claim.CLAUSE,
    )
    outbox = OutboxMessage(
        topic=topics.APPLICATIONS.name,
        key=accepted.firm.credit_code.encode(),
        value=payload,
        headers=tuple(
            cloudevents.headers(
                event_id=app_id,
                event_type=cloudevents.TYPE_APPLICATION_SUBMITTED,
                source=SOURCE,
                trace_id=trace_id,
                time=now,
            )
        ),
    )
    try:
        deps.store.add(row, outbox)
    except DuplicateKey as duplicate:
        # Submitted before (or by a concurrent call that won): answer as it was.
        existing = duplicate.existing or deps.store.get(app_id)
        if existing is None:  # pragma: no cover - the winner's row is committed
            raise
        return _answer_existing(existing, sha)
    if log.isEnabledFor(logging.INFO):
        log.info(
            "application accepted",
            extra=fields(
                application_id=app_id,
                credit_code=row.credit_code,
                clause=accepted.claim.CLAUSE,
                trace_id=trace_id,
            ),
        )
    return Submitted(row.receipt, duplicate=False)


# ------------------------------------------------------------------ queries


def get(deps: Deps, application_id: str, firm_scope: str = "") -> StoredApplication:
    """The application stored under ``application_id``. For an ENTERPRISE
    caller (``firm_scope``, its credit code) an id names its own firm's
    application: the one stored under that id if it is the firm's (the
    portal's submission, or the full id of its receipt), else its own
    submission under that reference (model.firm_scoped_id). Whether the
    caller may see what is found is the gRPC edge's check (firm_allowed)."""
    if not application_id:
        raise InvalidApplication("application_id", "is required")
    found = deps.store.get(application_id)
    if firm_scope and (found is None or found.credit_code != firm_scope):
        own = deps.store.get(firm_scoped_id(firm_scope, application_id))
        if own is not None:
            return own
    if found is None:
        raise not_found(application_id)
    return found


def not_found(application_id: str) -> NotFound:
    """The one answer for an id that is free or another firm's (no existence oracle)."""
    return NotFound(f"no application with id {application_id!r}")


def list_for_firm(deps: Deps, code: str, page_size: int = 0, page_token: str = "") -> Page:
    """One firm's applications, newest first (by time received)."""
    if not code:
        raise InvalidApplication("credit_code", "is required")
    return list_applications(deps, search.application_filters(code), page_size, page_token)


def list_applications(deps: Deps, filters: search.Filters, page_size: int = 0, page_token: str = "") -> Page:
    """The applications matching ``filters`` (search.py, checked by the
    caller with search.application_filters), across firms when no credit
    code is given, newest first (by time received)."""
    size = search.page_size(page_size)
    after = search.decode_token(filters, page_token)
    rows = deps.store.search(filters, size + 1, after)
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, search.encode_token(filters, rows[-1].received_at, rows[-1].application_id) if more else "")


def directory(deps: Deps, year: int) -> tuple[int, list]:
    """The 名录 of ``year``; year 0 means the latest year there is."""
    if year < 0:
        raise InvalidApplication("year", "must not be negative")
    if year == 0:
        years = deps.directory.years()
        year = max(years) if years else 0
    return year, deps.directory.entries(year) if year else []


# ------------------------------------------------------------------ projection


def apply_decision(deps: Deps, application_id: str, decision_id: str, decision: bytes) -> str:
    """'applied', 'replayed', 'superseded' (a computed decision after the
    reviewed one that superseded it: the reviewed one stays) or 'unknown'
    (see ApplicationStore.apply_decision; the rules: payouts.replaces,
    payouts.state_of)."""
    return deps.store.apply_decision(
        application_id, decision_id, decision, rfc3339(deps.clock()), payouts.replaces, payouts.state_of
    )


def apply_payout_event(deps: Deps, event_id: str, application_id: str, event: Any) -> str:
    """One payout event folded into the application's grant, its state
    following (payouts.fold_bytes, payouts.state_of): 'applied', 'replayed' or 'unknown'."""
    return deps.store.apply_payout_event(
        event_id,
        application_id,
        lambda grant: payouts.fold_bytes(grant, event),
        rfc3339(deps.clock()),
        payouts.state_of,
    )


__all__ = [
    "Deps",
    "apply_decision",
    "apply_payout_event",
    "directory",
    "enrich",
    "get",
    "list_for_firm",
    "payload_sha256",
    "provider_listed",
    "submit",
    "validate",
]
