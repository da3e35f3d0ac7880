"""The application and the decision as plain values.

The pure cores (subsidy/services/eligibility, subsidy/services/payout) work on these; the
codec (subsidy/contracts/codec.py) builds them from the JSON contract and converts them
to and from the protobuf messages in proto/subsidy/v1. Field names here are
the contract's and the proto's; tests/unit/test_contract.py checks that they
stay the same.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import field
from typing import Any, Callable, ClassVar, Literal, Mapping, TypeVar, dataclass_transform

_T = TypeVar("_T")


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
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: __post_init__ is not supported by @value")
    namespace: dict[str, Any] = {"_USE_FACTORY": _USE_FACTORY}
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
    exec(compile(source, f"<@value {cls.__qualname__}>", "exec"), namespace)  # nosec B102
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {**{f.name: f.type for f in dataclasses.fields(cls)}, "return": None}
    cls.__init__ = init  # type: ignore[misc]
    return cls


FIRM_KINDS = (
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
)
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
Level = Literal["national", "municipal"]
CarrierLevel = Literal["national", "municipal", "district"]
Recognition = Literal[
    "national_excellent_scenario",
    "municipal_benchmark_enterprise",
    "municipal_demo_scenario",
    "municipal_smart_workshop",
]
CarrierType = Literal["innovation_center", "training_base", "key_lab", "joint_lab"]
Grade = Literal["A", "AA", "AAA", "AAAA", "AAAAA"]
DcmmLevel = Literal[1, 2, 3, 4, 5]

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


# One class per claim key. CLAUSE is the clause id of the contract.


@value
class RentClaim:
    KEY: ClassVar[str] = "rent"
    CLAUSE: ClassVar[str] = "1.rent"
    recognized_key_platform: bool = False
    lease_start: dt.date | None = None
    lease_end: dt.date | None = None
    rent_paid_fen: int = 0


@value
class PurchaseClaim:
    KEY: ClassVar[str] = "purchase"
    CLAUSE: ClassVar[str] = "1.purchase"
    recognized_key_platform: bool = False
    for_own_use: bool = False
    purchase_date: dt.date | None = None
    purchase_price_fen: int = 0


@value
class IndustryPlatformClaim:
    KEY: ClassVar[str] = "industry_platform"
    CLAUSE: ClassVar[str] = "2"
    platform_id: str = ""
    sector: str = ""
    investment_fen: int = 0
    infrastructure_investment_fen: int = 0


@value
class BenchmarkPlatformClaim:
    KEY: ClassVar[str] = "benchmark_platform"
    CLAUSE: ClassVar[str] = "3"
    platform_id: str = ""
    level: Level | None = None


@value
class RevenueMilestoneClaim:
    KEY: ClassVar[str] = "revenue_milestone"
    CLAUSE: ClassVar[str] = "4"
    year: int = 0
    revenue_by_year_fen: Mapping[int, int] = field(default_factory=dict)


@value
class JiebangProjectClaim:
    KEY: ClassVar[str] = "jiebang_project"
    CLAUSE: ClassVar[str] = "6"
    project_id: str = ""
    jiebang_selected: bool = False
    total_investment_fen: int = 0


@value
class BenchmarkRecognitionClaim:
    KEY: ClassVar[str] = "benchmark_recognition"
    CLAUSE: ClassVar[str] = "7"
    recognition_id: str = ""
    recognition: Recognition | None = None


@value
class IntegrationCertificationClaim:
    KEY: ClassVar[str] = "integration_certification"
    CLAUSE: ClassVar[str] = "8"
    certificate_id: str = ""
    version: str = ""
    grade: Grade | None = None


@value
class DcmmClaim:
    KEY: ClassVar[str] = "dcmm"
    CLAUSE: ClassVar[str] = "9"
    certificate_id: str = ""
    level: DcmmLevel | None = None


@value
class CloudAdoptionClaim:
    KEY: ClassVar[str] = "cloud_adoption"
    CLAUSE: ClassVar[str] = "10.cloud"
    provider_credit_code: str = ""
    provider_listed_in_directory: bool = False
    service_year: int = 0
    spend_fen: int = 0


@value
class BenchmarkParkClaim:
    KEY: ClassVar[str] = "benchmark_park"
    CLAUSE: ClassVar[str] = "10.park"
    park_id: str = ""
    recognized_municipal_benchmark_park: bool = False


@value
class IdentifierNodeClaim:
    KEY: ClassVar[str] = "identifier_node"
    CLAUSE: ClassVar[str] = "11.node"
    node_id: str = ""
    connected_to_national_top_node: bool = False


@value
class IdentifierUsageClaim:
    KEY: ClassVar[str] = "identifier_usage"
    CLAUSE: ClassVar[str] = "11.identifiers"
    identifier_registrations: int = 0
    monthly_avg_resolutions: int = 0


@value
class InnovationCarrierClaim:
    KEY: ClassVar[str] = "innovation_carrier"
    CLAUSE: ClassVar[str] = "12"
    carrier_id: str = ""
    carrier_type: CarrierType | None = None
    level: CarrierLevel | None = None


@value
class TalentTrainingClaim:
    KEY: ClassVar[str] = "talent_training"
    CLAUSE: ClassVar[str] = "13"
    program_id: str = ""
    training_cost_fen: int = 0


@value
class FinancingClaim:
    KEY: ClassVar[str] = "financing"
    CLAUSE: ClassVar[str] = "14"
    need: str = ""


@value
class MatchmakingClaim:
    KEY: ClassVar[str] = "matchmaking"
    CLAUSE: ClassVar[str] = "15"
    event_id: str = ""
    cost_fen: int = 0


Claim = (
    RentClaim
    | PurchaseClaim
    | IndustryPlatformClaim
    | BenchmarkPlatformClaim
    | RevenueMilestoneClaim
    | JiebangProjectClaim
    | BenchmarkRecognitionClaim
    | IntegrationCertificationClaim
    | DcmmClaim
    | CloudAdoptionClaim
    | BenchmarkParkClaim
    | IdentifierNodeClaim
    | IdentifierUsageClaim
    | InnovationCarrierClaim
    | TalentTrainingClaim
    | FinancingClaim
    | MatchmakingClaim
)
CLAIM_TYPES: tuple[type, ...] = Claim.__args__  # type: ignore[attr-defined]
CLAIM_BY_KEY: dict[str, type] = {c.KEY: c for c in CLAIM_TYPES}
CLAUSES: tuple[str, ...] = tuple(c.CLAUSE for c in CLAIM_TYPES)


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
