"""Policy versions side by side (issue 14): the register, overlays, the
fictional final, immutability of adopted versions, and bad versions refused
naming the file and the field (subsidy/core/versions.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from subsidy.contracts.calculator import evaluate_application
from subsidy.core.policy import DEFAULT_POLICY_DIR, PolicyError, load_policy
from subsidy.core.versions import OpenApplication, check_adoptable, load_versions

DRAFT = "songjiang-ii-2022-draft"
FINAL = "fictional-final-2023"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _demo(application_id: str) -> dict:
    for line in (REPO / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip() and json.loads(line)["application_id"] == application_id:
            return json.loads(line)
    raise AssertionError(application_id)


def test_the_draft_is_the_adopted_version_and_its_id_is_unchanged():
    versions = load_versions()
    adopted = versions.verify()
    assert [v.id for v in adopted] == [DRAFT]
    draft = adopted[0]
    assert draft.policy.version == load_policy().version
    assert draft.policy.version == f"{DRAFT}+{draft.digest[:8]}"
    assert draft.includes["workflow"] == (DEFAULT_POLICY_DIR / "workflow.yaml").resolve()
    assert draft.includes["proposals"] == (DEFAULT_POLICY_DIR / "proposals.yaml").resolve()
    assert draft.citations


def test_the_fictional_final_shares_what_it_does_not_change():
    versions = load_versions()
    draft, final = versions.get(DRAFT), versions.get(FINAL)
    assert final.fictional and final.status == "candidate" and final.base == DRAFT
    assert "fictional" in str(final.folder) and "虚构" in final.name
    # Only the changed clauses have a file in the overlay; the rest are the draft's.
    assert sorted(p.name for p in (final.folder / "clauses").glob("*.yaml")) == sorted(
        f"{c}.yaml" for c in final.changed
    )
    assert final.effective_from > draft.effective_from
    assert set(final.retired) == {"11.identifiers"}
    for clause_id, cp in draft.policy.clauses.items():
        if clause_id in final.changed:
            continue
        assert final.policy.clauses[clause_id].parameters == cp.parameters
    assert final.policy.clauses["10.cloud"].parameters["cap_fen"].values[0].value == 8000000
    assert final.policy.version.startswith(f"{FINAL}+") and final.policy.version != draft.policy.version
    # The review workflow and 免申即享 are included by reference, not copied.
    assert final.includes == draft.includes
    assert not (final.folder / "workflow.yaml").exists() and not (final.folder / "proposals.yaml").exists()


def test_the_final_decides_by_its_numbers_its_date_and_its_retired_clause():
    versions = load_versions()
    draft, final = versions.get(DRAFT).policy, versions.get(FINAL).policy
    cloud = _demo("SJ-2024-0003")
    cloud["cloud_adoption"]["spend_fen"] = 20_000_000
    # Numbers: the cloud cap is 8万 under the final, 5万 under the draft.
    old, new = evaluate_application(cloud, draft), evaluate_application(cloud, final)
    assert (old["max_award_fen"], new["max_award_fen"]) == (5000000, 8000000)
    assert new["policy_version"] == final.version and old["policy_version"] == draft.version
    # The date: before 2023-07-01 the final is not in force.
    early = evaluate_application({**cloud, "submitted_on": "2023-03-01"}, final)
    assert early["outcome"] == "INELIGIBLE"
    assert [r["code"] for r in early["reasons"]] == ["POLICY_NOT_IN_FORCE"]
    # The retired clause: INELIGIBLE under the final, citing why.
    ident = _demo("SJ-2024-0008")
    assert evaluate_application(ident, draft)["outcome"] == "ELIGIBLE"
    retired = evaluate_application(ident, final)
    assert retired["outcome"] == "INELIGIBLE"
    assert retired["reasons"][0]["code"] == "CLAUSE_RETIRED" and "虚构定稿" in retired["reasons"][0]["message"]


def test_an_adopted_versions_changed_file_refuses_to_load_naming_it(policy_dir):
    _edit(policy_dir / "clauses" / "2.yaml", "value: 30,", "value: 31,")
    with pytest.raises(PolicyError) as caught:
        load_versions(policy_dir).verify()
    message = str(caught.value)
    assert message.startswith(f"{policy_dir / 'clauses' / '2.yaml'}: changed after version {DRAFT} was adopted")
    assert f"versions.{DRAFT}.adopted.files" in message


def test_a_file_added_to_an_adopted_version_refuses_to_load(policy_dir):
    shutil.copy(policy_dir / "clauses" / "13.yaml", policy_dir / "clauses" / "99.yaml")
    with pytest.raises(PolicyError, match="99.yaml"):
        load_versions(policy_dir).verify()


def test_an_overlay_that_fails_to_load_is_refused_naming_file_and_field(policy_dir):
    bad = policy_dir / "versions" / FINAL / "clauses" / "6.yaml"
    bad.write_text('clause: "6"\nparameters: {cap_fen: {values: [{from: 2023-07-01, value: 1\n', encoding="utf-8")
    with pytest.raises(PolicyError, match=rf"^{bad}: not valid YAML"):
        load_versions(policy_dir).get(FINAL)
    bad.write_text('clause: "6"\nparameters: {cap_fen: {values: [{from: 2023-07-01, value: -5, cites: x}]}}\n')
    with pytest.raises(PolicyError, match=rf"^{bad}: parameters.cap_fen.values\[0\].value: must be a whole number"):
        load_versions(policy_dir).get(FINAL)
    bad.write_text('clause: "6"\nparameters: {capp_fen: {values: [{from: 2023-07-01, value: 5, cites: x}]}}\n')
    with pytest.raises(PolicyError, match=rf"^{bad}: parameters.capp_fen: clause 6 has no parameter"):
        load_versions(policy_dir).get(FINAL)


def test_a_changed_meaning_without_a_citation_of_the_new_text_is_refused(policy_dir):
    overlay = policy_dir / "versions" / FINAL / "clauses" / "6.yaml"
    _edit(overlay, 'cites: "虚构定稿（演示用）第六条：最高不超过200万元"', "cites: 最高不超过300万元")
    _edit(overlay, "from: 2023-07-01", "from: 2022-01-01")
    with pytest.raises(PolicyError) as caught:
        load_versions(policy_dir).get(FINAL)
    assert str(caught.value).startswith(f"{overlay}: parameters.cap_fen.values[0].cites: the value changes")


def test_an_overlay_that_changes_nothing_is_refused(policy_dir):
    overlay = policy_dir / "versions" / FINAL / "clauses" / "6.yaml"
    overlay.write_text(
        'clause: "6"\nparameters:\n  cap_fen:\n    values:\n'
        "      - {from: 2022-01-01, value: 300000000, cites: 最高不超过300万元}\n",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError, match=rf"^{overlay}: parameters.cap_fen.values: the same values"):
        load_versions(policy_dir).get(FINAL)


def _adopt_in_register(policy_dir: Path, version_id: str) -> None:
    """Mark a version adopted in the register with its files' digests (as adoption does)."""
    folder = policy_dir / "versions" / version_id
    files = ["version.yaml", *(f"clauses/{p.name}" for p in sorted((folder / "clauses").glob("*.yaml")))]
    listed = "".join(f"        {f}: {hashlib.sha256((folder / f).read_bytes()).hexdigest()}\n" for f in files)
    register = policy_dir / "versions.yaml"
    _edit(
        register,
        f"    status: candidate\n    folder: versions/{version_id}\n",
        f"    status: adopted\n    folder: versions/{version_id}\n    adopted:\n      files:\n{listed}",
    )


def test_adopted_versions_overlapping_for_a_clause_are_refused_naming_the_field(policy_dir):
    _adopt_in_register(policy_dir, FINAL)
    with pytest.raises(PolicyError) as caught:
        load_versions(policy_dir).verify()
    assert str(caught.value).startswith(f"{policy_dir / 'versions' / FINAL / 'version.yaml'}: effective_from: ")
    assert f"overlaps adopted version {DRAFT}" in str(caught.value)
    # Ending the draft on the final's date makes them side by side.
    _edit(
        policy_dir / "versions.yaml",
        "    status: adopted\n    folder: .\n",
        "    status: adopted\n    folder: .\n    effective_until: 2023-07-01\n",
    )
    versions = load_versions(policy_dir)
    assert [v.id for v in versions.verify()] == [DRAFT, FINAL]
    import datetime as dt

    assert versions.in_force("2", dt.date(2023, 6, 30)).id == DRAFT
    assert versions.in_force("2", dt.date(2023, 7, 1)).id == FINAL
    assert versions.in_force("11.identifiers", dt.date(2023, 7, 1)) is None


def test_adoption_is_refused_while_open_applications_claim_a_retired_clause():
    versions = load_versions()
    open_apps = [OpenApplication("SJ-2024-0008", "11.identifiers"), OpenApplication("SJ-2024-0009", "9")]
    with pytest.raises(PolicyError) as caught:
        check_adoptable(versions, FINAL, open_apps)
    assert str(caught.value).startswith(f"{versions.get(FINAL).index_path}: retire.11.identifiers: ")
    assert "SJ-2024-0008" in str(caught.value)
    assert check_adoptable(versions, FINAL, open_apps[1:]).id == FINAL
    with pytest.raises(PolicyError, match=rf"versions.{DRAFT}.status: is adopted"):
        check_adoptable(versions, DRAFT)


def test_a_register_entry_with_an_unknown_status_is_refused(policy_dir):
    _edit(policy_dir / "versions.yaml", "status: candidate", "status: approved")
    with pytest.raises(PolicyError, match=rf"versions.{FINAL}.status: must be one of draft, candidate"):
        load_versions(policy_dir)


def test_a_candidate_whose_folder_is_not_shipped_is_refused_only_when_asked_for(policy_dir):
    """deploy/k8s ships policy/versions.yaml but not the overlay folders: the
    adopted version still loads and verifies; the candidate is refused, naming
    the field, only when loaded."""
    shutil.rmtree(policy_dir / "versions")
    versions = load_versions(policy_dir)
    assert [v.id for v in versions.verify()] == [DRAFT]
    with pytest.raises(PolicyError, match=rf"versions.yaml: versions.{FINAL}.folder: no folder"):
        versions.get(FINAL)
