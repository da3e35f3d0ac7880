"""Adopting a policy version (issue 14, item 4; ``../shared/policy/workflow.md``
"Policy versions"): a four-eyes act, and what it does.

- **Four eyes.** A REVIEWER proposes a candidate (``step`` returns a
  ``proposed`` event); a second, different REVIEWER approves it (an
  ``adopted`` event). The same subject approving its own proposal is
  ``FourEyes``; every step names the exact files reviewed
  (``policy_version``: ``<id>+<digest>``), and a version whose files changed
  since is refused. The events are the audit trail; ``AdoptionState.replay``
  rebuilds the state from them.
- **Checks before anything is recorded** (``subsidy.core.versions.check_adoptable``):
  only a candidate; its files load; its dates do not overlap an adopted
  version for a clause (its base ends on its effective date); no open
  application claims a clause it retires. A refusal records nothing but the
  refusal: nothing is half-adopted.
- **What it touches.** ``Router`` decides each new application under the
  adopted version in force for its clause on its submission day.
  ``redecide`` gives the re-decision of an application not yet past its
  public notice (a new derived id, ``<application>@<new version>``,
  evaluated on its submission day or the version's effective date, whichever
  is later). ``report`` lists, for awards already past their notice (which
  keep their amounts), what the new version would have decided.
  ``register_entry`` is the text to record in ``policy/versions.yaml`` so the
  adoption holds on every instance and in the repository.
- **What an adoption owes, until the broker has it.** The ``adopted`` event
  carries the re-decisions to publish (``redecisions``, each in its recorded
  form with its ``decision_id``); a ``redecisions_published`` event names
  the decision ids the broker acknowledged. ``AdoptionState.owed`` is what
  the trail still owes, per version: the adoption and its publication are
  one fact of the trail, as an outbox makes a write and its event one, and
  whoever replays the trail (a restart, another instance) publishes what is
  owed (docs/policy-versions.md, "What the re-decisions do").

Pure: no I/O, no clock (``at`` is given).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from subsidy.core import eligibility
from subsidy.core.domain import Application, Decision
from subsidy.core.policy import Policy, PolicyError
from subsidy.core.versions import OpenApplication, Version, Versions, check_adoptable

PROPOSED = "proposed"
ADOPTED = "adopted"
REFUSED = "refused"
#: The broker acknowledged (some of) an adoption's re-decisions: ``decision_ids``.
REDECISIONS_PUBLISHED = "redecisions_published"
#: The subject of the events eligibility records itself (not a reviewer's step).
SYSTEM_SUBJECT = "eligibility"


class AdoptionRefused(ValueError):
    """The step is refused; nothing is adopted. ``kind``: ``invalid`` (the
    request), ``precondition`` (the version or the register), ``four_eyes``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class FourEyes(AdoptionRefused):
    def __init__(self, message: str):
        super().__init__("four_eyes", message)


@dataclass(frozen=True, slots=True)
class Proposal:
    version_id: str
    policy_version: str
    proposed_by: str
    proposed_at: str
    reason: str


@dataclass(frozen=True, slots=True)
class Adoption:
    version_id: str
    policy_version: str
    proposed_by: str
    proposed_at: str
    approved_by: str
    adopted_at: str
    reason: str
    effective_from: str
    base: str
    files: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Owed:
    """The re-decisions an adoption recorded that no ``redecisions_published``
    event has acknowledged yet: ``redecisions`` maps each decision id to its
    recorded form (as the ``adopted`` event holds it), in recorded order."""

    version_id: str
    policy_version: str
    adopted_at: str
    redecisions: Mapping[str, Mapping[str, Any]]

    @property
    def decision_ids(self) -> tuple[str, ...]:
        return tuple(self.redecisions)


@dataclass(frozen=True, slots=True)
class AdoptionState:
    proposals: Mapping[str, Proposal] = field(default_factory=dict)
    adopted: Mapping[str, Adoption] = field(default_factory=dict)
    #: Per version: the re-decisions its adoption still owes the decisions topic.
    owed: Mapping[str, Owed] = field(default_factory=dict)

    @property
    def owed_count(self) -> int:
        """How many re-decisions the trail still owes, every version together."""
        return sum(len(o.redecisions) for o in self.owed.values())

    @classmethod
    def replay(cls, events: Iterable[Mapping[str, Any]]) -> AdoptionState:
        state = cls()
        for event in events:
            state = state.apply(event)
        return state

    def apply(self, event: Mapping[str, Any]) -> AdoptionState:
        kind = event.get("event")
        if kind == PROPOSED:
            proposal = Proposal(
                event["version_id"], event["policy_version"], event["subject"], event["at"], event.get("reason", "")
            )
            return replace(self, proposals={**self.proposals, proposal.version_id: proposal})
        if kind == ADOPTED:
            adoption = Adoption(
                version_id=event["version_id"],
                policy_version=event["policy_version"],
                proposed_by=event["proposed_by"],
                proposed_at=event["proposed_at"],
                approved_by=event["subject"],
                adopted_at=event["at"],
                reason=event.get("reason", ""),
                effective_from=event["effective_from"],
                base=event.get("base", ""),
                files=dict(event["files"]),
            )
            proposals = {k: v for k, v in self.proposals.items() if k != adoption.version_id}
            return AdoptionState(proposals, {**self.adopted, adoption.version_id: adoption}, self._owe(adoption, event))
        if kind == REDECISIONS_PUBLISHED:
            return replace(self, owed=self._settle(event["version_id"], event.get("decision_ids") or ()))
        if kind == REFUSED:
            return self
        raise ValueError(f"event: unknown adoption event {kind!r}")

    def _owe(self, adoption: Adoption, event: Mapping[str, Any]) -> Mapping[str, Owed]:
        """The owed re-decisions with an ``adopted`` event's added. An event
        recorded before adopted events carried them owes nothing; the same
        adoption recorded twice (two approvals racing on two instances, or
        an instance reading back its own event) owes the union, by decision
        id: each is published (again) until acknowledged, and the ids are
        derived, so publishing one twice changes nothing."""
        recorded = event.get("redecisions") or ()
        if not recorded:
            return self.owed
        previous = self.owed.get(adoption.version_id)
        redecisions = dict(previous.redecisions) if previous is not None else {}
        for redecision in recorded:
            redecisions[str(redecision["decision_id"])] = redecision
        owed = Owed(adoption.version_id, adoption.policy_version, adoption.adopted_at, redecisions)
        return {**self.owed, adoption.version_id: owed}

    def _settle(self, version_id: str, decision_ids: Iterable[str]) -> Mapping[str, Owed]:
        """The owed re-decisions less those the broker acknowledged. Ids
        nothing owes (published twice, by two instances) are ignored."""
        previous = self.owed.get(version_id)
        if previous is None:
            return self.owed
        done = set(decision_ids)
        left = {k: v for k, v in previous.redecisions.items() if k not in done}
        if left:
            return {**self.owed, version_id: replace(previous, redecisions=left)}
        return {k: v for k, v in self.owed.items() if k != version_id}


def published(owed: Owed, decision_ids: Iterable[str], *, at: str) -> dict[str, Any]:
    """The event to record once the broker has acknowledged ``decision_ids``
    of ``owed`` (those it does not owe are left out): applied, the trail
    owes them no more."""
    ids = [i for i in decision_ids if i in owed.redecisions]
    return {
        "event": REDECISIONS_PUBLISHED,
        "version_id": owed.version_id,
        "policy_version": owed.policy_version,
        "subject": SYSTEM_SUBJECT,
        "at": at,
        "decision_ids": ids,
    }


def step(
    state: AdoptionState,
    versions: Versions,
    *,
    version_id: str,
    policy_version: str,
    subject: str,
    at: str,
    reason: str = "",
    open_applications: Sequence[OpenApplication] = (),
) -> dict[str, Any]:
    """One REVIEWER's call: the event to record (``proposed`` or
    ``adopted``), or ``AdoptionRefused`` with nothing to record but the
    refusal itself."""
    subject = subject.strip()
    if not subject:
        raise AdoptionRefused("invalid", "subject: adoption needs an identified reviewer (the token's subject)")
    if not version_id.strip():
        raise AdoptionRefused("invalid", "version_id: is required")
    if not policy_version.strip():
        raise AdoptionRefused("invalid", "policy_version: is required: the <id>+<digest> of the files you reviewed")
    if version_id in state.adopted:
        done = state.adopted[version_id]
        raise AdoptionRefused(
            "precondition",
            f"{version_id} was adopted at {done.adopted_at} (proposed by {done.proposed_by}, approved by "
            f"{done.approved_by})",
        )
    try:
        version = check_adoptable(effective(versions, state), version_id, open_applications)
    except PolicyError as exc:
        raise AdoptionRefused("precondition", str(exc)) from None
    if version.policy.version != policy_version:
        raise AdoptionRefused(
            "precondition",
            f"policy_version: {version_id}'s files are {version.policy.version}, not {policy_version}: "
            "they changed since you reviewed them; review the version as it is now",
        )
    pending = state.proposals.get(version_id)
    if pending is None or pending.policy_version != policy_version:
        # A first proposal, or a new one after the files changed (the old one lapses).
        return {
            "event": PROPOSED,
            "version_id": version_id,
            "policy_version": policy_version,
            "subject": subject,
            "at": at,
            "reason": reason,
        }
    if pending.proposed_by == subject:
        raise FourEyes(
            f"four-eyes: {subject!r} proposed the adoption of {version_id}; the approval must come from another reviewer"
        )
    return {
        "event": ADOPTED,
        "version_id": version_id,
        "policy_version": policy_version,
        "subject": subject,
        "at": at,
        "reason": reason,
        "proposed_by": pending.proposed_by,
        "proposed_at": pending.proposed_at,
        "effective_from": version.effective_from.isoformat(),
        "base": version.base or "",
        "files": dict(version.files),
    }


def effective(versions: Versions, state: AdoptionState) -> Versions:
    """The register as the adoptions recorded so far make it: each adopted
    version adopted, its base ended on its effective date. A recorded
    adoption whose files changed since is refused, naming the file."""
    if not state.adopted:
        return versions
    entries = dict(versions.entries)
    for adoption in state.adopted.values():
        entry = entries.get(adoption.version_id)
        if entry is None:
            raise PolicyError(versions.register_path, "versions", f"adopted version {adoption.version_id} is missing")
        entries[adoption.version_id] = replace(entry, status="adopted", recorded=dict(adoption.files))
        base = entries.get(adoption.base)
        if base is not None and base.effective_until is None:
            entries[adoption.base] = replace(base, effective_until=dt.date.fromisoformat(adoption.effective_from))
    return Versions(versions.root, versions.register_path, entries)


class Router:
    """Which adopted version decides an application: the one in force for its
    clause on its submission day; else (a retired clause, or a day before
    every version) the latest adopted version that started by then, or the
    earliest, whose decision says why (CLAUSE_RETIRED, POLICY_NOT_IN_FORCE)."""

    def __init__(self, adopted: Sequence[Version]):
        if not adopted:
            raise ValueError("no adopted version")
        self.adopted = sorted(adopted, key=lambda v: v.effective_from)

    def version_for(self, app: Application) -> Version:
        day = app.submitted_on
        for version in self.adopted:
            if version.covers(app.claim.CLAUSE) and version.in_force_on(day):
                return version
        started = [v for v in self.adopted if v.effective_from <= day]
        return started[-1] if started else self.adopted[0]

    def policy_for(self, app: Application) -> Policy:
        return self.version_for(app).policy


def redecide(app: Application, version: Version, previous: Policy | None = None) -> Decision:
    """The re-decision of an application not yet past its public notice under
    the newly adopted version: its own derived id (the version is part of
    it), evaluated on the submission day or the effective date, whichever is
    later (the version applies to it from adoption). With ``previous`` (the
    policy that decided it before the adoption), it names the decision it
    supersedes (``supersedes_decision_id``): the ledger then replaces the
    grant's amount instead of counting a duplicate."""
    decision = eligibility.evaluate(app, version.policy, max(app.submitted_on, version.effective_from))
    if previous is None:
        return decision
    superseded = eligibility.evaluate(app, previous).decision_id
    if superseded == decision.decision_id:
        return decision
    return replace(decision, supersedes_decision_id=superseded)


@dataclass(frozen=True, slots=True)
class ReportLine:
    """An award past its notice that keeps its amount, and what the new
    version would have decided (``difference_fen``: new ceiling − kept)."""

    application_id: str
    credit_code: str
    clause: str
    kept_fen: int
    kept_policy_version: str
    new_outcome: str
    new_max_award_fen: int

    @property
    def difference_fen(self) -> int:
        return self.new_max_award_fen - self.kept_fen


def report(awards: Iterable[tuple[Application, int, str]], version: Version) -> list[ReportLine]:
    """``awards``: (application, amount granted, the policy version that
    granted it) past their notice. Lists those the new version would have
    decided differently (another amount, or not ELIGIBLE)."""
    lines = []
    for app, kept_fen, kept_version in awards:
        decision = redecide(app, version)
        if decision.outcome == "ELIGIBLE" and decision.max_award_fen == kept_fen:
            continue
        lines.append(
            ReportLine(
                app.application_id,
                app.firm.credit_code,
                app.claim.CLAUSE,
                kept_fen,
                kept_version,
                decision.outcome,
                decision.max_award_fen,
            )
        )
    return lines


def register_entry(adoption: Mapping[str, Any], versions: Versions) -> str:
    """The YAML to record in policy/versions.yaml for an ``adopted`` event:
    the version's whole entry (replacing the candidate's: status, folder, the
    digests of its files) and the line that ends its base. Recorded and
    deployed, the adoption holds on every instance from its start, and the
    files can no longer change."""
    entry = versions.entries[adoption["version_id"]]
    folder = entry.folder.relative_to(versions.root.resolve()).as_posix() or "."
    files = "".join(f"        {name}: {digest}\n" for name, digest in sorted(adoption["files"].items()))
    text = (
        f"  {adoption['version_id']}:\n"
        "    status: adopted\n"
        f"    folder: {folder}\n"
        "    adopted:\n"
        f"      date: {adoption['at'][:10]}\n"
        f'      by: "proposed by {adoption["proposed_by"]}, approved by {adoption["subject"]}"\n'
        "      files:\n"
        f"{files}"
    )
    if adoption.get("base"):
        text += f"  # and in {adoption['base']}'s entry:\n  #   effective_until: {adoption['effective_from']}\n"
    return text
