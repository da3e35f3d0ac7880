"""Adoption of a policy version in eligibility (issue 14, item 4): the use
case behind PolicyService.AdoptVersion, over the core rules
(subsidy/core/adoption.py), the audit trail (adapters/adoption_log.py,
adapters/adoption_topic.py) and the open work (ports.OpenWork: intake's
applications, adapters/intake.py; ADR 0021).

Each call: first the applications not yet past their public notice and the
awards past it are found (``OpenWork.find``, on the caller's behalf); when
they cannot be, the call is refused (``OpenWorkUnavailable``) before anything
is worked out or recorded. Then the event is worked out and everything an
adoption gives (the router, the re-decisions of exactly the open
applications found, the report on exactly the noticed awards found, the
register entry) is computed; then the one event is appended to the audit
trail; only then does the state change and the handler start routing
applications to the adopted version. A refusal is appended as a ``refused``
event and changes nothing.

The ``adopted`` event carries the re-decisions (``redecisions``: each
``subsidy.v1.Decision`` in its protobuf JSON mapping, ``record_form``), so
what an adoption must publish is recorded with the adoption itself.
``owed`` gives what the trail still owes (decoded), ``record_published``
records the broker's acknowledgement (a ``redecisions_published`` event);
the publishing is the outbox's (outbox.py).

``overview`` is the read side (PolicyService.ListVersions): the register as
the trail makes it now (read to its end first, as before a step), each
version's pending proposal or adoption and the re-decisions it still owes,
and the trail's last events.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from subsidy.contracts import codec
from subsidy.contracts.codec import BadInput
from subsidy.core.adoption import (
    ADOPTED,
    REFUSED,
    Adoption,
    AdoptionRefused,
    AdoptionState,
    Owed,
    Proposal,
    ReportLine,
    Router,
    effective,
    published,
    redecide,
    register_entry,
    report,
    step,
)
from subsidy.core.dates import rfc3339
from subsidy.core.domain import Application, Decision
from subsidy.core.policy import Policy, PolicyError
from subsidy.core.versions import OpenApplication, Versions
from subsidy.services.eligibility.model import Caller, OpenWorkFound
from subsidy.services.eligibility.ports import OpenWork


def record_form(decision: Decision) -> dict[str, Any]:
    """A re-decision as the ``adopted`` event records it: the contract's
    ``subsidy.v1.Decision`` in its protobuf JSON mapping (every field, names
    as in the proto), readable in the audit trail."""
    return codec.message_to_json(codec.decision_to_proto(decision))


def from_record_form(recorded: dict[str, Any]) -> Decision:
    """A recorded re-decision back as the domain value; ``BadInput`` naming
    the field when it does not decode."""
    from google.protobuf import json_format

    from subsidy.v1 import decision_pb2

    try:
        message = json_format.ParseDict(recorded, decision_pb2.Decision())
    except json_format.ParseError as exc:
        raise BadInput("redecisions", str(exc)) from None
    return codec.decision_from_proto(message)


@dataclass(frozen=True)
class OwedRedecisions:
    """What an adoption recorded in the trail still owes the decisions topic."""

    owed: Owed
    decisions: tuple[Decision, ...]

    @property
    def version_id(self) -> str:
        return self.owed.version_id


class Log(Protocol):
    """The audit trail: a file per instance (adapters/adoption_log.py) or the
    shared topic (adapters/adoption_topic.py, which also has ``catch_up``:
    the events recorded since the last read)."""

    def read(self) -> list[dict[str, Any]]: ...

    def append(self, event: dict[str, Any]) -> None: ...

    # (optional) ``where``: where the trail is, for ListVersions, e.g. ``topic subsidy.policy.adoptions.v1``.


@dataclass(frozen=True)
class Outcome:
    event: dict[str, Any]
    redecisions: list[Decision] = field(default_factory=list)
    report: list[ReportLine] = field(default_factory=list)
    register_entry: str = ""
    #: What the step acted on: the open applications and noticed awards found.
    found: OpenWorkFound | None = None


#: How many of the trail's events ``overview`` returns at most (the last ones).
HISTORY_LIMIT = 500


@dataclass(frozen=True)
class VersionState:
    """One version of the register as this instance sees it now."""

    version_id: str
    #: As the trail makes it: ``adopted`` once an adoption is recorded there.
    status: str
    #: As policy/versions.yaml says.
    register_status: str
    name: str = ""
    #: ``<id>+<digest>`` of its files now (what a step must name); empty when ``problem``.
    policy_version: str = ""
    problem: str = ""
    base: str = ""
    effective_from: str = ""
    effective_until: str = ""
    proposal: Proposal | None = None
    #: Whether the proposal names the files as they are now (else the next step proposes anew).
    proposal_current: bool = False
    adoption: Adoption | None = None
    #: The ids of the re-decisions its adoption recorded and the broker has not acknowledged yet.
    owed_redecisions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Overview:
    versions: list[VersionState]
    #: The trail's last events (at most HISTORY_LIMIT), oldest first.
    events: list[dict[str, Any]]
    #: How many events came before ``events``.
    earlier: int
    read_at: str
    #: Where the trail is, e.g. ``topic subsidy.policy.adoptions.v1``.
    trail: str = ""


class AdoptionDesk:
    def __init__(
        self,
        versions: Versions,
        log: Log,
        clock: Callable[[], dt.datetime],
        on_adopted: Callable[[Router], None],
        policy: Policy | None = None,
        *,
        open_work: OpenWork,
    ):
        self.versions = versions
        self.log = log
        self.clock = clock
        self.on_adopted = on_adopted
        #: Where the applications an adoption re-decides, and the awards it reports on, are found.
        self.open_work = open_work
        #: What decides applications before any adoption (the root version).
        self.policy = policy
        self._lock = threading.RLock()
        # A file trail is read here; a shared one (catch_up) by the first
        # refresh(), which main() calls before the agent decides anything.
        self._shared = getattr(log, "catch_up", None) is not None
        #: Every event of the trail read (shared) or written (file) so far, in order: the history.
        self.trail: list[dict[str, Any]] = [] if self._shared else log.read()
        self.state = AdoptionState.replay(self.trail)
        #: Once a version is adopted: which version decides an application.
        self.router: Router | None = None
        if self.state.adopted:
            # At start: the adoptions recorded hold again, their files checked
            # (a file changed since its adoption refuses to start, naming it).
            self._route(Router(effective(versions, self.state).verify()))

    def refresh(self) -> int:
        """With a shared trail (adapters/adoption_topic.py): apply what was
        recorded since, by this instance or another (applying an event twice
        changes nothing); a newly adopted version routes applications from
        now on. Returns how many events were read. A file trail has nothing
        to catch up."""
        catch_up = getattr(self.log, "catch_up", None)
        if catch_up is None:
            return 0
        with self._lock:
            events = catch_up()
            if not events:
                return 0
            adopted_before = set(self.state.adopted)
            state = self.state
            for event in events:
                state = state.apply(event)
            if set(state.adopted) != adopted_before:
                # Files changed since the adoption refuse it here too (PolicyError naming the file).
                self._route(Router(effective(self.versions, state).verify()))
            self.state = state
            # This instance's own steps come back here too: the shared trail is the history.
            self.trail.extend(events)
            return len(events)

    def overview(self, limit: int = HISTORY_LIMIT) -> Overview:
        """Every version of the register as this instance sees it now: the
        shared trail read to its end first (``OSError`` when it cannot be),
        then the register as the recorded adoptions make it (``effective``,
        what a step checks against), each version loaded from its files
        (one that does not load is listed with the reason, naming the file),
        its pending proposal and its adoption; and the trail's last
        ``limit`` events."""
        with self._lock:
            self.refresh()
            state = self.state
            trail = list(self.trail)
        register = effective(self.versions, state)
        versions = []
        for version_id in register.ids():
            entry = register.entries[version_id]
            listed = self.versions.entries.get(version_id, entry)
            proposal = state.proposals.get(version_id)
            common = {
                "version_id": version_id,
                "status": entry.status,
                "register_status": listed.status,
                "proposal": proposal,
                "adoption": state.adopted.get(version_id),
                "owed_redecisions": state.owed[version_id].decision_ids if version_id in state.owed else (),
            }
            try:
                version = register.get(version_id)
            except PolicyError as exc:
                versions.append(VersionState(**common, problem=str(exc)))
                continue
            versions.append(
                VersionState(
                    **common,
                    name=version.name,
                    policy_version=version.policy.version,
                    base=version.base or "",
                    effective_from=version.effective_from.isoformat(),
                    effective_until=version.effective_until.isoformat() if version.effective_until else "",
                    proposal_current=proposal is not None and proposal.policy_version == version.policy.version,
                )
            )
        shown = trail[-limit:] if limit > 0 else []
        return Overview(
            versions,
            shown,
            len(trail) - len(shown),
            rfc3339(self.clock()),
            str(getattr(self.log, "where", "")),
        )

    def owed(self) -> list[OwedRedecisions]:
        """What the trail, as this instance has read it, still owes: per
        adopted version, the recorded re-decisions no ``redecisions_published``
        event acknowledged, decoded. ``BadInput`` (naming the version and the
        decision) for one that does not decode: never skipped."""
        with self._lock:
            state = self.state
        result = []
        for owed in state.owed.values():
            decisions = []
            for decision_id, recorded in owed.redecisions.items():
                try:
                    decisions.append(from_record_form(dict(recorded)))
                except BadInput as exc:
                    raise BadInput(f"adopted {owed.version_id}: redecisions[{decision_id}]", str(exc)) from None
            result.append(OwedRedecisions(owed, tuple(decisions)))
        return result

    def owed_count(self) -> int:
        with self._lock:
            return self.state.owed_count

    def record_published(self, version_id: str, decision_ids: list[str]) -> dict[str, Any] | None:
        """The broker acknowledged ``decision_ids`` of ``version_id``'s
        adoption: a ``redecisions_published`` event in the trail naming those
        the trail still owes (``OSError`` when it cannot be written: they stay
        owed and are published again, which is harmless). Returns the event,
        or None when none of them was owed any more (published meanwhile)."""
        with self._lock:
            owed = self.state.owed.get(version_id)
            if owed is None or not set(decision_ids) & set(owed.redecisions):
                return None
            event = published(owed, decision_ids, at=rfc3339(self.clock()))
            self.log.append(event)
            self._written(event)
            self.state = self.state.apply(event)
            return event

    def previous_policy(self, app: Application) -> Policy | None:
        """The policy that decided ``app`` before this adoption: the adopted
        version in force for it, or the root's."""
        return self.router.policy_for(app) if self.router is not None else self.policy

    def _route(self, router: Router) -> None:
        self.router = router
        self.on_adopted(router)

    def adopt(self, *, version_id: str, policy_version: str, reason: str, caller: Caller) -> Outcome:
        """One REVIEWER's step. Raises ``OpenWorkUnavailable`` (nothing worked
        out, nothing recorded) when the open work cannot be found,
        ``AdoptionRefused`` (the refusal recorded), or ``OSError`` when the
        trail cannot be written (nothing adopted)."""
        # Outside the lock: a slow source holds up no other step, nor the
        # trail's catching up. What it shows is what this step acts on.
        found = self.open_work.find(caller)
        with self._lock:
            # The second reviewer may call another instance than the first: the
            # shared trail is read to its end before the step is worked out.
            self.refresh()
            return self._adopt(
                version_id=version_id,
                policy_version=policy_version,
                subject=caller.subject,
                reason=reason,
                found=found,
            )

    def _adopt(
        self,
        *,
        version_id: str,
        policy_version: str,
        subject: str,
        reason: str,
        found: OpenWorkFound,
    ) -> Outcome:
        open_applications = found.open_applications
        noticed = [(a.application, a.granted_fen, a.policy_version) for a in found.noticed_awards]
        at = rfc3339(self.clock())
        try:
            event = step(
                self.state,
                self.versions,
                version_id=version_id,
                policy_version=policy_version,
                subject=subject,
                at=at,
                reason=reason,
                open_applications=[OpenApplication(a.application_id, a.claim.CLAUSE) for a in open_applications],
            )
            outcome = Outcome(event, found=found)
            new_state = self.state.apply(event)
            router = None
            if event["event"] == ADOPTED:
                try:
                    adopted_register = effective(self.versions, new_state)
                    router = Router(adopted_register.verify())
                    version = adopted_register.get(version_id)
                except PolicyError as exc:
                    raise AdoptionRefused("precondition", str(exc)) from None
                redecisions = [redecide(app, version, self.previous_policy(app)) for app in open_applications]
                # What the adoption must publish is part of the adoption's own
                # event: appended together, owed until the broker acknowledges it.
                event = {**event, "redecisions": [record_form(d) for d in redecisions]}
                new_state = self.state.apply(event)
                outcome = Outcome(
                    event,
                    redecisions,
                    report(noticed, version),
                    register_entry(event, self.versions),
                    found,
                )
        except AdoptionRefused as exc:
            refusal = {
                "event": REFUSED,
                "version_id": version_id,
                "policy_version": policy_version,
                "subject": subject,
                "at": at,
                "reason": reason,
                "kind": exc.kind,
                "why": str(exc),
            }
            self.log.append(refusal)
            self._written(refusal)
            raise
        self.log.append(event)
        self._written(event)
        self.state = new_state
        if router is not None:
            self._route(router)
        return outcome

    def _written(self, event: dict[str, Any]) -> None:
        """A file trail's history grows as it is written; a shared one's as it
        is read back (``refresh``), in the order every instance sees."""
        if not self._shared:
            self.trail.append(event)
