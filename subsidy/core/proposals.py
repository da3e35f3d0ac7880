"""免申即享 proposals, pure: which claims a firm's facts from the data platform
make proposable (``policy/proposals.yaml``, loaded by ``load_proposals``), and
each candidate evaluated like any application (subsidy/core/eligibility.py).
The reading is ../shared/policy/workflow.md "免申即享".

- ``candidates(facts, rules, on)``: one ``ProposedClaim`` per fact a
  proposable clause turns into a claim (a recognition at a listed level, a
  year's revenue, a year's identifier usage), each with the fact's
  reference and the derived ``proposal_id`` (credit code, clause and the
  reference: the same fact reported twice is the same proposal);
- ``proposals(facts, rules, policy, on)``: the candidates whose evaluation
  is ELIGIBLE with an amount above 0, with their decisions;
- ``same_claim``: whether an application's claim is the proposal's claim (the
  ledger's scope of the two, as the eligibility core computes it), so a firm
  that already applied gets no proposal for it.

No I/O beyond reading the policy file; the clock is the caller's (``on``).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from subsidy.core import clauses as clause_registry
from subsidy.core.clauses.identifier_usage import IdentifierUsageClaim
from subsidy.core.clauses.revenue_milestone import RevenueMilestoneClaim
from subsidy.core.domain import ELIGIBLE, Application, Claim, Decision, Firm
from subsidy.core.eligibility import evaluate
from subsidy.core.policy import DEFAULT_POLICY_DIR, Policy

FILE_NAME = "proposals.yaml"
SOURCES = ("recognition", "revenues", "identifier_usage")
#: The recognition kinds of proto/subsidy/v1/firm_facts.proto.
RECOGNITION_KINDS = (
    "PLATFORM_RATING",
    "LIANGHUA_GRADE",
    "DCMM_LEVEL",
    "SCENARIO",
    "WORKSHOP",
    "FACTORY",
    "PARK_RATING",
    "IDENTIFIER_NODE",
    "INNOVATION_CARRIER",
)


class ProposalRulesError(ValueError):
    """A malformed proposals file; the message names the file and the field."""

    def __init__(self, source: str, where: str, problem: str):
        super().__init__(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")


# ------------------------------------------------------------------------------ the facts


@dataclass(frozen=True, slots=True)
class Recognition:
    kind: str
    level: str
    reference: str
    awarded_on: dt.date | None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the proposals read of a firm's FirmFacts (the caller converts)."""

    firm: Firm
    recognitions: tuple[Recognition, ...] = ()
    revenues: Mapping[int, int] = dataclasses.field(default_factory=dict)  # year -> fen
    identifier_usage: Mapping[int, tuple[int, int]] = dataclasses.field(default_factory=dict)  # year -> (reg, res)


# ------------------------------------------------------------------------------ the rules


@dataclass(frozen=True, slots=True)
class Dated:
    applies_from: dt.date
    value: bool
    cites: str


@dataclass(frozen=True, slots=True)
class ProposalRule:
    clause: str
    claim_key: str
    source: str
    kinds: tuple[str, ...] = ()
    reference_field: str = ""
    by_level: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    proposable: tuple[Dated, ...] = ()

    def proposable_on(self, day: dt.date) -> bool:
        index = bisect.bisect_right([d.applies_from for d in self.proposable], day) - 1
        return index >= 0 and self.proposable[index].value


@dataclass(frozen=True, slots=True)
class ProposalRules:
    rules: Mapping[str, ProposalRule]  # by clause
    source: str


def default_path() -> Path:
    return Path(os.environ.get("SUBSIDY_POLICY_DIR") or DEFAULT_POLICY_DIR) / FILE_NAME


def load_proposals(path: Path | str | None = None) -> ProposalRules:
    """Load and validate ``policy/proposals.yaml``; ProposalRulesError on the first fault."""
    path = Path(path) if path else default_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProposalRulesError(str(path), "", "file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ProposalRulesError(str(path), "", f"cannot read: {exc}".replace("\n", " ")) from None
    return parse_proposals(data, str(path))


_RULE_FIELDS = {"claim", "source", "kind", "reference_field", "by_level", "proposable"}


def parse_proposals(data: object, source: str) -> ProposalRules:
    if not isinstance(data, dict) or set(data) != {"proposals"}:
        raise ProposalRulesError(source, "(top level)", "must be a mapping with the one key 'proposals'")
    entries = data["proposals"]
    if not isinstance(entries, dict):
        raise ProposalRulesError(source, "proposals", "must be a mapping of clause ids")
    rules: dict[str, ProposalRule] = {}
    for clause, spec in entries.items():
        where = f"proposals.{clause}"
        rules[str(clause)] = _rule(source, where, str(clause), spec)
    return ProposalRules(rules, source)


def _rule(source: str, where: str, clause: str, spec: object) -> ProposalRule:
    if clause not in clause_registry.IDS:
        raise ProposalRulesError(source, where, f"unknown clause (known: {', '.join(clause_registry.IDS)})")
    if not isinstance(spec, dict):
        raise ProposalRulesError(source, where, "must be a mapping")
    extra = sorted(set(spec) - _RULE_FIELDS)
    if extra:
        raise ProposalRulesError(source, f"{where}.{extra[0]}", "unknown field")
    key = spec.get("claim")
    claim_type = clause_registry.CLAIM_BY_KEY.get(key) if isinstance(key, str) else None
    if claim_type is None or not isinstance(key, str):
        raise ProposalRulesError(source, f"{where}.claim", f"unknown claim {key!r}")
    if clause != claim_type.CLAUSE:
        raise ProposalRulesError(
            source, f"{where}.claim", f"{key} is clause {claim_type.CLAUSE}'s claim, not {clause}'s"
        )
    kind = spec.get("source")
    if kind not in SOURCES:
        raise ProposalRulesError(source, f"{where}.source", f"must be one of {', '.join(SOURCES)}, got {kind!r}")
    expected_key = {"revenues": "revenue_milestone", "identifier_usage": "identifier_usage"}.get(kind)
    if expected_key is not None and key != expected_key:
        raise ProposalRulesError(source, f"{where}.claim", f"source {kind} makes {expected_key} claims only")
    rule = ProposalRule(clause, key, kind, proposable=_history(source, f"{where}.proposable", spec.get("proposable")))
    if kind != "recognition":
        for name in ("kind", "reference_field", "by_level"):
            if name in spec:
                raise ProposalRulesError(source, f"{where}.{name}", f"only for source recognition, not {kind}")
        return rule
    raw_kinds = spec.get("kind")
    kinds = tuple(raw_kinds) if isinstance(raw_kinds, list) else (raw_kinds,)
    for k in kinds:
        if k not in RECOGNITION_KINDS:
            raise ProposalRulesError(
                source, f"{where}.kind", f"must be one of {', '.join(RECOGNITION_KINDS)}, got {k!r}"
            )
    names = {f.name for f in dataclasses.fields(claim_type)}
    reference_field = spec.get("reference_field")
    if reference_field not in names:
        raise ProposalRulesError(source, f"{where}.reference_field", f"{reference_field!r} is not a field of {key}")
    by_level = spec.get("by_level")
    if not isinstance(by_level, dict) or not by_level:
        raise ProposalRulesError(source, f"{where}.by_level", "must be a non-empty mapping of level to claim fields")
    levels: dict[str, Mapping[str, Any]] = {}
    for level, fields in by_level.items():
        at = f"{where}.by_level.{level}"
        if not isinstance(fields, dict):
            raise ProposalRulesError(source, at, "must be a mapping of claim fields")
        for name in fields:
            if name not in names or name == reference_field:
                raise ProposalRulesError(source, f"{at}.{name}", f"not a field of {key} the level may set")
        try:
            claim_type(**{reference_field: "probe", **fields})
        except TypeError as exc:
            raise ProposalRulesError(source, at, str(exc)) from None
        levels[str(level)] = dict(fields)
    return dataclasses.replace(rule, kinds=kinds, reference_field=reference_field, by_level=levels)


def _history(source: str, where: str, raw: object) -> tuple[Dated, ...]:
    if not isinstance(raw, list) or not raw:
        raise ProposalRulesError(source, where, "must be a non-empty list of {from, value, cites}")
    out = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"from", "value", "cites"}:
            raise ProposalRulesError(source, at, "must be a mapping of exactly from, value, cites")
        day = entry["from"]
        if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
            raise ProposalRulesError(source, f"{at}.from", f"must be a date YYYY-MM-DD, got {day!r}")
        if not isinstance(entry["value"], bool):
            raise ProposalRulesError(source, f"{at}.value", "must be true or false")
        if not isinstance(entry["cites"], str) or not entry["cites"].strip():
            raise ProposalRulesError(source, f"{at}.cites", "must name the source")
        out.append(Dated(day, entry["value"], entry["cites"]))
    if [d.applies_from for d in out] != sorted({d.applies_from for d in out}):
        raise ProposalRulesError(source, where, "dates must be in order, each once")
    return tuple(out)


# ------------------------------------------------------------------------------ the candidates


@dataclass(frozen=True, slots=True)
class ProposedClaim:
    proposal_id: str
    clause: str
    claim: Claim
    fact_reference: str  # e.g. "DCMM_LEVEL:DCMM-2026-0042", "revenue:2025"


def proposal_id(credit_code: str, clause: str, reference: str) -> str:
    """Derived: the same firm, clause and fact always make the same id (an
    application id of the contract's identifier grammar, 46 characters at most)."""
    digest = hashlib.sha256(f"{credit_code}|{clause}|{reference}".encode()).hexdigest()[:10]
    return f"P-{credit_code}-{clause}-{digest}"


def candidates(facts: Facts, rules: ProposalRules, on: dt.date) -> list[ProposedClaim]:
    code = facts.firm.credit_code
    out: list[ProposedClaim] = []
    for clause, rule in sorted(rules.rules.items()):
        if not rule.proposable_on(on):
            continue
        claim_type = clause_registry.CLAIM_BY_KEY[rule.claim_key]
        if rule.source == "recognition":
            for rec in facts.recognitions:
                fields = rule.by_level.get(rec.level)
                if rec.kind not in rule.kinds or fields is None or not rec.reference:
                    continue
                if rec.awarded_on is not None and rec.awarded_on > on:
                    continue
                reference = f"{rec.kind}:{rec.reference}"
                claim = claim_type(**{rule.reference_field: rec.reference, **fields})
                out.append(ProposedClaim(proposal_id(code, clause, reference), clause, claim, reference))
        elif rule.source == "revenues":
            for year in sorted(facts.revenues):
                if year >= on.year:
                    continue  # a year not yet over
                reference = f"revenue:{year}"
                claim = RevenueMilestoneClaim(year=year, revenue_by_year_fen=dict(facts.revenues))
                out.append(ProposedClaim(proposal_id(code, clause, reference), clause, claim, reference))
        else:
            for year in sorted(facts.identifier_usage):
                registrations, resolutions = facts.identifier_usage[year]
                reference = f"identifier_usage:{year}"
                claim = IdentifierUsageClaim(
                    identifier_registrations=registrations, monthly_avg_resolutions=resolutions // 12
                )
                out.append(ProposedClaim(proposal_id(code, clause, reference), clause, claim, reference))
    return out


def application_of(candidate: ProposedClaim, firm: Firm, on: dt.date) -> Application:
    return Application(application_id=candidate.proposal_id, submitted_on=on, firm=firm, claim=candidate.claim)


def proposals(facts: Facts, rules: ProposalRules, policy: Policy, on: dt.date) -> list[tuple[ProposedClaim, Decision]]:
    """The candidates an evaluation finds ELIGIBLE with an amount, with their decisions."""
    out = []
    for candidate in candidates(facts, rules, on):
        decision = evaluate(application_of(candidate, facts.firm, on), policy, on)
        if decision.outcome == ELIGIBLE and decision.max_award_fen > 0:
            out.append((candidate, decision))
    return out


def _scopes(claim: Claim, firm: Firm, policy: Policy, on: dt.date) -> frozenset[str]:
    decision = evaluate(Application("scope-probe", on, firm, claim), policy, on)
    if decision.entitlements:
        return frozenset(e.scope for e in decision.entitlements)
    # Not eligible with these facts: its scope from the claim's own fields.
    cp = policy.clauses[claim.CLAUSE]
    parts = [cp.clause] + [f"{n}={getattr(claim, n)}" for n in cp.ledger.scope_by if hasattr(claim, n)]
    return frozenset({"/".join(parts)})


def same_claim(applied: Claim, proposed: Claim, firm: Firm, policy: Policy, on: dt.date) -> bool:
    """An application's claim is the proposal's: the same clause and a ledger scope in common."""
    if applied.CLAUSE != proposed.CLAUSE:
        return False
    return bool(_scopes(applied, firm, policy, on) & _scopes(proposed, firm, policy, on))
