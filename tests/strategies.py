"""Hypothesis strategies for well-formed applications in the contract's JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing

from hypothesis import strategies as st

from subsidy.contracts.codec import REQUIRED_FIELDS
from subsidy.core import credit_code, domain

DATES = st.dates(min_value=dt.date(2021, 6, 1), max_value=dt.date(2027, 12, 31))
YEARS = st.integers(min_value=2018, max_value=2028)
# Amounts around the policy's thresholds and caps, plus the odd huge one.
AMOUNTS = st.one_of(
    st.integers(min_value=0, max_value=2_000_000_000),
    st.sampled_from([0, 1, 300_000_000, 300_000_001, 50_000_000_000, 50_000_000_001, 5_000_000]),
    st.integers(min_value=0, max_value=10**13),
)
CODE_BODIES = st.text(alphabet=credit_code.CODE_CHARS, min_size=8, max_size=8)
CREDIT_CODES = CODE_BODIES.map(lambda body: credit_code.complete("91310117" + body))


def _field_strategy(name: str, hint: typing.Any) -> st.SearchStrategy:
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, __import__("types").UnionType):
        return _field_strategy(name, args[0])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if hint is bool:
        return st.booleans()
    if hint is int:
        if name in ("year", "service_year"):
            return YEARS
        if name in ("identifier_registrations", "monthly_avg_resolutions"):
            return st.integers(min_value=0, max_value=3_000_000)
        return AMOUNTS
    if hint is dt.date:
        return DATES.map(dt.date.isoformat)
    if hint is str:
        if name == "provider_credit_code":
            return CREDIT_CODES
        if name == "version":
            return st.sampled_from(["2.0", "1.0", "3.0"])
        return st.sampled_from(["A-1", "A-2", "B-1"]) if name.endswith("_id") else st.text(max_size=12)
    if origin is not None and "Mapping" in str(origin):
        return st.dictionaries(YEARS.map(str), AMOUNTS, max_size=5)
    raise TypeError(f"no strategy for {name}: {hint}")


def claim_strategy(key: str) -> st.SearchStrategy:
    cls = domain.CLAIM_BY_KEY[key]
    hints = typing.get_type_hints(cls)
    required = set(REQUIRED_FIELDS.get(key, ()))
    fields = {f.name: _field_strategy(f.name, hints[f.name]) for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries(
        {n: s for n, s in fields.items() if n in required},
        optional={n: s for n, s in fields.items() if n not in required},
    )


def firms(codes: st.SearchStrategy = CREDIT_CODES) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {
            "credit_code": codes,
            "name": st.just("上海测试科技有限公司"),
            "kinds": st.lists(st.sampled_from(domain.FIRM_KINDS), max_size=3, unique=True),
            "registered_in_district": st.booleans() | st.just(True),
            "tax_registered_in_district": st.just(True) | st.booleans(),
            "independent_legal_person": st.just(True) | st.booleans(),
        },
        optional={"introduced_on": DATES.map(dt.date.isoformat)},
    )


@st.composite
def applications(draw, codes: st.SearchStrategy = CREDIT_CODES, ids: st.SearchStrategy | None = None) -> dict:
    key = draw(st.sampled_from(sorted(domain.CLAIM_BY_KEY)))
    app = {
        "application_id": draw(ids if ids is not None else st.uuids().map(str)),
        "submitted_on": draw(DATES).isoformat(),
        "firm": draw(firms(codes)),
        key: draw(claim_strategy(key)),
    }
    return app
