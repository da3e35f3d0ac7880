"""PolicyService.ListVersions (issue 14): the adoption state as eligibility
sees it now, over a real grpc.aio server. Every version of the register with
the trail's adoptions applied (a version adopted by two reviewers is
``adopted`` before its register entry is committed, its base ending on its
effective date), a pending proposal with who proposed which files, when and
why, the adoption with who approved and when, and the trail's events
(proposals, adoptions, refusals with their reasons) — after a restart from a
file trail, and across instances sharing a trail. Who may read it is the
access policy's, as for GetShadowDifference: REVIEWER, FINANCE and OPERATOR,
the others refused and counted."""

from __future__ import annotations

import asyncio
import json

import grpc
from eligibility_support import POLICY
from prometheus_client import REGISTRY
from test_eligibility_adoption import FINAL, FINAL_VERSION, NOW, Found, desk_for, request

from subsidy.core.policy import DEFAULT_POLICY_DIR
from subsidy.core.versions import load_versions
from subsidy.platform.security import GrpcSecurity
from subsidy.services.eligibility.adapters.adoption_log import AdoptionLog
from subsidy.services.eligibility.adapters.grpc import GrpcServer
from subsidy.services.eligibility.adoption import AdoptionDesk
from subsidy.services.eligibility.handlers import Handler
from subsidy.v1 import policy_service_pb2, policy_service_pb2_grpc

DRAFT = "songjiang-ii-2022-draft"
DRAFT_VERSION = load_versions().get(DRAFT).policy.version
LIST = policy_service_pb2.ListVersionsRequest()


def as_(subject: str, role: str = "REVIEWER") -> tuple[tuple[str, str], ...]:
    return (("x-subsidy-subject", subject), ("x-subsidy-role", role))


def rpc(desk, *steps, security=None):
    """Each (method, metadata, request) in turn on one server; the answers or RpcErrors."""

    async def main():
        server = GrpcServer(
            "127.0.0.1:0", POLICY, ready=lambda: True, grace_seconds=1.0, adoption=desk, security=security
        )
        await server.start()
        results = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
                for method, metadata, message in steps:
                    try:
                        results.append(await getattr(stub, method)(message, metadata=metadata, timeout=10))
                    except grpc.aio.AioRpcError as exc:
                        results.append(exc)
        finally:
            await server.stop()
        return results

    return asyncio.run(main())


def by_id(reply) -> dict[str, policy_service_pb2.PolicyVersionState]:
    return {v.version_id: v for v in reply.versions}


def test_the_register_as_it_is_before_any_step(tmp_path):
    desk = desk_for(tmp_path, Handler(POLICY, lambda: NOW))
    [reply] = rpc(desk, ("ListVersions", as_("finance-1", "FINANCE"), LIST))
    assert [v.version_id for v in reply.versions] == load_versions().ids()
    draft, final = by_id(reply)[DRAFT], by_id(reply)[FINAL]
    assert (draft.status, draft.register_status, draft.policy_version) == ("adopted", "adopted", DRAFT_VERSION)
    assert (draft.effective_from, draft.effective_until) == ("2022-01-01", "")
    assert not draft.HasField("adoption")  # adopted by the register alone, not through the trail
    assert (final.status, final.register_status, final.policy_version) == ("candidate", "candidate", FINAL_VERSION)
    assert (final.base, final.effective_from, final.problem) == (DRAFT, "2023-07-01", "")
    assert not final.HasField("proposal") and not final.HasField("adoption")
    assert list(reply.events) == [] and reply.earlier_events == 0
    assert reply.read_at.startswith("2025-11-03T09:00:00")
    assert reply.trail == f"file {tmp_path / 'adoptions.jsonl'}"


def test_the_pending_proposal_then_the_adoption_and_every_step_of_the_trail(tmp_path):
    handler = Handler(POLICY, lambda: NOW)
    desk = desk_for(tmp_path, handler, found=Found(open_ids=["SJ-2023-0003"]))
    adopt = request()
    proposed, pending, refused, adopted, after = rpc(
        desk,
        ("AdoptVersion", as_("reviewer-a"), adopt),
        ("ListVersions", as_("reviewer-b"), LIST),
        (
            "AdoptVersion",
            as_("reviewer-a"),
            policy_service_pb2.AdoptVersionRequest(version_id=FINAL, policy_version=FINAL_VERSION, reason="我自己批准"),
        ),
        (
            "AdoptVersion",
            as_("reviewer-b"),
            policy_service_pb2.AdoptVersionRequest(version_id=FINAL, policy_version=FINAL_VERSION, reason="复核同意"),
        ),
        ("ListVersions", as_("operator-1", "OPERATOR"), LIST),
    )
    assert proposed.status == "proposed" and adopted.status == "adopted"
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED

    # The second reviewer sees what awaits them: who proposed which files, when, why.
    final = by_id(pending)[FINAL]
    assert (final.status, final.register_status) == ("candidate", "candidate")
    p = final.proposal
    assert (p.policy_version, p.proposed_by, p.reason, p.files_unchanged) == (
        FINAL_VERSION,
        "reviewer-a",
        adopt.reason,
        True,
    )
    assert p.proposed_at == proposed.proposed_at
    assert not final.HasField("adoption")
    assert [(e.event, e.subject) for e in pending.events] == [("proposed", "reviewer-a")]

    # Adopted: so before the register entry is committed, its base ending on its effective date.
    final, draft = by_id(after)[FINAL], by_id(after)[DRAFT]
    assert (final.status, final.register_status) == ("adopted", "candidate")
    assert not final.HasField("proposal")
    a = final.adoption
    assert (a.policy_version, a.proposed_by, a.approved_by, a.reason) == (
        FINAL_VERSION,
        "reviewer-a",
        "reviewer-b",
        "复核同意",
    )
    assert (a.proposed_at, a.adopted_at) == (adopted.proposed_at, adopted.adopted_at)
    assert (a.effective_from, a.base) == ("2023-07-01", DRAFT)
    assert (draft.status, draft.effective_until) == ("adopted", "2023-07-01")

    # The trail, every step: the refusal with its kind, why, and the reason typed.
    assert [(e.event, e.subject, e.policy_version) for e in after.events] == [
        ("proposed", "reviewer-a", FINAL_VERSION),
        ("refused", "reviewer-a", FINAL_VERSION),
        ("adopted", "reviewer-b", FINAL_VERSION),
    ]
    first, no, yes = after.events
    assert first.reason == adopt.reason and first.refusal_kind == "" and first.refusal == ""
    assert (no.refusal_kind, no.reason) == ("four_eyes", "我自己批准")
    assert no.refusal.startswith("four-eyes: 'reviewer-a' proposed the adoption of fictional-final-2023")
    assert (yes.proposed_by, yes.proposed_at, yes.effective_from) == ("reviewer-a", first.at, "2023-07-01")


def test_after_a_restart_the_file_trail_shows_the_same(tmp_path):
    desk = desk_for(tmp_path, Handler(POLICY, lambda: NOW))
    rpc(desk, ("AdoptVersion", as_("reviewer-a"), request()))
    restarted = desk_for(tmp_path, Handler(POLICY, lambda: NOW))
    [reply] = rpc(restarted, ("ListVersions", as_("reviewer-b"), LIST))
    assert by_id(reply)[FINAL].proposal.proposed_by == "reviewer-a"
    assert [e.event for e in reply.events] == ["proposed"]


def test_a_proposal_of_files_that_changed_since_is_shown_as_lapsing(tmp_path):
    """A proposal recorded for other files (the version's files changed since,
    e.g. by a deployment) waits no more: the next step proposes anew."""
    trail = tmp_path / "adoptions.jsonl"
    trail.write_text(
        json.dumps(
            {
                "event": "proposed",
                "version_id": FINAL,
                "policy_version": f"{FINAL}+00000000",
                "subject": "reviewer-a",
                "at": "2025-11-01T08:00:00Z",
                "reason": "旧文件",
            }
        )
        + "\n"
    )
    desk = desk_for(tmp_path, Handler(POLICY, lambda: NOW))
    [reply] = rpc(desk, ("ListVersions", as_("reviewer-b"), LIST))
    proposal = by_id(reply)[FINAL].proposal
    assert (proposal.policy_version, proposal.files_unchanged) == (f"{FINAL}+00000000", False)
    [step] = rpc(desk, ("AdoptVersion", as_("reviewer-b"), request()))
    assert step.status == "proposed"  # not an approval of other files


def test_only_the_last_events_of_a_long_trail_and_how_many_came_before(tmp_path):
    desk = desk_for(tmp_path, Handler(POLICY, lambda: NOW))
    stale = policy_service_pb2.AdoptVersionRequest(version_id=FINAL, policy_version=f"{FINAL}+00000000", reason="x")
    rpc(desk, *[("AdoptVersion", as_(f"reviewer-{n}"), stale) for n in range(5)])
    overview = desk.overview(limit=2)
    assert [e["subject"] for e in overview.events] == ["reviewer-3", "reviewer-4"] and overview.earlier == 3
    full = desk.overview()
    assert len(full.events) == 5 and full.earlier == 0


class SharedTrail:
    """A shared trail in memory (as adapters/adoption_topic.py): every
    reader has its own position; ``append`` is seen by every reader,
    its writer included, at its next ``catch_up``."""

    def __init__(self, events: list, down: list):
        self.events = events
        self.down = down
        self.position = 0
        self.where = "topic test.adoptions"

    def read(self):
        return self.catch_up()

    def catch_up(self):
        if self.down:
            raise OSError(5, "test.adoptions: cannot be read: broker gone")
        new = self.events[self.position :]
        self.position = len(self.events)
        return [dict(e) for e in new]

    def append(self, event):
        self.events.append(dict(event))


def shared_desk(events, down):
    desk = AdoptionDesk(
        load_versions(DEFAULT_POLICY_DIR),
        SharedTrail(events, down),
        lambda: NOW,
        lambda r: None,
        POLICY,
        open_work=Found(),
    )
    desk.refresh()
    return desk


def test_another_instance_sees_the_proposal_and_each_event_once(tmp_path):
    events, down = [], []
    one, two = shared_desk(events, down), shared_desk(events, down)
    [proposed] = rpc(one, ("AdoptVersion", as_("reviewer-a"), request()))
    [elsewhere] = rpc(two, ("ListVersions", as_("reviewer-b"), LIST))
    assert by_id(elsewhere)[FINAL].proposal.proposed_by == "reviewer-a"
    assert elsewhere.trail == "topic test.adoptions"
    [adopted] = rpc(two, ("AdoptVersion", as_("reviewer-b"), request()))
    assert (proposed.status, adopted.status) == ("proposed", "adopted")
    for desk in (one, two):  # each instance: the shared order, each event once (its own read back, not doubled)
        [reply] = rpc(desk, ("ListVersions", as_("reviewer-a"), LIST))
        assert [(e.event, e.subject) for e in reply.events] == [("proposed", "reviewer-a"), ("adopted", "reviewer-b")]
        assert by_id(reply)[FINAL].status == "adopted"
    down.append(True)
    [unreadable] = rpc(one, ("ListVersions", as_("reviewer-a"), LIST))
    assert unreadable.code() == grpc.StatusCode.UNAVAILABLE
    assert "the adoption trail cannot be read" in unreadable.details() and "broker gone" in unreadable.details()


def test_without_a_register_it_is_failed_precondition():
    [reply] = rpc(None, ("ListVersions", as_("reviewer-a"), LIST))
    assert reply.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no policy versions register" in reply.details()


def _denied(method: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "subsidy_auth_denied_total",
            {"grpc_service": "subsidy.v1.PolicyService", "grpc_method": method, "reason": reason},
        )
        or 0.0
    )


def test_reviewer_finance_and_operator_read_it_and_the_others_are_refused_and_counted(tmp_path):
    """With tokens verified, as GetShadowDifference: the access policy decides,
    and its refusals are counted and logged by the interceptor."""
    from subsidy_dev.identities import FINANCE, OPERATOR, PORTAL, REVIEWER_1, DevIdentityProvider, enterprise

    idp = DevIdentityProvider(tmp_path / "idp")
    security = GrpcSecurity.from_env("eligibility", idp.service_env("eligibility"))
    desk = AdoptionDesk(
        load_versions(), AdoptionLog(tmp_path / "trail.jsonl"), lambda: NOW, lambda r: None, POLICY, open_work=Found()
    )
    people = [REVIEWER_1, FINANCE, OPERATOR, PORTAL, enterprise("91310117313Q6C3D6G")]
    before = {m: _denied(m, "wrong_role") for m in ("ListVersions", "GetShadowDifference")}
    anonymous_before = _denied("ListVersions", "missing_credentials")
    answers = rpc(
        desk,
        *[("ListVersions", idp.metadata(who), LIST) for who in people],
        *[
            ("GetShadowDifference", idp.metadata(who), policy_service_pb2.GetShadowDifferenceRequest())
            for who in people
        ],
        ("ListVersions", (), LIST),
        security=security,
    )
    listed, shadow, anonymous = answers[:5], answers[5:10], answers[10]
    for who, reply in zip(people, listed, strict=True):
        if who.role in ("REVIEWER", "FINANCE", "OPERATOR"):
            assert isinstance(reply, policy_service_pb2.ListVersionsResponse), (who.role, reply)
            assert by_id(reply)[FINAL].policy_version == FINAL_VERSION
        else:
            assert reply.code() == grpc.StatusCode.PERMISSION_DENIED, who.role
    # The same roles as GetShadowDifference (FAILED_PRECONDITION there: no shadow on this server).
    for reply, same in zip(listed, shadow, strict=True):
        allowed = not isinstance(reply, grpc.aio.AioRpcError)
        assert allowed == (same.code() == grpc.StatusCode.FAILED_PRECONDITION)
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _denied("ListVersions", "wrong_role") - before["ListVersions"] == 2
    assert _denied("GetShadowDifference", "wrong_role") - before["GetShadowDifference"] == 2
    assert _denied("ListVersions", "missing_credentials") - anonymous_before == 1
