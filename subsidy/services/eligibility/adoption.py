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
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from subsidy.core.adoption import (
    ADOPTED,
    REFUSED,
    AdoptionRefused,
    AdoptionState,
    ReportLine,
    Router,
    effective,
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


class Log(Protocol):
    """The audit trail: a file per instance (adapters/adoption_log.py) or the
    shared topic (adapters/adoption_topic.py, which also has ``catch_up``:
    the events recorded since the last read)."""

    def read(self) -> list[dict[str, Any]]: ...

    def append(self, event: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Outcome:
    event: dict[str, Any]
    redecisions: list[Decision] = field(default_factory=list)
    report: list[ReportLine] = field(default_factory=list)
    register_entry: str = ""
    #: What the step acted on: the open applications and noticed awards found.
    found: OpenWorkFound | None = None


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
        self.state = AdoptionState.replay(log.read() if getattr(log, "catch_up", None) is None else ())
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
            return len(events)

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
                outcome = Outcome(
                    event,
                    [redecide(app, version, self.previous_policy(app)) for app in open_applications],
                    report(noticed, version),
                    register_entry(event, self.versions),
                    found,
                )
        except AdoptionRefused as exc:
            self.log.append(
                {
                    "event": REFUSED,
                    "version_id": version_id,
                    "policy_version": policy_version,
                    "subject": subject,
                    "at": at,
                    "kind": exc.kind,
                    "why": str(exc),
                }
            )
            raise
        self.log.append(event)
        self.state = new_state
        if router is not None:
            self._route(router)
        return outcome
