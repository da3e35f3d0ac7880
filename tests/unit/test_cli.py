"""The calculator as a person or a script uses it: `.venv/bin/subsidy`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SUBSIDY = [sys.executable, "-m", "subsidy.cli"]


def run(*args, stdin=None):
    return subprocess.run([*SUBSIDY, *args], input=stdin, capture_output=True, text=True, cwd=REPO, timeout=60)


def test_the_console_script_is_installed():
    assert (REPO / ".venv" / "bin" / "subsidy").exists()


def test_simulate_prints_the_worked_examples_exactly():
    result = run("simulate", str(FIXTURES / "applications.jsonl"))
    assert result.returncode == 0, result.stderr
    expected = [json.loads(line) for line in (FIXTURES / "simulate-expected.jsonl").read_text().splitlines()]
    actual = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual):
        assert {k: got[k] for k in want} == want
        assert "duplicate" in got or not want.get("duplicate")


def test_simulate_summary_is_the_outlay_per_budget_year():
    result = run("simulate", "-", "--summary", stdin=(FIXTURES / "applications.jsonl").read_text())
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary == {
        "summary": {"by_year_fen": {"2024": 413518518, "2025": 238888888, "2026": 88888890}, "total_fen": 741296296}
    }


def test_evaluate_prints_one_decision_from_a_file_or_stdin():
    first = (FIXTURES / "applications.jsonl").read_text().splitlines()[0]
    result = run("evaluate", "-", stdin=first)
    decision = json.loads(result.stdout)
    assert decision["application_id"] == "EX-2024-0001"
    assert decision["clause"] == "1.rent" and decision["outcome"] == "ELIGIBLE"
    assert decision["max_award_fen"] == 275000000
    assert decision["reasons"][0]["clause"] == "1"
    assert decision["policy_version"]


GOOD = (FIXTURES / "applications.jsonl").read_text().splitlines()[0]


@pytest.mark.parametrize(
    "text,mentions",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (GOOD.replace('"rent":', '"dcmm": {"level": 3}, "rent":'), "exactly one claim"),
        (GOOD.replace('"rent": {', '"no_claim": {'), "no_claim: unknown field"),
        (GOOD.replace("913101173AGYGLUY2P", "913101173AGYGLUY2Q"), "firm.credit_code"),
        (GOOD.replace("732000000", "-732000000"), "rent.rent_paid_fen: must not be negative"),
        (GOOD.replace("2023-07-01", "2023-02-30"), "rent.lease_start: is not a real date: 2023-02-30"),
        (GOOD.replace('"PLATFORM"', '"PLATFROM"'), "firm.kinds[0]: unknown value 'PLATFROM'"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_no_decision(text, mentions):
    for command in ("evaluate", "simulate"):
        result = run(command, "-", stdin=text)
        assert result.returncode == 2
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert mentions in result.stderr
        assert "Traceback" not in result.stderr


def test_simulate_names_the_bad_line_and_prints_nothing_before_it():
    lines = (FIXTURES / "applications.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"2024": 110000000000', '"2024": -1')
    result = run("simulate", "-", stdin="\n".join(lines))
    assert result.returncode == 2 and result.stdout == ""
    assert "line 3: revenue_milestone.revenue_by_year_fen.2024: must not be negative" in result.stderr


def test_a_missing_file_is_a_clear_error():
    result = run("evaluate", "no/such/file.json")
    assert result.returncode == 2 and "no/such/file.json: cannot read" in result.stderr


def test_a_broken_policy_is_refused_at_start_with_file_and_field(tmp_path):
    import shutil

    shutil.copytree(REPO / "policy", tmp_path / "policy")
    path = tmp_path / "policy" / "clauses" / "9.yaml"
    path.write_text(path.read_text().replace("limit: once", "limit: sometimes"))
    result = subprocess.run(
        [*SUBSIDY, "simulate", "-"],
        input=GOOD,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "SUBSIDY_POLICY_DIR": str(tmp_path / "policy")},
        timeout=60,
    )
    assert result.returncode == 3 and result.stdout == ""
    assert "9.yaml: ledger.limit" in result.stderr


def test_the_table_shows_every_application_and_the_outlay():
    result = run("simulate", str(FIXTURES / "applications.jsonl"), "--summary", "--format", "table")
    assert result.returncode == 0
    for app_id in ("EX-2024-0001", "EX-2024-0004"):
        assert app_id in result.stdout
    assert "7,412,962.96" in result.stdout
