"""The clauses: one module each, found here.

Every module of this package whose name does not start with ``_`` is one
clause item, named after its claim key (``rent.py`` for ``1.rent``), and
declares ``CLAUSE = Clause(...)`` (see ``_base.py`` and CONTRIBUTING.md).
This registry imports them all when first imported and checks each
declaration, so a clause with a part missing or inconsistent stops every
process at start-up with ``ClauseError`` naming the clause, its module and
the part. What the registry cannot see is checked where it can be, with the
same kind of message: the policy file (``subsidy.core.policy.load_policy``),
the proto oneof (``subsidy.contracts.codec``, which may import protobuf), the
policy cases (``tests/test_policy_cases.py``).

    ALL          the declarations, in the order of the Application.claim oneof
    IDS          their clause ids, same order
    BY_ID        clause id -> declaration
    BY_KEY       claim key -> declaration
    CLAIM_TYPES  the claim dataclasses, same order
    CLAIM_BY_KEY claim key -> claim dataclass, same order
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import importlib
import pkgutil
import types
import typing

from subsidy.core.clauses._base import (
    AWARD_COMPUTED,
    AWARD_NONE,
    AWARD_SET_BY_REVIEWER,
    AWARDS,
    ELIGIBLE_KINDS,
    UNITS,
    ClaimFields,
    Clause,
    Finding,
    Inputs,
    Rule,
    given,
)
from subsidy.core.domain import Claim, ClauseError

__all__ = [
    "ALL",
    "AWARD_COMPUTED",
    "AWARD_NONE",
    "AWARD_SET_BY_REVIEWER",
    "BY_ID",
    "BY_KEY",
    "CLAIM_BY_KEY",
    "CLAIM_TYPES",
    "IDS",
    "UNITS",
    "Clause",
    "ClaimFields",
    "ClauseError",
    "Finding",
    "Inputs",
    "Rule",
    "given",
]


def where(clause: Clause) -> str:
    """How messages name a clause: its id and its module."""
    return f"clause {clause.id} ({clause.module})"


def _fail(name: str, part: str, problem: str) -> ClauseError:
    return ClauseError(f"{name}: {part}: {problem}")


def _hint_kind(hint: object) -> str:
    """bool, int, str, date, enum or map: what a claim field holds."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is typing.Literal:
        return "enum"
    if typing.get_origin(hint) in (collections.abc.Mapping, dict):
        return "map"
    kinds: dict[object, str] = {bool: "bool", int: "int", str: "str", dt.date: "date"}
    return kinds.get(hint, repr(hint))


def claim_field_kinds(claim: type[Claim]) -> dict[str, str]:
    """Each field of a claim dataclass -> bool, int, str, date, enum or map."""
    hints = typing.get_type_hints(claim)
    return {f.name: _hint_kind(hints[f.name]) for f in dataclasses.fields(claim)}


def check(clause: Clause, module: str) -> None:
    """Raise ClauseError unless the declaration of one clause module is whole
    and consistent in itself."""
    name = f"clause ? ({module})"
    claim = clause.claim
    if claim is None:
        raise _fail(name, "claim", "missing: give Clause(claim=<the @value claim dataclass>)")
    if not dataclasses.is_dataclass(claim) or not hasattr(claim, "__slots__"):
        raise _fail(name, "claim", f"{claim!r} is not a claim dataclass made with @value")
    for attribute in ("KEY", "CLAUSE"):
        if not isinstance(getattr(claim, attribute, None), str) or not getattr(claim, attribute):
            raise _fail(name, "claim", f"{claim.__name__} has no {attribute}: ClassVar[str]")
    name = f"clause {claim.CLAUSE} ({module})"
    short = module.rsplit(".", 1)[-1]
    if short != claim.KEY:
        raise _fail(name, "module", f"must be named after its claim key: {claim.KEY}.py, not {short}.py")
    if type(clause.proto_field_number) is not int or clause.proto_field_number < 1:
        raise _fail(
            name,
            "proto_field_number",
            f"missing or not a positive whole number ({clause.proto_field_number!r}): give the number of "
            f"`{claim.__name__} {claim.KEY} = N;` in the Application.claim oneof",
        )
    if clause.rule is None or not callable(clause.rule):
        raise _fail(name, "rule", "missing: give Clause(rule=<function (finding, application, parameters) -> None>)")
    _check_parameters(clause, name)
    kinds = claim_field_kinds(claim)
    _check_fields(clause, claim, name, kinds)
    _check_inputs(clause, claim, name, kinds)
    for part in clause.scope_parts:
        if part in kinds:
            raise _fail(name, "scope_parts", f"{part!r} is a claim field already; list only parts the rule computes")


def _check_parameters(clause: Clause, name: str) -> None:
    parameters = clause.parameters
    if not isinstance(parameters, dict) or not parameters:
        raise _fail(name, "parameters", "missing: give Clause(parameters={name: unit, ...})")
    for parameter, unit in parameters.items():
        if unit not in UNITS:
            raise _fail(name, f"parameters.{parameter}", f"unknown unit {unit!r}; one of {', '.join(UNITS)}")
    for parameter, unit in ELIGIBLE_KINDS.items():
        if parameters.get(parameter) != unit:
            raise _fail(
                name, "parameters", f"every clause needs {parameter!r}: {unit!r} (the core checks the firm's kind)"
            )
    award = clause.inputs.award
    if award not in AWARDS:
        raise _fail(name, "inputs.award", f"must be one of {', '.join(AWARDS)}, got {award!r}")
    if clause.pays != (award == AWARD_COMPUTED):
        raise _fail(
            name,
            "parameters",
            "a clause whose rule computes an amount needs 'tranche_shares_percent': 'percent_list', "
            "and only such a clause has one (inputs.award says which this is)",
        )


def _check_fields(clause: Clause, claim: type[Claim], name: str, kinds: dict[str, str]) -> None:
    fields = clause.fields
    if not isinstance(fields, ClaimFields):
        raise _fail(name, "fields", "must be ClaimFields(...)")
    wanted = {"required": None, "identifiers": "str", "int32": "int", "credit_codes": "str"}
    for group, kind in wanted.items():
        for field_name in getattr(fields, group):
            if field_name not in kinds:
                raise _fail(name, f"fields.{group}", f"{field_name!r} is not a field of {claim.__name__}")
            if kind is not None and kinds[field_name] != kind:
                raise _fail(name, f"fields.{group}", f"{field_name!r} holds {kinds[field_name]}, not {kind}")


def _check_inputs(clause: Clause, claim: type[Claim], name: str, kinds: dict[str, str]) -> None:
    inputs = clause.inputs
    if not isinstance(inputs, Inputs):
        raise _fail(name, "inputs", "must be Inputs(...)")
    for field_name in inputs.data_platform:
        if field_name not in kinds:
            raise _fail(name, "inputs.data_platform", f"{field_name!r} is not a field of {claim.__name__}")
    for field_name in inputs.reviewer_amounts:
        if kinds.get(field_name) != "int" or not field_name.endswith("_fen"):
            raise _fail(name, "inputs.reviewer_amounts", f"{field_name!r} is not an amount in fen of {claim.__name__}")


def discover(path: list[str], package: str) -> tuple[Clause, ...]:
    """Import every clause module of a package (its ``__path__`` and name),
    check each declaration and that no two clash; in oneof order."""
    found: list[Clause] = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module_name = f"{package}.{info.name}"
        try:
            module = importlib.import_module(module_name)
        except ClauseError:
            raise
        except Exception as exc:
            raise ClauseError(
                f"clause ? ({module_name}): module: cannot be imported: {type(exc).__name__}: {exc}"
            ) from exc
        declared = getattr(module, "CLAUSE", None)
        if not isinstance(declared, Clause):
            raise _fail(f"clause ? ({module_name})", "CLAUSE", "missing: the module must declare CLAUSE = Clause(...)")
        clause = dataclasses.replace(declared, module=module_name)
        check(clause, module_name)
        for other in found:
            for what in ("id", "key", "proto_field_number"):
                if getattr(other, what) == getattr(clause, what):
                    raise _fail(where(clause), what, f"{getattr(clause, what)!r} is also {where(other)}'s")
        found.append(clause)
    return tuple(sorted(found, key=lambda c: given(c.proto_field_number, c, "proto_field_number")))


ALL: tuple[Clause, ...] = discover(__path__, __name__)
IDS: tuple[str, ...] = tuple(c.id for c in ALL)
BY_ID: dict[str, Clause] = {c.id: c for c in ALL}
BY_KEY: dict[str, Clause] = {c.key: c for c in ALL}
CLAIM_TYPES: tuple[type[Claim], ...] = tuple(given(c.claim, c, "claim") for c in ALL)
CLAIM_BY_KEY: dict[str, type[Claim]] = {c.key: given(c.claim, c, "claim") for c in ALL}
