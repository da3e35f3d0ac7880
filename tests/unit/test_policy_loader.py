"""A malformed policy is refused at start-up, naming the file and the field."""

import datetime as dt
import shutil
from pathlib import Path

import pytest

from subsidy.core.policy import DEFAULT_POLICY_DIR, PolicyError, load_policy


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_shipped_policy_loads_with_every_clause():
    policy = load_policy()
    assert len(policy.clauses) == 17
    assert {"10.cloud", "10.park"} <= set(policy.clauses), "both items the text numbers 10"
    assert policy.version.startswith("songjiang-ii-2022-draft+")


def test_every_parameter_value_is_dated_and_cites_the_text():
    for clause in load_policy().clauses.values():
        for parameter in clause.parameters.values():
            for value in parameter.values:
                assert isinstance(value.applies_from, dt.date)
                assert value.cites.strip()


@pytest.mark.parametrize(
    "file,old,new,message",
    [
        (
            "clauses/1.rent.yaml",
            "value: 50, cites",
            "value: 150, cites",
            "1.rent.yaml: parameters.rate_percent.values[0].value: must be a whole number 0..100",
        ),
        (
            "clauses/1.rent.yaml",
            "{from: 2022-01-01, value: 3,",
            "{from: 2022-02-30, value: 3,",
            "1.rent.yaml: parameters.window_years.values[0].from: must be a date",
        ),
        (
            "clauses/1.purchase.yaml",
            "[40, 30, 30]",
            "[40, 30, 20]",
            "1.purchase.yaml: parameters.tranche_shares_percent.values[0].value: percentages must add up to 100",
        ),
        ("clauses/2.yaml", "  threshold_fen:", "  threshold:", "2.yaml: parameters.threshold_fen: is required"),
        (
            "clauses/3.yaml",
            "value: [PLATFORM]",
            "value: [PLATFORMS]",
            "3.yaml: parameters.eligible_kinds.values[0].value[0]: unknown firm kind",
        ),
        ("clauses/9.yaml", "limit: once", "limit: twice", "9.yaml: ledger.limit: must be one of"),
        ("clauses/2.yaml", "scope_by: [platform_id]", "scope_by: [platform]", "2.yaml: ledger.scope_by[0]"),
        (
            "clauses/8.yaml",
            "cites: 给予一次性20万元奖励}",
            "cites: ''}",
            "8.yaml: parameters.award_fen.values[0].cites",
        ),
        (
            "clauses/4.yaml",
            "unit: fen_table",
            "unit: fen",
            "4.yaml: parameters.award_by_threshold_fen.unit: must be 'fen_table'",
        ),
        (
            "policy.yaml",
            "effective_from: 2022-01-01",
            "effective_from: soon",
            "policy.yaml: effective_from: must be a date",
        ),
    ],
)
def test_a_malformed_file_is_refused_naming_file_and_field(policy_dir, file, old, new, message):
    _edit(policy_dir / file, old, new)
    with pytest.raises(PolicyError) as refused:
        load_policy(policy_dir)
    assert message in str(refused.value)


def test_a_missing_clause_file_is_refused_naming_the_clause_module(policy_dir):
    (policy_dir / "clauses" / "10.park.yaml").unlink()
    with pytest.raises(PolicyError) as refused:
        load_policy(policy_dir)
    assert "no file for clause(s) 10.park" in str(refused.value)
    assert "clause 10.park (declared in subsidy.core.clauses.benchmark_park) needs 10.park.yaml" in str(refused.value)


def test_a_clause_file_without_a_clause_module_is_refused(policy_dir):
    text = (policy_dir / "clauses" / "13.yaml").read_text(encoding="utf-8")
    (policy_dir / "clauses" / "16.yaml").write_text(text.replace('clause: "13"', 'clause: "16"'), encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        load_policy(policy_dir)
    assert "16.yaml: clause: unknown clause '16': no module under subsidy/core/clauses/ declares it" in str(
        refused.value
    )


@pytest.mark.parametrize(
    "file,old,new,message",
    [
        # The parameters a module declares and the ones its file gives must be the same.
        ("clauses/10.park.yaml", "  award_fen:", "  award_yuan:", "10.park.yaml: parameters.award_fen: is required"),
        (
            "clauses/13.yaml",
            "ledger:",
            "  award_fen:\n    unit: fen\n    values:\n      - {from: 2022-01-01, value: 1, cites: x}\nledger:",
            "13.yaml: parameters.award_fen: unknown field",
        ),
        (
            "clauses/11.node.yaml",
            "claim: identifier_node",
            "claim: identifier_usage",
            "11.node.yaml: claim: clause 11.node is claimed as 'identifier_node' (subsidy.core.clauses.identifier_node)",
        ),
        ("clauses/13.yaml", "limit: null", "limit: once", "13.yaml: ledger.limit: this clause sets no amount"),
        (
            "clauses/4.yaml",
            "scope_by: [threshold]",
            "scope_by: [level]",
            "4.yaml: ledger.scope_by[0]: 'level' is not a field of the revenue_milestone claim",
        ),
    ],
)
def test_a_file_that_does_not_match_its_clause_module_is_refused(policy_dir, file, old, new, message):
    _edit(policy_dir / file, old, new)
    with pytest.raises(PolicyError) as refused:
        load_policy(policy_dir)
    assert message in str(refused.value)


def test_a_new_dated_value_applies_from_its_date_and_changes_the_version(policy_dir):
    before = load_policy(policy_dir)
    _edit(
        policy_dir / "clauses" / "10.cloud.yaml",
        "      - {from: 2022-01-01, value: 5000000, cites: 给予最高5万元的补贴}",
        "      - {from: 2022-01-01, value: 5000000, cites: 给予最高5万元的补贴}\n"
        "      - {from: 2025-01-01, value: 8000000, cites: 假设的新规定}",
    )
    after = load_policy(policy_dir)
    cloud = after.clauses["10.cloud"]
    assert cloud.parameters_on(dt.date(2024, 12, 31))["cap_fen"] == 5_000_000
    assert cloud.parameters_on(dt.date(2025, 1, 1))["cap_fen"] == 8_000_000
    assert before.version != after.version
