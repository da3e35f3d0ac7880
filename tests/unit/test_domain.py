"""@value builds the same frozen dataclasses as @dataclass(frozen=True, slots=True), only faster."""

import dataclasses
import datetime as dt
import inspect

import pytest

from subsidy.core import clauses, domain, ledger
from subsidy.core.clauses.revenue_milestone import RevenueMilestoneClaim
from subsidy.core.domain import value

VALUE_CLASSES = [
    domain.Firm,
    domain.Application,
    domain.Reason,
    domain.Entitlement,
    domain.Decision,
    *clauses.CLAIM_TYPES,
    ledger.Tranche,
    ledger.ScopeUse,
    ledger.GrantPlan,
]


def _reference(cls: type) -> type:
    """The class as plain @dataclass(frozen=True, slots=True) would make it."""
    fields = [(f.name, f.type, f) for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, slots=True)


@pytest.mark.parametrize("cls", VALUE_CLASSES, ids=lambda c: c.__name__)
def test_same_signature_and_defaults_as_the_dataclass(cls):
    reference = _reference(cls)
    assert dataclasses.is_dataclass(cls)
    assert cls.__slots__ == reference.__slots__
    assert str(inspect.signature(cls)) == str(inspect.signature(reference))
    required = [p.name for p in inspect.signature(cls).parameters.values() if p.default is p.empty]
    args = {name: f"v-{name}" for name in required}
    assert repr(cls(**args)).split("(", 1)[1] == repr(reference(**args)).split("(", 1)[1]


def test_values_are_frozen_and_compare_by_value():
    reason = domain.Reason("CODE", "2", "message")
    assert reason == domain.Reason(code="CODE", clause="2", message="message")
    assert hash(reason) == hash(domain.Reason("CODE", "2", "message"))
    assert reason != domain.Reason("CODE", "2", "other")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reason.code = "OTHER"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del reason.code
    assert dataclasses.replace(reason, message="other") == domain.Reason("CODE", "2", "other")


def test_default_factory_gives_each_value_its_own():
    first, second = RevenueMilestoneClaim(), RevenueMilestoneClaim()
    assert first.revenue_by_year_fen == {} and first.revenue_by_year_fen is not second.revenue_by_year_fen
    given = {2024: 1}
    assert RevenueMilestoneClaim(2024, given).revenue_by_year_fen is given


def test_positional_keyword_and_missing_arguments_behave_as_in_a_dataclass():
    day = dt.date(2024, 1, 1)
    firm = domain.Firm("913101173AGYGLUY2P", "name", ("SME",), True, True, True, day)
    assert firm == domain.Firm(
        credit_code="913101173AGYGLUY2P",
        name="name",
        kinds=("SME",),
        registered_in_district=True,
        tax_registered_in_district=True,
        independent_legal_person=True,
        introduced_on=day,
    )
    with pytest.raises(TypeError):
        domain.Firm()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        domain.Reason("a", "b", "c", "d")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        domain.Reason("a", "b", message="c", code="d")  # type: ignore[call-arg]


def test_what_value_cannot_do_faster_it_refuses():
    with pytest.raises(TypeError, match="__post_init__"):

        @value
        class WithPostInit:
            x: int

            def __post_init__(self) -> None:
                pass

    with pytest.raises(TypeError, match="init=False"):

        @value
        class WithoutInit:
            x: int = dataclasses.field(default=0, init=False)


def test_the_domain_names_of_the_claims_are_the_registrys():
    # Kept on domain for code that only needs the vocabulary; one source.
    assert domain.CLAIM_TYPES is clauses.CLAIM_TYPES
    assert domain.CLAUSES is clauses.IDS
    assert domain.CLAIM_BY_KEY is clauses.CLAIM_BY_KEY
    with pytest.raises(AttributeError, match="RentClaim"):
        domain.RentClaim  # noqa: B018 - the claim classes live with their clauses
