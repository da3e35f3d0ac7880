"""The application and the decision as plain values.

The pure cores (subsidy/core/eligibility.py, subsidy/core/ledger.py) work on
these; the codec (subsidy/contracts/codec.py) builds them from the JSON
contract and converts them to and from the protobuf messages in
proto/subsidy/v1. Field names here are the contract's and the proto's;
tests/unit/test_contract.py checks that they stay the same. Each claim class
is declared with its clause, in subsidy/core/clauses/.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
from dataclasses import field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, dataclass_transform, get_args

if TYPE_CHECKING:  # for mypy; at run time __getattr__ below looks them up on first use
    from subsidy.core.clauses import CLAIM_BY_KEY as CLAIM_BY_KEY
    from subsidy.core.clauses import CLAIM_TYPES as CLAIM_TYPES
    from subsidy.core.clauses import IDS

    CLAUSES = IDS

_T = TypeVar("_T")


class ClauseError(Exception):
    """A clause whose parts do not add up; the message names the clause, the
    module that declares it and the part. Defined here, not in the clause
    registry (subsidy.core.clauses), so that a process can still catch it
    when the registry itself fails to import: the command line turns it into
    one line on standard error."""


class _UseFactory:
    """Default of a field whose value comes from its default_factory."""

    def __repr__(self) -> str:
        return "<factory>"  # as dataclasses shows it in a signature


_USE_FACTORY = _UseFactory()


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[_T]) -> type[_T]:
    """``@dataclass(frozen=True, slots=True)`` with a quicker ``__init__``.

    Why: a frozen dataclass's generated ``__init__`` stores each field with
    ``object.__setattr__`` (plain assignment is refused), a call several times
    slower than storing through the field's slot descriptor, which bypasses
    the refusing ``__setattr__`` just the same. One application through the
    calculator builds about eight of these values, some fifty fields, and
    those stores were the largest single cost of a decision. Everything else
    (signature, defaults, repr, eq, hash, ``dataclasses.fields``, and being
    frozen) is the dataclass's own; tests/unit/test_domain.py checks it.
    """
    cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
    if not dataclasses.is_dataclass(cls):  # never: it was just made one (this tells mypy)
        raise TypeError(f"{cls.__name__}: not a dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: __post_init__ is not supported by @value")
    namespace: dict[str, object] = {"_USE_FACTORY": _USE_FACTORY}
    params, body = [], []
    for f in dataclasses.fields(cls):
        if not f.init or f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: init=False and kw_only are not supported by @value")
        namespace[f"_set_{f.name}"] = getattr(cls, f.name).__set__
        stored = f.name
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_USE_FACTORY")
            stored = f"_factory_{f.name}() if {f.name} is _USE_FACTORY else {f.name}"
        else:
            params.append(f.name)
        body.append(f"    _set_{f.name}(self, {stored})\n")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("".join(body) or "    pass\n")
    # As dataclasses itself does: the source is made of this class's own field
    # names (identifiers from its annotations), never of input.
    exec(compile(source, f"<@value {cls.__qualname__}>", "exec"), namespace)  # noqa: S102  # nosec B102
    init = namespace["__init__"]
    if not isinstance(init, types.FunctionType):  # never: the source above defines it
        raise TypeError(f"{cls.__name__}: __init__ was not made")
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {**{f.name: f.type for f in dataclasses.fields(cls)}, "return": None}
    # Replacing the generated __init__ is what this decorator is for; mypy
    # refuses every assignment to a method, so it cannot be typed.
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


FirmKind = Literal[
    "PLATFORM",
    "SOLUTION_PROVIDER",
    "INDUSTRIAL",
    "SOFTWARE",
    "SME",
    "PARK_OPERATOR",
    "INTERNET",
    "SMART_HARDWARE",
    "INDUSTRY_ASSOCIATION",
    "TRAINING_INSTITUTION",
]
# The same names as a tuple, for validation: one list, not two to keep in step.
FIRM_KINDS: tuple[str, ...] = get_args(FirmKind)
OUTCOMES = ("ELIGIBLE", "INELIGIBLE", "NEEDS_REVIEW", "REFERRED")
ELIGIBLE, INELIGIBLE, NEEDS_REVIEW, REFERRED = OUTCOMES


@value
class Firm:
    credit_code: str
    name: str = ""
    kinds: tuple[FirmKind, ...] = ()
    registered_in_district: bool = False
    tax_registered_in_district: bool = False
    independent_legal_person: bool = False
    introduced_on: dt.date | None = None


class Claim(Protocol):
    """A clause's claim: a @value dataclass in the clause's module under
    subsidy/core/clauses/, where the registry lists them all."""

    KEY: ClassVar[str]  # its name in the JSON contract and the proto oneof
    CLAUSE: ClassVar[str]  # the clause id, e.g. "1.rent"
    # What makes it a dataclass (as typeshed's DataclassInstance says it), so
    # that dataclasses.fields() takes a claim class.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


# The claim classes live with their clauses; these names are the registry's,
# kept here for code that only needs the vocabulary. Looked up on first use
# because the clause modules themselves import this module.
_FROM_REGISTRY = {"CLAIM_TYPES": "CLAIM_TYPES", "CLAIM_BY_KEY": "CLAIM_BY_KEY", "CLAUSES": "IDS"}


def __getattr__(name: str) -> object:
    if name in _FROM_REGISTRY:
        from subsidy.core import clauses

        return getattr(clauses, _FROM_REGISTRY[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@value
class Application:
    application_id: str
    submitted_on: dt.date
    firm: Firm
    claim: Claim
    # A reviewer's decision date; its year then is the decision year.
    decided_on: dt.date | None = None

    @property
    def decision_year(self) -> int:
        return (self.decided_on or self.submitted_on).year


@value
class Reason:
    code: str
    clause: str
    message: str


class LimitKind:
    CUMULATIVE_CAP = "cumulative_cap"
    ONCE = "once"


@value
class Entitlement:
    """One line of an award that the ledger checks against the firm's history."""

    scope: str
    limit: str  # LimitKind
    amount_fen: int
    cap_fen: int = 0


@value
class ReviewRecord:
    """Who reviewed a decision and on what basis (a reviewed decision's own
    record; ../shared/policy/workflow.md "Review")."""

    supersedes_decision_id: str
    item_id: str
    reviewers: tuple[str, ...]  # token subjects, in the order they acted
    basis: str
    result: str  # APPROVED or REJECTED
    decided_at: str  # RFC 3339


@value
class Decision:
    decision_id: str
    application_id: str
    credit_code: str
    clause: str
    outcome: str
    max_award_fen: int
    reasons: tuple[Reason, ...]
    policy_version: str
    decision_year: int
    submitted_on: dt.date
    entitlements: tuple[Entitlement, ...] = ()
    tranche_shares_percent: tuple[int, ...] = ()  # empty unless ELIGIBLE
    # People must look at it before money moves (workflow.md "Review"); the
    # ledger does not apply it, the review service supersedes it.
    review_required: bool = False
    review_reasons: tuple[str, ...] = ()  # NEEDS_REVIEW_OUTCOME, ABOVE_FOUR_EYES_THRESHOLD, ...
    review: ReviewRecord | None = None  # set on a reviewed decision
    # Set on a re-decision at a policy version's adoption: the decision it replaces.
    supersedes_decision_id: str = ""
