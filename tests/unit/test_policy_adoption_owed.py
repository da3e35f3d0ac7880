"""What an adoption owes the decisions topic, the pure part
(subsidy/core/adoption.py: ``AdoptionState.owed``, ``published``): the
``adopted`` event records the re-decisions, a ``redecisions_published`` event
acknowledges them, and whatever replays the trail knows what is still owed."""

from __future__ import annotations

from subsidy.core.adoption import (
    ADOPTED,
    PROPOSED,
    REDECISIONS_PUBLISHED,
    REFUSED,
    SYSTEM_SUBJECT,
    AdoptionState,
    published,
)

V = "fictional-final-2023"
PV = f"{V}+7a319421"


def proposed(subject="reviewer-a"):
    return {"event": PROPOSED, "version_id": V, "policy_version": PV, "subject": subject, "at": "2025-11-03T09:00:00Z"}


def adopted(*application_ids, subject="reviewer-b", at="2025-11-03T09:05:00Z", **extra):
    event = {
        "event": ADOPTED,
        "version_id": V,
        "policy_version": PV,
        "subject": subject,
        "at": at,
        "proposed_by": "reviewer-a",
        "proposed_at": "2025-11-03T09:00:00Z",
        "effective_from": "2023-07-01",
        "base": "songjiang-ii-2022-draft",
        "files": {},
        **extra,
    }
    if application_ids or "redecisions" not in extra:
        event["redecisions"] = [{"decision_id": f"{a}@{PV}", "application_id": a} for a in application_ids]
    return event


def acknowledged(*application_ids, version_id=V):
    return {
        "event": REDECISIONS_PUBLISHED,
        "version_id": version_id,
        "policy_version": PV,
        "subject": SYSTEM_SUBJECT,
        "at": "2025-11-03T09:05:01Z",
        "decision_ids": [f"{a}@{PV}" for a in application_ids],
    }


def owed_ids(state):
    return {v: list(o.decision_ids) for v, o in state.owed.items()}


def test_an_adoption_owes_its_redecisions_until_they_are_acknowledged():
    state = AdoptionState.replay([proposed(), adopted("SJ-1", "SJ-2")])
    assert owed_ids(state) == {V: [f"SJ-1@{PV}", f"SJ-2@{PV}"]}
    assert state.owed_count == 2
    assert state.owed[V].redecisions[f"SJ-2@{PV}"] == {"decision_id": f"SJ-2@{PV}", "application_id": "SJ-2"}
    assert (state.owed[V].policy_version, state.owed[V].adopted_at) == (PV, "2025-11-03T09:05:00Z")
    settled = state.apply(acknowledged("SJ-1", "SJ-2"))
    assert settled.owed == {} and settled.owed_count == 0
    assert V in settled.adopted  # acknowledging changes nothing else


def test_a_partial_acknowledgement_leaves_the_rest_owed():
    state = AdoptionState.replay([proposed(), adopted("SJ-1", "SJ-2", "SJ-3"), acknowledged("SJ-2")])
    assert owed_ids(state) == {V: [f"SJ-1@{PV}", f"SJ-3@{PV}"]}
    assert state.apply(acknowledged("SJ-1", "SJ-3")).owed == {}


def test_nothing_is_owed_without_redecisions_or_before_events_carried_them():
    assert AdoptionState.replay([proposed(), adopted()]).owed == {}
    old = adopted()
    del old["redecisions"]  # an adopted event recorded before adoptions carried their re-decisions
    assert AdoptionState.replay([proposed(), old]).owed == {}
    assert AdoptionState.replay([proposed(), {**proposed(), "event": REFUSED}]).owed == {}


def test_acknowledging_twice_or_what_is_not_owed_changes_nothing():
    """Two instances may both publish and both record it; an id nothing owes is ignored."""
    state = AdoptionState.replay([proposed(), adopted("SJ-1", "SJ-2"), acknowledged("SJ-1")])
    again = state.apply(acknowledged("SJ-1")).apply(acknowledged("SJ-9")).apply(acknowledged("SJ-1", version_id="x"))
    assert owed_ids(again) == owed_ids(state) == {V: [f"SJ-2@{PV}"]}
    assert AdoptionState().apply(acknowledged("SJ-1")).owed == {}


def test_replaying_the_trail_after_the_local_state_gives_the_same_owed():
    """An instance applies its own events as it writes them and reads them back
    from the shared trail later: the adoption re-applied after its
    acknowledgement owes again only until the acknowledgement is read back too."""
    trail = [proposed(), adopted("SJ-1"), acknowledged("SJ-1")]
    local = AdoptionState.replay(trail)
    assert local.owed == {}
    assert owed_ids(local.apply(trail[1])) == {V: [f"SJ-1@{PV}"]}
    assert AdoptionState.replay([*trail, *trail]).owed == {}


def test_two_racing_approvals_owe_the_union_by_decision_id():
    state = AdoptionState.replay([proposed(), adopted("SJ-1", "SJ-2"), adopted("SJ-2", "SJ-3", subject="reviewer-c")])
    assert owed_ids(state) == {V: [f"SJ-1@{PV}", f"SJ-2@{PV}", f"SJ-3@{PV}"]}
    assert state.apply(acknowledged("SJ-1", "SJ-2")).apply(acknowledged("SJ-2", "SJ-3")).owed == {}


def test_the_acknowledgement_event_names_only_what_is_owed():
    state = AdoptionState.replay([proposed(), adopted("SJ-1", "SJ-2")])
    event = published(state.owed[V], [f"SJ-2@{PV}", f"SJ-9@{PV}"], at="2025-11-03T09:06:00Z")
    assert event == {
        "event": REDECISIONS_PUBLISHED,
        "version_id": V,
        "policy_version": PV,
        "subject": "eligibility",
        "at": "2025-11-03T09:06:00Z",
        "decision_ids": [f"SJ-2@{PV}"],
    }
    assert owed_ids(state.apply(event)) == {V: [f"SJ-1@{PV}"]}
