"""Runs the policy cases in tests/policy_cases/*.yaml: cases policy staff can
read and extend (format: tests/policy_cases/README.md)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from subsidy.contracts.calculator import Simulation, evaluate_application
from subsidy.contracts.codec import BadInput
from subsidy.core import clauses
from subsidy.core.clauses import ClauseError
from subsidy.core.policy import load_policy

CASES_DIR = Path(__file__).parent / "policy_cases"
POLICY = load_policy()


def _resolve_firm(application: dict[str, Any], firms: dict[str, Any]) -> dict[str, Any]:
    application = copy.deepcopy(application)
    firm = application.get("firm")
    if isinstance(firm, str):
        assert firm in firms, f"case names firm {firm!r}, not defined under `firms`"
        application["firm"] = copy.deepcopy(firms[firm])
    # YAML reads unquoted dates as dates; the contract writes them as strings.
    return _dates_as_text(application)


def _dates_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _read_cases(cases_dir: Path) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(file, case, the file's firms) for every case."""
    found = []
    for path in sorted(cases_dir.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        firms = data.get("firms") or {}
        found.extend((path, case, firms) for case in data["cases"])
    return found


def _claims_decided(case: dict[str, Any]) -> set[str]:
    """The claim keys of the applications a case expects a decision for
    (a bad-input case decides nothing)."""
    if "evaluate" in case:
        spec = case["evaluate"]
        applications = [spec["application"]] if "expected" in spec else []
    else:
        applications = case.get("simulate", {}).get("applications", [])
    return {key for application in applications for key in application if key in clauses.BY_KEY}


def check_every_clause_has_cases(cases_dir: Path) -> None:
    """A clause module without a case that decides one of its claims is a
    clause with a part missing: refuse to run, naming it."""
    covered = set().union(*(_claims_decided(case) for _, case, _ in _read_cases(cases_dir)))
    missing = [c for c in clauses.ALL if c.key not in covered]
    if missing:
        raise ClauseError(
            "; ".join(
                f"{clauses.where(c)}: no policy cases: add {cases_dir.name}/clause_<number>_<name>.yaml with a case "
                f"that decides a `{c.key}` claim (see {cases_dir.name}/README.md)"
                for c in missing
            )
        )


def _load_cases():
    check_every_clause_has_cases(CASES_DIR)
    return [
        pytest.param(case, firms, id=f"{path.stem}: {case['name']}") for path, case, firms in _read_cases(CASES_DIR)
    ]


def _assert_subset(expected: dict[str, Any], actual: dict[str, Any], where: str) -> None:
    for key, value in expected.items():
        assert key in actual, f"{where}: `{key}` missing from {actual}"
        assert actual[key] == _dates_as_text(value), (
            f"{where}: `{key}` is {actual[key]!r}, expected {value!r}\n{actual}"
        )


def _assert_reasons(result: dict[str, Any], where: str) -> None:
    if result["outcome"] == "INELIGIBLE":
        assert result["reasons"], f"{where}: INELIGIBLE without a reason"
        for reason in result["reasons"]:
            assert reason["code"] and reason["clause"] and reason["message"], f"{where}: incomplete reason {reason}"
    if result["outcome"] != "ELIGIBLE":
        assert result["max_award_fen"] == 0, f"{where}: ceiling without ELIGIBLE"


@pytest.mark.parametrize("case,firms", _load_cases())
def test_policy_case(case: dict[str, Any], firms: dict[str, Any]) -> None:
    if "evaluate" in case:
        spec = case["evaluate"]
        application = _resolve_firm(spec["application"], firms)
        if "error_mentions" in spec:
            with pytest.raises(BadInput) as refused:
                evaluate_application(application, POLICY)
            for word in spec["error_mentions"]:
                assert word in str(refused.value), f"error {refused.value!s} does not mention {word!r}"
            return
        result = evaluate_application(application, POLICY)
        _assert_subset(spec["expected"], result, "decision")
        _assert_reasons(result, "decision")
    elif "simulate" in case:
        spec = case["simulate"]
        simulation = Simulation(POLICY)
        results = [simulation.apply(simulation.decide(_resolve_firm(a, firms))) for a in spec["applications"]]
        assert len(spec["expected"]) == len(results), "one expected entry per application"
        for number, (expected, actual) in enumerate(zip(spec["expected"], results), start=1):
            _assert_subset(expected, actual, f"application {number}")
            _assert_reasons(actual, f"application {number}")
            assert sum(t["amount_fen"] for t in actual["tranches"]) == actual["granted_fen"]
        if "summary" in spec:
            _assert_subset(spec["summary"], simulation.summary()["summary"], "summary")
    else:
        pytest.fail("a case has `evaluate` or `simulate`")


@pytest.mark.parametrize(
    "left_out,named,key",
    [
        ("clause_10_park.yaml", "clause 10.park (subsidy.core.clauses.benchmark_park)", "benchmark_park"),
        # bad_input.yaml still has industry_platform applications, but refused ones decide nothing.
        ("clause_02_industry_platform.yaml", "clause 2 (subsidy.core.clauses.industry_platform)", "industry_platform"),
    ],
)
def test_a_clause_without_cases_stops_the_run_naming_it(tmp_path, left_out, named, key):
    check_every_clause_has_cases(CASES_DIR)  # the shipped cases cover every clause
    for path in sorted(CASES_DIR.glob("*.yaml")):
        if path.name != left_out:
            (tmp_path / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ClauseError) as refused:
        check_every_clause_has_cases(tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{named}: no policy cases: add ") and f"a case that decides a `{key}` claim" in message
    assert message.count("no policy cases") == 1
