"""The clause registry: one module per clause, and a clause with a part
missing or inconsistent refused at load with the clause and the part named.
(The policy file, the proto and the cases are checked where they are read:
test_policy_loader.py, test_codec.py, test_policy_cases.py.)"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from subsidy.core import clauses
from subsidy.core.clauses import ClaimFields, Clause, ClauseError, Inputs
from subsidy.core.clauses.cloud_adoption import CloudAdoptionClaim
from subsidy.core.clauses.identifier_node import CLAUSE as NODE
from subsidy.core.clauses.talent_training import CLAUSE as TRAINING
from subsidy.core.policy import DEFAULT_POLICY_DIR


def policy_text(directory: Path = DEFAULT_POLICY_DIR / "clauses") -> dict[str, str]:
    """Clause id -> claim key, as the policy text says: one file per clause
    item (policy/clauses/<clause>.yaml, the item's words and parameters), read
    as plain YAML, not through the registry or the policy loader."""
    text = {}
    for path in sorted(directory.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        text[str(raw["clause"])] = str(raw["claim"])
    return text


def not_one_module_each(text: dict[str, str]) -> list[str]:
    """What keeps each clause of the policy text from being exactly one
    module of the registry, named after its claim key (empty: nothing)."""
    problems = [f"clause {c} of the policy text has no module" for c in text if c not in clauses.BY_ID]
    problems += [f"{clauses.where(c)} is no clause of the policy text" for c in clauses.ALL if c.id not in text]
    for clause in clauses.ALL:
        if clause.id in text and text[clause.id] != clause.key:
            problems.append(f"{clauses.where(clause)}: the policy text claims it as {text[clause.id]!r}")
        if clause.module != f"subsidy.core.clauses.{clause.key}":
            problems.append(f"{clauses.where(clause)}: not the module named after its claim key")
        if clauses.BY_ID[clause.id] is not clause or clauses.BY_KEY[clause.key] is not clause:
            problems.append(f"{clauses.where(clause)}: the registry's lookups name another declaration")
    return problems


def test_every_clause_of_the_policy_text_is_one_module():
    """Derived, not listed: adding a clause as CONTRIBUTING.md says (a module
    and its policy file among its parts) needs no edit here."""
    text = policy_text()
    assert not_one_module_each(text) == []
    assert len(set(clauses.IDS)) == len(clauses.IDS)
    modules = sorted(p.stem for p in Path(clauses.__file__).parent.glob("*.py") if not p.name.startswith("_"))
    assert modules == sorted(c.key for c in clauses.ALL), "every clause module is one clause, and only one"
    numbers = [c.proto_field_number for c in clauses.ALL]
    assert numbers == sorted(numbers), "listed in the order of the Application.claim oneof"


def test_a_clause_of_the_policy_text_without_a_module_or_a_module_without_text_is_named():
    text = policy_text()
    unwritten = str(1 + max(int(c.split(".")[0]) for c in clauses.IDS))  # an item no module declares yet
    assert not_one_module_each({**text, unwritten: "site_visit"}) == [
        f"clause {unwritten} of the policy text has no module"
    ]
    some = clauses.ALL[0]
    del text[some.id]
    assert not_one_module_each(text) == [f"{clauses.where(some)} is no clause of the policy text"]
    text[some.id] = "site_visit"
    assert not_one_module_each(text) == [f"{clauses.where(some)}: the policy text claims it as 'site_visit'"]


def test_what_a_reviewer_or_a_data_feed_may_supply_is_declared_per_clause():
    assert clauses.BY_ID["10.cloud"].inputs.data_platform == ("provider_listed_in_directory",)
    assert clauses.BY_ID["4"].inputs.data_platform == ("year", "revenue_by_year_fen")
    assert clauses.BY_ID["13"].inputs.award == clauses.AWARD_SET_BY_REVIEWER
    assert clauses.BY_ID["13"].inputs.reviewer_amounts == ("training_cost_fen",)
    assert clauses.BY_ID["14"].inputs.award == clauses.AWARD_NONE
    paying = {c.id for c in clauses.ALL if c.inputs.award == clauses.AWARD_COMPUTED}
    assert paying == {c.id for c in clauses.ALL if c.pays}
    assert {"13", "14", "15"}.isdisjoint(paying)


def _broken(clause: Clause = NODE, **changes) -> str:
    module = f"subsidy.core.clauses.{clause.key}"
    with pytest.raises(ClauseError) as refused:
        clauses.check(dataclasses.replace(clause, **changes), module)
    return str(refused.value)


@pytest.mark.parametrize(
    "changes,part",
    [
        ({"rule": None}, "clause 11.node (subsidy.core.clauses.identifier_node): rule: missing"),
        ({"parameters": None}, "clause 11.node (subsidy.core.clauses.identifier_node): parameters: missing"),
        (
            {"proto_field_number": None},
            "clause 11.node (subsidy.core.clauses.identifier_node): proto_field_number: missing",
        ),
        (
            {"parameters": {"award_fen": "fen", "tranche_shares_percent": "percent_list"}},
            "parameters: every clause needs 'eligible_kinds'",
        ),
        ({"parameters": {**NODE.parameters, "award_fen": "yuan"}}, "parameters.award_fen: unknown unit 'yuan'"),
        (
            {"parameters": {"eligible_kinds": "kinds", "award_fen": "fen"}},
            "parameters: a clause whose rule computes an amount needs 'tranche_shares_percent'",
        ),
        ({"inputs": Inputs(award="maybe")}, "inputs.award: must be one of"),
        (
            {"inputs": Inputs(data_platform=("node",))},
            "inputs.data_platform: 'node' is not a field of IdentifierNodeClaim",
        ),
        (
            {"inputs": Inputs(reviewer_amounts=("node_id",))},
            "inputs.reviewer_amounts: 'node_id' is not an amount in fen",
        ),
        ({"fields": ClaimFields(required=("node",))}, "fields.required: 'node' is not a field of IdentifierNodeClaim"),
        ({"fields": ClaimFields(int32=("node_id",))}, "fields.int32: 'node_id' holds str, not int"),
        (
            {"fields": ClaimFields(identifiers=("connected_to_national_top_node",))},
            "fields.identifiers: 'connected_to_national_top_node' holds bool",
        ),
        ({"scope_parts": ("node_id",)}, "scope_parts: 'node_id' is a claim field already"),
        ({"claim": None}, "clause ? (subsidy.core.clauses.identifier_node): claim: missing"),
        (
            {"claim": CloudAdoptionClaim},
            "clause 10.cloud (subsidy.core.clauses.identifier_node): module: must be named after its claim key: cloud_adoption.py",
        ),
    ],
)
def test_a_declaration_with_a_part_missing_or_wrong_is_refused_naming_clause_and_part(changes, part):
    assert part in _broken(**changes)


def test_a_clause_that_sets_no_amount_must_not_have_a_schedule():
    message = _broken(TRAINING, parameters={**TRAINING.parameters, "tranche_shares_percent": "percent_list"})
    assert "clause 13 (subsidy.core.clauses.talent_training): parameters:" in message


SCRATCH_MODULE = """
from __future__ import annotations
from typing import ClassVar
from subsidy.core.clauses._base import ELIGIBLE_KINDS, SCHEDULE, Clause, flagged_award
from subsidy.core.domain import value


@value
class {cls}:
    KEY: ClassVar[str] = "{key}"
    CLAUSE: ClassVar[str] = "{clause}"
    done: bool = False


CLAUSE = Clause(
    claim={cls},
    proto_field_number={number},
    parameters={{**ELIGIBLE_KINDS, "award_fen": "fen", **SCHEDULE}},
    rule=flagged_award("done", "NOT_DONE", "未完成", "已完成"),
)
"""


@pytest.fixture
def package(tmp_path: Path, request):
    """An empty package of clause modules, importable for this test only."""
    name = f"scratch_clauses_{request.node.name.split('[')[0][-40:]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    yield root, name
    sys.path.remove(str(tmp_path))
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def _write(root: Path, module: str, **values) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(SCRATCH_MODULE.format(**values)))


def test_discovery_orders_modules_by_their_oneof_number(package):
    root, name = package
    _write(root, "site_visit", cls="SiteVisitClaim", key="site_visit", clause="17", number=28)
    _write(root, "security_audit", cls="SecurityAuditClaim", key="security_audit", clause="16", number=27)
    (root / "_helpers.py").write_text("X = 1\n")  # a leading underscore: not a clause
    found = clauses.discover([str(root)], name)
    assert [(c.id, c.key, c.module) for c in found] == [
        ("16", "security_audit", f"{name}.security_audit"),
        ("17", "site_visit", f"{name}.site_visit"),
    ]


def test_a_module_without_a_declaration_is_refused_naming_it(package):
    root, name = package
    (root / "site_visit.py").write_text('"""A clause module someone forgot to finish."""\n')
    with pytest.raises(ClauseError, match=rf"clause \? \({name}.site_visit\): CLAUSE: missing"):
        clauses.discover([str(root)], name)


def test_a_module_that_cannot_be_imported_is_refused_naming_it(package):
    root, name = package
    (root / "site_visit.py").write_text("from subsidy.core.clauses import NoSuchThing\n")
    with pytest.raises(ClauseError, match=rf"\({name}.site_visit\): module: cannot be imported: ImportError"):
        clauses.discover([str(root)], name)


@pytest.mark.parametrize(
    "second,clash",
    [
        (dict(cls="OtherClaim", key="other", clause="16", number=28), "id: '16' is also clause 16"),
        (dict(cls="OtherClaim", key="other", clause="17", number=27), "proto_field_number: 27 is also clause 16"),
    ],
)
def test_two_modules_may_not_claim_the_same_id_or_oneof_number(package, second, clash):
    root, name = package
    _write(root, "first", cls="FirstClaim", key="first", clause="16", number=27)
    _write(root, "other", **second)
    with pytest.raises(ClauseError, match=clash):
        clauses.discover([str(root)], name)
