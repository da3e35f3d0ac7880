"""Adopting a policy version, the core (issue 14, item 4; subsidy/core/adoption.py):
four eyes, the checks before anything is recorded, the router, re-decisions
with new derived ids, the adoption report, and the register entry."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from subsidy.contracts.codec import parse_application
from subsidy.core import eligibility
from subsidy.core.adoption import (
    ADOPTED,
    PROPOSED,
    AdoptionRefused,
    AdoptionState,
    FourEyes,
    Router,
    effective,
    redecide,
    register_entry,
    report,
    step,
)
from subsidy.core.policy import DEFAULT_POLICY_DIR
from subsidy.core.versions import OpenApplication, load_versions

REPO = Path(__file__).resolve().parents[2]
DRAFT, FINAL = "songjiang-ii-2022-draft", "fictional-final-2023"
AT = "2025-11-03T09:00:00Z"
DEMO = {
    json.loads(line)["application_id"]: parse_application(json.loads(line))
    for line in (REPO / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
}


def _final_version() -> str:
    return load_versions().get(FINAL).policy.version


def _adopt(versions, first="reviewer-a", second="reviewer-b", open_apps=()):
    state = AdoptionState()
    proposed = step(state, versions, version_id=FINAL, policy_version=_final_version(), subject=first, at=AT)
    state = state.apply(proposed)
    adopted = step(
        state,
        versions,
        version_id=FINAL,
        policy_version=_final_version(),
        subject=second,
        at=AT,
        open_applications=open_apps,
    )
    return state.apply(adopted), proposed, adopted


def test_a_first_reviewer_proposes_and_a_second_adopts():
    versions = load_versions()
    state, proposed, adopted = _adopt(versions)
    assert proposed["event"] == PROPOSED and proposed["subject"] == "reviewer-a"
    assert adopted["event"] == ADOPTED
    assert (adopted["proposed_by"], adopted["subject"]) == ("reviewer-a", "reviewer-b")
    assert adopted["files"] == dict(versions.get(FINAL).files)
    assert FINAL in state.adopted and FINAL not in state.proposals
    assert AdoptionState.replay([proposed, adopted]) == state


def test_adoption_by_one_reviewer_alone_is_refused():
    versions = load_versions()
    state = AdoptionState().apply(
        step(AdoptionState(), versions, version_id=FINAL, policy_version=_final_version(), subject="reviewer-a", at=AT)
    )
    with pytest.raises(FourEyes, match="four-eyes: 'reviewer-a' proposed the adoption of fictional-final-2023"):
        step(state, versions, version_id=FINAL, policy_version=_final_version(), subject="reviewer-a", at=AT)
    assert FINAL not in state.adopted
    with pytest.raises(AdoptionRefused, match="subject: adoption needs an identified reviewer"):
        step(state, versions, version_id=FINAL, policy_version=_final_version(), subject=" ", at=AT)


def test_a_version_whose_files_changed_since_review_is_refused():
    versions = load_versions()
    with pytest.raises(AdoptionRefused, match="policy_version: .* changed since you reviewed them") as caught:
        step(AdoptionState(), versions, version_id=FINAL, policy_version=f"{FINAL}+00000000", subject="a", at=AT)
    assert caught.value.kind == "precondition"


def test_adoption_is_refused_while_an_open_application_claims_a_retired_clause():
    versions = load_versions()
    state = AdoptionState().apply(
        step(AdoptionState(), versions, version_id=FINAL, policy_version=_final_version(), subject="a", at=AT)
    )
    with pytest.raises(AdoptionRefused, match=r"version.yaml: retire.11.identifiers: .*SJ-2024-0008"):
        step(
            state,
            versions,
            version_id=FINAL,
            policy_version=_final_version(),
            subject="b",
            at=AT,
            open_applications=[OpenApplication("SJ-2024-0008", "11.identifiers")],
        )
    with pytest.raises(AdoptionRefused, match=f"versions.{DRAFT}.status: is adopted"):
        step(state, versions, version_id=DRAFT, policy_version=versions.get(DRAFT).policy.version, subject="b", at=AT)


def test_after_adoption_each_application_is_decided_by_the_version_in_force_on_its_day():
    versions = load_versions()
    state, _, _ = _adopt(versions)
    router = Router(effective(versions, state).verify())
    draft, final = versions.get(DRAFT), versions.get(FINAL)
    before = DEMO["SJ-2023-0004"]  # 2023-06-02
    after = DEMO["SJ-2023-0005"]  # 2023-07-10
    assert router.version_for(before).id == DRAFT
    assert router.version_for(after).id == FINAL
    identifiers = DEMO["SJ-2024-0008"]  # a clause the final retires: the final says so
    assert router.version_for(identifiers).id == FINAL
    assert eligibility.evaluate(identifiers, router.policy_for(identifiers)).reasons[0].code == "CLAUSE_RETIRED"
    # Only the draft adopted: every application is the draft's, as before.
    only_draft = Router(versions.verify())
    assert {only_draft.policy_for(a).version for a in DEMO.values()} == {draft.policy.version}
    assert final.policy.version != draft.policy.version


def test_a_pending_application_is_re_decided_under_the_new_version_with_a_new_derived_id():
    final = load_versions().get(FINAL)
    pending = DEMO["SJ-2023-0003"]  # 10.cloud, submitted 2023-05-08, before the final's date
    old = eligibility.evaluate(pending, load_versions().get(DRAFT).policy)
    new = redecide(pending, final)
    assert new.decision_id == f"SJ-2023-0003@{final.policy.version}" != old.decision_id
    assert new.outcome == "ELIGIBLE" and new.policy_version == final.policy.version
    assert new.submitted_on == pending.submitted_on
    assert new.supersedes_decision_id == ""  # without the previous policy it names nothing


def test_a_re_decision_names_the_decision_it_supersedes_and_a_same_id_supersedes_nothing():
    versions = load_versions()
    draft, final = versions.get(DRAFT), versions.get(FINAL)
    pending = DEMO["SJ-2023-0003"]
    old = eligibility.evaluate(pending, draft.policy)
    new = redecide(pending, final, draft.policy)
    assert new.supersedes_decision_id == old.decision_id
    assert new.decision_id != old.decision_id
    # Re-deciding under the policy that decided it is the same decision: it supersedes nothing.
    assert redecide(pending, draft, draft.policy).supersedes_decision_id == ""


def test_the_adoption_report_lists_noticed_awards_that_would_have_differed():
    versions = load_versions()
    draft, final = versions.get(DRAFT), versions.get(FINAL)
    awards = []
    for application_id in ("SJ-2024-0008", "SJ-2025-0007", "SJ-2024-0006"):
        app = DEMO[application_id]
        decision = eligibility.evaluate(app, draft.policy)
        awards.append((app, decision.max_award_fen, decision.policy_version))
    lines = {line.application_id: line for line in report(awards, final)}
    assert set(lines) == {"SJ-2024-0008", "SJ-2025-0007"}  # clause 3 (SJ-2024-0006) did not change
    assert lines["SJ-2024-0008"].new_outcome == "INELIGIBLE"
    assert lines["SJ-2024-0008"].difference_fen == -lines["SJ-2024-0008"].kept_fen
    assert lines["SJ-2025-0007"].difference_fen == 200000000 - 300000000


def test_the_register_entry_recorded_makes_the_adoption_hold_and_the_files_immutable(tmp_path):
    policy_dir = tmp_path / "policy"
    shutil.copytree(DEFAULT_POLICY_DIR, policy_dir)
    versions = load_versions(policy_dir)
    _, _, adopted = _adopt(versions)
    entry = register_entry(adopted, versions)
    register = policy_dir / "versions.yaml"
    text = register.read_text(encoding="utf-8")
    candidate = f"  {FINAL}:\n    status: candidate\n    folder: versions/{FINAL}\n"
    assert candidate in text
    text = text.replace(candidate, entry.split("  # and in")[0])
    text = text.replace(
        "    status: adopted\n    folder: .\n", "    status: adopted\n    folder: .\n    effective_until: 2023-07-01\n"
    )
    register.write_text(text, encoding="utf-8")
    assert [v.id for v in load_versions(policy_dir).verify()] == [DRAFT, FINAL]
    overlay = policy_dir / "versions" / FINAL / "clauses" / "10.cloud.yaml"
    overlay.write_text(overlay.read_text(encoding="utf-8").replace("8000000", "9000000"), encoding="utf-8")
    with pytest.raises(Exception, match=rf"^{overlay}: changed after version {FINAL} was adopted"):
        load_versions(policy_dir).verify()
    assert dt.date(2023, 7, 1).isoformat() in entry
