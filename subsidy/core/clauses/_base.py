"""What a clause module declares, and the few helpers its rule shares.

A clause module (``subsidy/core/clauses/<claim key>.py``) holds the claim
dataclass, the rule, and one ``CLAUSE = Clause(...)`` naming everything else
the system needs to know about the clause: its place on the wire, its
parameters and their units, how the codec reads its fields, and who besides
the applicant may supply what. The registry (``subsidy.core.clauses``) finds
the modules and checks each declaration; the codec, the policy loader and the
eligibility core read the registry, not lists of their own.

Everything here is plain data and pure functions: the core does not know
protobuf, so the wire is described by names and numbers that the codec
(``subsidy.contracts.codec``) checks against the generated code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from subsidy.core.dates import add_years as add_years  # re-exported: the clause rules' helper, shared with the ledger
from subsidy.core.domain import ELIGIBLE, NEEDS_REVIEW, Application, Claim, ClauseError, Reason
from subsidy.core.money import floor_percent, yuan

if TYPE_CHECKING:  # only for annotations: the policy module imports this one
    from subsidy.core.policy import ClausePolicy

# The units a parameter can be declared in -> what the policy loader accepts
# for it (used in its error messages and in docs/policy-data.md).
UNITS = {
    "fen": "an amount in fen (integer >= 0)",
    "percent": "a whole percentage 0..100",
    "percent_list": "a list of whole percentages adding up to 100",
    "kinds": "ANY, or a list of firm kinds",
    "count": "a whole number >= 0",
    "years": "a whole number of years >= 1",
    "text": "a string",
    "text_list": "a list of strings",
    "fen_table": "a mapping of a key to an amount in fen",
}

# Parameters every clause has, or every clause that pays has: the eligibility
# core itself reads them (the kind check, the tranche schedule).
ELIGIBLE_KINDS = {"eligible_kinds": "kinds"}
SCHEDULE = {"tranche_shares_percent": "percent_list"}

# What the amount of a decision under the clause is (Inputs.award).
AWARD_COMPUTED = "computed"  # the rule computes a ceiling; a reviewer may confirm or lower it, never raise it
AWARD_SET_BY_REVIEWER = "set_by_reviewer"  # the text sets no amount (NEEDS_REVIEW): a reviewer sets it
AWARD_NONE = "none"  # no money from this policy (REFERRED)
AWARDS = (AWARD_COMPUTED, AWARD_SET_BY_REVIEWER, AWARD_NONE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimFields:
    """How the codec reads the claim, beyond each field's type.

    required: fields that must be given (their protobuf default would mean
        nothing, e.g. an enumerated level or a lease date).
    identifiers: short strings that name a ledger scope or a document, e.g.
        ``platform_id``: the identifier grammar of the codec (1 to 64 ASCII
        letters, digits and ``- _ . : /``, docs/contract.md); other strings
        may be 256 characters of any text.
    int32: whole numbers that are int32 on the wire (years), so larger values
        are refused at the edge instead of failing in protobuf.
    credit_codes: strings that, when given, must be valid unified social
        credit codes (GB 32100-2015).
    """

    required: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    int32: tuple[str, ...] = ()
    credit_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    """Who besides the applicant may supply what for this clause: a plain
    declaration, read by review and by the data-platform feeds
    (/work/shared/policy/workflow.md), not by the rule.

    data_platform: claim fields that are facts an authoritative source (the
        government data platform, tax data, the 名录, the bodies that rate and
        certify) can feed; once fed they replace the applicant's word.
        Whether a clause is actually proposed without an application
        (免申即享) is policy data, not this list.
    award: what the decision's amount is: AWARD_COMPUTED (a reviewer may
        confirm or lower the ceiling), AWARD_SET_BY_REVIEWER or AWARD_NONE.
    reviewer_amounts: claim amounts in fen a reviewer may set when reviewing
        (e.g. which training costs count), besides the award itself.
    """

    data_platform: tuple[str, ...] = ()
    award: str = AWARD_COMPUTED
    reviewer_amounts: tuple[str, ...] = ()


# The parameters in force: name -> value, each value of the type its unit
# gives (int for fen, tuple[int, ...] for percent_list, ...; see
# subsidy.core.policy.ParameterValue). Which type depends on the unit the
# clause declares for the name, which a type checker cannot follow: Any.
Rule = Callable[["Finding", Application, Mapping[str, Any]], None]

_T = TypeVar("_T")
_C = TypeVar("_C")


@dataclass(frozen=True, slots=True, kw_only=True)
class Clause:
    """One clause item as the code knows it; ``CLAUSE = Clause(...)`` in its module.

    claim: the claim dataclass (``@value``); its ``KEY`` is the claim's name
        in the JSON contract and in the ``Application.claim`` oneof, its
        ``CLAUSE`` the clause id (the name of ``policy/clauses/<id>.yaml``).
    proto_field_number: the claim's field number in the ``Application.claim``
        oneof of ``proto/subsidy/v1/application.proto``. The codec checks it
        against the generated code; clauses are listed in this order.
    parameters: every parameter the rule (and the core) reads, name -> unit
        (``UNITS``); the policy file must give exactly these.
    rule: ``rule(finding, application, parameters)``: refuses with reasons
        or awards lines on ``finding``; pure.
    fields: how the codec reads the claim (ClaimFields).
    inputs: who besides the applicant may supply what (Inputs).
    scope_parts: ledger scope parts the rule computes itself (passed to
        ``Finding.award``), which ``ledger.scope_by`` may name besides the
        claim's fields.

    Every part has a default only so that the registry, not a TypeError,
    says which one is missing.
    """

    claim: type[Claim] | None = None
    proto_field_number: int | None = None
    parameters: Mapping[str, str] | None = None
    rule: Rule | None = None
    fields: ClaimFields = field(default_factory=ClaimFields)
    inputs: Inputs = field(default_factory=Inputs)
    scope_parts: tuple[str, ...] = ()
    module: str = ""  # the module that declares it; set by the registry

    @property
    def id(self) -> str:
        return given(self.claim, self, "claim").CLAUSE

    @property
    def key(self) -> str:
        return given(self.claim, self, "claim").KEY

    @property
    def pays(self) -> bool:
        """Whether a decision under it can carry an amount (it has a schedule)."""
        return "tranche_shares_percent" in (self.parameters or {})


def given(part: _T | None, clause: Clause, name: str) -> _T:
    """A part of a declaration that the registry has checked is there (it
    refuses a clause with one missing), without the None that lets a
    declaration leave it out until then."""
    if part is None:
        raise ClauseError(f"clause ? ({clause.module or 'not registered'}): {name}: missing")
    return part


# ------------------------------------------------------------ for the rules


class Finding:
    """What a clause rule found: reasons against, or the lines of its award."""

    __slots__ = ("cp", "against", "lines", "basis", "outcome")

    def __init__(self, cp: ClausePolicy) -> None:
        self.cp = cp
        self.against: list[Reason] = []
        self.lines: list[tuple[dict[str, object], int]] = []  # (computed scope parts, amount)
        self.basis = ""
        self.outcome = ELIGIBLE

    def refuse(self, code: str, detail: str) -> None:
        cp = self.cp
        self.against.append(Reason(code, cp.item, f"不符合第{cp.item}条“{cp.title}”：{detail}"))

    def award(self, amount: int, basis: str, **scope_parts: object) -> None:
        self.lines.append((scope_parts, amount))
        self.basis = basis


# Keyed by a claim's level, which may be unset: .get(level, level) shows it as is.
LEVEL_NAMES: dict[str | None, str] = {"national": "国家级", "municipal": "市级", "district": "区级"}


def claim_of(app: Application, claim_type: type[_C]) -> _C:
    """The application's claim as its clause's claim class. The core hands a
    rule only the claims of its own clause (by the claim's CLAUSE), so this
    never raises there; a rule called with another clause's claim fails here,
    naming both, instead of on the first field the claim lacks."""
    claim = app.claim
    if not isinstance(claim, claim_type):
        raise TypeError(f"a {claim_type.__name__} rule was given a {type(claim).__name__}")
    return claim


def capped(finding: Finding, base: int, params: Mapping[str, Any], what: str) -> None:
    """Award floor(base × rate_percent) limited by cap_fen, saying which."""
    rate, cap = params["rate_percent"], params["cap_fen"]
    amount = floor_percent(base, rate)
    if amount > cap:
        finding.award(cap, f"{what}{yuan(base)}×{rate}%={yuan(amount)}，以上限{yuan(cap)}为限")
    else:
        finding.award(amount, f"{what}{yuan(base)}×{rate}%={yuan(amount)}（上限{yuan(cap)}）")


def newly_introduced(finding: Finding, app: Application) -> dt.date | None:
    """Clause 1's 新引进: the registry gives the firm an introduced_on date.
    That date, or None once refused for want of it."""
    if app.firm.introduced_on is None:
        finding.refuse("NOT_NEWLY_INTRODUCED", "登记信息中无引进日期，不属于新引进的平台或服务商")
    return app.firm.introduced_on


def flagged_award(flag: str, code: str, detail: str, basis: str) -> Rule:
    """The rule of a fixed award_fen paid when one claim flag is true."""

    def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
        if not getattr(app.claim, flag):
            finding.refuse(code, detail)
            return
        amount = params["award_fen"]
        finding.award(amount, f"{basis}，奖励{yuan(amount)}")

    return rule


def needs_review(basis: str) -> Rule:
    """The rule of a clause whose amount the text does not set."""

    def rule(finding: Finding, app: Application, params: Mapping[str, Any]) -> None:
        finding.outcome = NEEDS_REVIEW
        finding.basis = basis

    return rule
