"""`subsidy policy diff OLD NEW` and `subsidy policy versions` (issue 14, item 2):
text with both citations, JSON lines, the chart, and bad input refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "applications.jsonl"
DRAFT, FINAL = "songjiang-ii-2022-draft", "fictional-final-2023"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "subsidy.cli", *args], input=stdin, capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_diff_lists_each_parameter_with_both_citations():
    result = run("policy", "diff", DRAFT, FINAL)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "candidate, FICTIONAL" in out
    assert "clause 10.cloud: cap_fen" in out
    assert "old: 5000000 from 2022-01-01 (给予最高5万元的补贴)" in out
    assert "new: 8000000 from 2023-07-01 (虚构定稿（演示用）第十条：给予最高8万元的补贴)" in out
    assert "effective date" in out and "new: 2023-07-01" in out
    assert "clause 11.identifiers: retired" in out


def test_a_version_against_itself_prints_no_difference():
    result = run("policy", "diff", DRAFT, DRAFT, "--applications", str(DEMO), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["kind"] for r in records} == {"version", "application", "firm", "budget_year", "total"}
    assert not any(r["difference_fen"] for r in records if r["kind"] == "firm")
    assert not any(r["differs"] for r in records if r["kind"] == "application")
    assert records[-1]["difference_fen"] == 0 and records[-1]["differing"] == 0


def test_diff_with_applications_as_json_lines_adds_up():
    result = run("policy", "diff", DRAFT, FINAL, "--applications", str(DEMO), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("version") == 2 and "parameter" in kinds and "retired" in kinds and "effective_from" in kinds
    apps = [r for r in records if r["kind"] == "application"]
    assert len(apps) == len([line for line in DEMO.read_text().splitlines() if line.strip()])
    years = [r for r in records if r["kind"] == "budget_year"]
    total = records[-1]
    # The draft's side is exactly what `subsidy simulate --summary` says.
    simulated = run("simulate", str(DEMO), "--summary")
    summary = json.loads(simulated.stdout.splitlines()[-1])["summary"]
    assert {str(y["year"]): y["old_fen"] for y in years if y["old_fen"]} == summary["by_year_fen"]
    assert total["old_fen"] == summary["total_fen"]
    assert total["difference_fen"] == sum(a["difference_fen"] for a in apps) == total["new_fen"] - total["old_fen"]
    firms = [r for r in records if r["kind"] == "firm"]
    assert sum(f["difference_fen"] for f in firms) == total["difference_fen"]
    identifiers = next(a for a in apps if a["application_id"] == "SJ-2024-0008")
    assert identifiers["old"]["outcome"] == "ELIGIBLE" and identifiers["new"]["outcome"] == "INELIGIBLE"
    assert identifiers["new"]["reasons"] == ["CLAUSE_RETIRED"]
    assert identifiers["new"]["policy_version"].startswith(f"{FINAL}+")


def test_diff_as_text_shows_the_applications_and_budget_years():
    result = run("policy", "diff", DRAFT, FINAL, "--applications", str(DEMO))
    assert result.returncode == 0, result.stderr
    assert "decided differently: 8" in result.stdout
    assert "SJ-2024-0003" in result.stdout and "+14,000" in result.stdout
    assert "firms that gain or lose" in result.stdout
    assert "total 合计" in result.stdout


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_the_chart_is_drawn(tmp_path, suffix):
    chart = tmp_path / f"outlay{suffix}"
    result = run("policy", "diff", DRAFT, FINAL, "--applications", str(DEMO), "--chart", str(chart))
    assert result.returncode == 0, result.stderr
    data = chart.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    else:
        assert b"<svg" in data[:1000] and b"<dc:date>" not in data


def test_bad_input_is_refused_naming_where(tmp_path):
    bad = tmp_path / "apps.jsonl"
    bad.write_text(DEMO.read_text().splitlines()[0] + '\n{"application_id": "X"}\n', encoding="utf-8")
    result = run("policy", "diff", DRAFT, FINAL, "--applications", str(bad), "--chart", str(tmp_path / "c.svg"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"subsidy policy: error: {bad}: line 2: ")
    assert result.stdout == "" and not (tmp_path / "c.svg").exists()
    result = run("policy", "diff", DRAFT, FINAL, "--applications", str(DEMO), "--chart", str(tmp_path / "c.gif"))
    assert result.returncode == 2 and "--chart: must end in .svg or .png" in result.stderr
    result = run("policy", "diff", DRAFT, "final-2099")
    assert result.returncode == 3 and "no version 'final-2099'" in result.stderr


def test_versions_lists_them_side_by_side():
    result = run("policy", "versions")
    assert result.returncode == 0, result.stderr
    assert f"{DRAFT}" in result.stdout and "adopted" in result.stdout
    assert "overlay of songjiang-ii-2022-draft, FICTIONAL" in result.stdout
    assert "retires 11.identifiers" in result.stdout


def test_a_changed_file_of_the_adopted_draft_is_refused_until_its_digests_are_recorded_again(tmp_path):
    import re
    import shutil

    policy = tmp_path / "policy"
    shutil.copytree(REPO / "policy", policy)
    clause = policy / "clauses" / "10.cloud.yaml"
    clause.write_text(
        clause.read_text(encoding="utf-8").replace(
            "      - {from: 2022-01-01, value: 5000000, cites: 给予最高5万元的补贴}\n",
            "      - {from: 2022-01-01, value: 5000000, cites: 给予最高5万元的补贴}\n"
            "      - {from: 2027-01-01, value: 8000000, cites: 松科委〔2026〕X号：上限调整为8万元}\n",
        ),
        encoding="utf-8",
    )
    refused = run("--policy-dir", str(policy), "policy", "versions")
    assert refused.returncode == 3
    assert f"{clause}: changed after version {DRAFT} was adopted" in refused.stderr
    digests = run("--policy-dir", str(policy), "policy", "versions", "--digests", DRAFT)
    assert digests.returncode == 0, digests.stderr
    register = policy / "versions.yaml"
    text = register.read_text(encoding="utf-8")
    recorded = re.search(r"      files:\n(        .*\n)+", text)
    assert recorded is not None
    register.write_text(text[: recorded.start()] + digests.stdout + text[recorded.end() :], encoding="utf-8")
    assert run("--policy-dir", str(policy), "policy", "versions").returncode == 0


def test_the_demo_prints_the_diff_of_the_fictional_final_and_writes_the_chart(tmp_path, capsys):
    from types import SimpleNamespace

    from subsidy_dev.demo import _show_policy_diff

    _show_policy_diff(SimpleNamespace(var_dir=tmp_path), DEMO)
    out = capsys.readouterr().out
    assert f"subsidy policy diff {DRAFT} {FINAL}" in out and "FICTIONAL" in out
    assert "decided differently: 8" in out and "total 合计" in out
    chart = tmp_path / "policy-diff-outlay.svg"
    assert str(chart) in out and b"<svg" in chart.read_bytes()[:1000]
