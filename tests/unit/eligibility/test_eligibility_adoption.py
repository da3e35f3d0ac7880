"""PolicyService.AdoptVersion (issue 14, item 4) over a real grpc.aio server:
four eyes (a REVIEWER proposes, another adopts; the same subject twice is
PERMISSION_DENIED), audited (every step and refusal in the trail), refusals
that adopt nothing, re-decisions with new derived ids, the adoption report,
and the adoption holding again after a restart — unless its files changed.

What is open and what is past its notice is found by the desk through its
OpenWork port (ADR 0021): here an in-memory fake of the port (``Found``), which
records who asked; the caller may no longer pass them, and when they cannot
be found nothing is proposed, adopted or recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil

import grpc
import pytest
from eligibility_support import POLICY, application_record, demo_applications, record

from subsidy.contracts import codec
from subsidy.core import eligibility as rules
from subsidy.core.policy import DEFAULT_POLICY_DIR, PolicyError, load_policy
from subsidy.core.versions import load_versions
from subsidy.services.eligibility.adapters.adoption_log import AdoptionLog
from subsidy.services.eligibility.adapters.grpc import GrpcServer
from subsidy.services.eligibility.adoption import AdoptionDesk
from subsidy.services.eligibility.handlers import Handler
from subsidy.services.eligibility.model import NoticedAward, OpenWorkFound, OpenWorkUnavailable
from subsidy.v1 import policy_service_pb2, policy_service_pb2_grpc

DEMO = {a.application_id: a for a in demo_applications()}
NOW = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC)
FINAL = "fictional-final-2023"
FINAL_VERSION = load_versions().get(FINAL).policy.version


class Found:
    """The OpenWork port in memory: what the source shows now (``open_ids``
    RESERVED, ``noticed_ids`` PAYABLE, their amounts the draft's), or
    ``OpenWorkUnavailable`` once ``down`` is set; ``asked`` records each
    caller it answered or refused."""

    def __init__(self, open_ids=(), noticed_ids=()):
        self.open_ids, self.noticed_ids = list(open_ids), list(noticed_ids)
        self.down: OpenWorkUnavailable | None = None
        self.asked = []

    def find(self, caller):
        self.asked.append(caller)
        if self.down is not None:
            raise self.down
        noticed = []
        for application_id in self.noticed_ids:
            decision = rules.evaluate(DEMO[application_id], POLICY)
            noticed.append(NoticedAward(DEMO[application_id], decision.max_award_fen, decision.policy_version))
        return OpenWorkFound(tuple(DEMO[i] for i in self.open_ids), tuple(noticed), "intake (fake)")


def desk_for(tmp_path, handler, policy_dir=DEFAULT_POLICY_DIR, found=None):
    def adopted(router):
        handler.router = router.policy_for

    return AdoptionDesk(
        load_versions(policy_dir),
        AdoptionLog(tmp_path / "adoptions.jsonl"),
        lambda: NOW,
        adopted,
        open_work=found or Found(),
    )


def call(desk, *requests, publish=None):
    """Each (subject, role, request) in turn, or (subject, role, request,
    extra metadata); returns responses or the RpcErrors."""

    async def main():
        server = GrpcServer(
            "127.0.0.1:0", POLICY, ready=lambda: True, grace_seconds=1.0, adoption=desk, publish=publish
        )
        await server.start()
        results = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
                for subject, role, request, *extra in requests:
                    metadata = (("x-subsidy-subject", subject), ("x-subsidy-role", role), *(extra or [()])[0])
                    rpc = (
                        stub.Evaluate if isinstance(request, policy_service_pb2.EvaluateRequest) else stub.AdoptVersion
                    )
                    try:
                        results.append(await rpc(request, metadata=metadata, timeout=10))
                    except grpc.aio.AioRpcError as exc:
                        results.append(exc)
        finally:
            await server.stop()
        return results

    return asyncio.run(main())


def request(*, version=FINAL_VERSION):
    """An AdoptVersionRequest as a caller makes it now: the version and the
    files reviewed, no applications."""
    return policy_service_pb2.AdoptVersionRequest(
        version_id=FINAL, policy_version=version, reason="区科委 2023 年第 5 次会议通过（虚构）"
    )


def events(tmp_path):
    return [json.loads(line) for line in (tmp_path / "adoptions.jsonl").read_text().splitlines()]


def test_two_reviewers_adopt_and_one_alone_is_refused(tmp_path):
    handler = Handler(POLICY, lambda: NOW)
    found = Found(open_ids=["SJ-2023-0003"], noticed_ids=["SJ-2025-0007", "SJ-2024-0006"])
    desk = desk_for(tmp_path, handler, found=found)
    adopt = request()
    first, again, finance, second = call(
        desk,
        ("reviewer-a", "REVIEWER", adopt),
        ("reviewer-a", "REVIEWER", adopt),
        ("finance-1", "FINANCE", adopt),
        ("reviewer-b", "REVIEWER", adopt),
    )
    assert (first.status, first.proposed_by, first.approved_by) == ("proposed", "reviewer-a", "")
    assert again.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "four-eyes: 'reviewer-a' proposed the adoption" in again.details()
    assert finance.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (second.status, second.proposed_by, second.approved_by) == ("adopted", "reviewer-a", "reviewer-b")
    assert second.effective_from == "2023-07-01" and second.adopted_at.startswith("2025-11-03T09:00:00")
    # The open application the desk found re-decided under the final, with a new derived id.
    [redecided] = second.redecisions
    assert redecided.decision_id == f"SJ-2023-0003@{FINAL_VERSION}" and redecided.policy_version == FINAL_VERSION
    # The report: the noticed 揭榜挂帅 award keeps 300万; the final would have given 200万.
    [line] = second.report
    assert (line.application_id, line.kept_fen, line.new_max_award_fen, line.difference_fen) == (
        "SJ-2025-0007",
        300000000,
        200000000,
        -100000000,
    )
    assert "status: adopted" in second.register_entry and "effective_until: 2023-07-01" in second.register_entry
    # Audited: every step, the refusal included (the FINANCE call never reached the desk).
    trail = events(tmp_path)
    assert [(e["event"], e["subject"]) for e in trail] == [
        ("proposed", "reviewer-a"),
        ("refused", "reviewer-a"),
        ("adopted", "reviewer-b"),
    ]
    # From now on an application of the final's time is decided under it.
    after = DEMO["SJ-2024-0003"]
    decided = handler(record(*application_record(after)))
    assert decided.decision.policy_version == FINAL_VERSION
    before = DEMO["SJ-2023-0004"]
    assert handler(record(*application_record(before))).decision.policy_version == POLICY.version
    # PolicyService.Evaluate too.
    [evaluated] = call(
        desk,
        ("reviewer-a", "REVIEWER", policy_service_pb2.EvaluateRequest(application=codec.application_to_proto(after))),
    )
    assert evaluated.decision.policy_version == FINAL_VERSION


def test_a_refused_adoption_adopts_nothing(tmp_path):
    handler = Handler(POLICY, lambda: NOW)
    # SJ-2024-0008 is open at intake and claims 11.identifiers, which the final retires.
    found = Found(open_ids=["SJ-2023-0003", "SJ-2024-0008"])
    desk = desk_for(tmp_path, handler, found=found)
    first, refused = call(desk, ("reviewer-a", "REVIEWER", request()), ("reviewer-b", "REVIEWER", request()))
    found.open_ids.remove("SJ-2024-0008")  # decided meanwhile: the retirement no longer stands in the way
    [stale] = call(desk, ("reviewer-b", "REVIEWER", request(version=f"{FINAL}+00000000")))
    assert first.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "version.yaml: retire.11.identifiers: clause 11.identifiers is still claimed by 1 open application(s) " in (
        first.details()
    )
    assert "(SJ-2024-0008)" in first.details()
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION and "changed since you reviewed" in stale.details()
    assert handler.router is None and not desk.state.adopted and not desk.state.proposals
    assert [e["event"] for e in events(tmp_path)] == ["refused", "refused", "refused"]


@pytest.mark.parametrize("field", ["open_applications", "noticed_awards"])
def test_a_caller_naming_the_applications_is_refused_naming_the_field(tmp_path, field):
    """The caller no longer decides which applications are re-decided: a
    request that sets either field is INVALID_ARGUMENT naming it, at the
    proposal and at the approval, and nothing is looked up or recorded."""
    handler = Handler(POLICY, lambda: NOW)
    found = Found(open_ids=["SJ-2023-0003"])
    desk = desk_for(tmp_path, handler, found=found)
    naming = request()
    if field == "open_applications":
        naming.open_applications.append(codec.application_to_proto(DEMO["SJ-2023-0003"]))
    else:
        naming.noticed_awards.append(
            policy_service_pb2.NoticedAward(
                application=codec.application_to_proto(DEMO["SJ-2025-0007"]),
                granted_fen=300_000_000,
                policy_version=POLICY.version,
            )
        )
    refused, proposed, refused_again, adopted = call(
        desk,
        ("reviewer-a", "REVIEWER", naming),
        ("reviewer-a", "REVIEWER", request()),
        ("reviewer-b", "REVIEWER", naming),
        ("reviewer-b", "REVIEWER", request()),
    )
    for answer in (refused, refused_again):
        assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert answer.details().startswith(f"{field}: no longer accepted")
    assert (proposed.status, adopted.status) == ("proposed", "adopted")
    assert [d.application_id for d in adopted.redecisions] == ["SJ-2023-0003"]
    assert len(found.asked) == 2  # only the two accepted steps looked anything up
    assert [(e["event"], e["subject"]) for e in events(tmp_path)] == [
        ("proposed", "reviewer-a"),
        ("adopted", "reviewer-b"),
    ]


def test_the_desk_re_decides_exactly_what_it_found_as_the_calling_reviewer(tmp_path):
    """What the source shows at the approval is what is re-decided and
    reported, not what it showed at the proposal; each step asks as its own
    caller, with the call's own authorization."""
    handler = Handler(POLICY, lambda: NOW)
    found = Found(open_ids=["SJ-2023-0003"])
    desk = desk_for(tmp_path, handler, found=found)
    [first] = call(desk, ("reviewer-a", "REVIEWER", request(), (("authorization", "Bearer token-of-a"),)))
    assert first.status == "proposed"
    # Between the two steps a second application got its reservation, and an award passed its notice.
    found.open_ids.append("SJ-2023-0004")
    found.noticed_ids.append("SJ-2025-0007")
    [second] = call(desk, ("reviewer-b", "REVIEWER", request(), (("authorization", "Bearer token-of-b"),)))
    assert second.status == "adopted"
    assert sorted(d.application_id for d in second.redecisions) == ["SJ-2023-0003", "SJ-2023-0004"]
    assert all(d.policy_version == FINAL_VERSION for d in second.redecisions)
    assert [line.application_id for line in second.report] == ["SJ-2025-0007"]
    assert [(c.subject, c.role, c.authorization) for c in found.asked] == [
        ("reviewer-a", "REVIEWER", "Bearer token-of-a"),
        ("reviewer-b", "REVIEWER", "Bearer token-of-b"),
    ]
    assert "token-of" not in repr(found.asked)  # a caller never prints its token


@pytest.mark.parametrize(
    ("retryable", "code"), [(True, grpc.StatusCode.UNAVAILABLE), (False, grpc.StatusCode.FAILED_PRECONDITION)]
)
def test_when_the_open_work_cannot_be_found_nothing_is_adopted_or_recorded(tmp_path, retryable, code):
    handler = Handler(POLICY, lambda: NOW)
    found = Found(open_ids=["SJ-2023-0003"])
    desk = desk_for(tmp_path, handler, found=found)
    [proposed] = call(desk, ("reviewer-a", "REVIEWER", request()))
    assert proposed.status == "proposed"
    found.down = OpenWorkUnavailable("intake at 127.0.0.1:1 cannot be read (UNAVAILABLE: gone)", retryable=retryable)
    approval, proposal = call(
        desk,
        ("reviewer-b", "REVIEWER", request()),
        ("reviewer-c", "REVIEWER", policy_service_pb2.AdoptVersionRequest(version_id=FINAL, policy_version="x+1")),
    )
    for refused in (approval, proposal):
        assert refused.code() == code
        assert "intake at 127.0.0.1:1 cannot be read (UNAVAILABLE: gone)" in refused.details()
        assert refused.details().endswith("nothing proposed or adopted, nothing recorded")
    # Nothing adopted: the proposal still waits, no routing, the trail holds the proposal only.
    assert not desk.state.adopted and FINAL in desk.state.proposals and handler.router is None
    assert [e["event"] for e in events(tmp_path)] == ["proposed"]
    # Once the source answers again the approval goes through, re-deciding what it shows.
    found.down = None
    [adopted] = call(desk, ("reviewer-b", "REVIEWER", request()))
    assert adopted.status == "adopted" and [d.application_id for d in adopted.redecisions] == ["SJ-2023-0003"]


def test_the_adoption_holds_after_a_restart_unless_its_files_changed(tmp_path):
    policy_dir = tmp_path / "policy"
    shutil.copytree(DEFAULT_POLICY_DIR, policy_dir)
    policy = load_policy(policy_dir)
    handler = Handler(policy, lambda: NOW)
    desk = desk_for(tmp_path, handler, policy_dir)
    call(desk, ("reviewer-a", "REVIEWER", request()), ("reviewer-b", "REVIEWER", request()))
    assert handler.router is not None
    restarted = Handler(policy, lambda: NOW)
    desk_for(tmp_path, restarted, policy_dir)
    assert restarted(record(*application_record(DEMO["SJ-2024-0003"]))).decision.policy_version == FINAL_VERSION
    overlay = policy_dir / "versions" / FINAL / "clauses" / "6.yaml"
    overlay.write_text(overlay.read_text().replace("200000000", "250000000"))
    with pytest.raises(PolicyError, match=rf"^{overlay}: changed after version {FINAL} was adopted"):
        desk_for(tmp_path, Handler(policy, lambda: NOW), policy_dir)


def test_when_the_trail_cannot_be_written_nothing_is_adopted(tmp_path):
    class Full:
        def read(self):
            return []

        def append(self, event):
            raise OSError(28, "No space left on device")

    handler = Handler(POLICY, lambda: NOW)

    def adopted(router):
        handler.router = router.policy_for

    desk = AdoptionDesk(load_versions(), Full(), lambda: NOW, adopted, open_work=Found())
    [failed] = call(desk, ("reviewer-a", "REVIEWER", request()))
    assert failed.code() == grpc.StatusCode.UNAVAILABLE and "nothing adopted" in failed.details()
    assert not desk.state.proposals and handler.router is None


def test_the_adoption_publishes_the_redecisions_naming_the_decisions_they_supersede(tmp_path):
    """Issue 14: the re-decisions are published on subsidy.decisions.v1 (here: what
    the publisher is given), each superseding the draft's decision of the same
    application, and only at the approval (not at the proposal)."""
    from subsidy.core.workflow.settings import load_workflow
    from subsidy.services.eligibility.handlers import redecided

    workflow = load_workflow(DEFAULT_POLICY_DIR / "workflow.yaml")
    published = []

    async def publish(decisions):
        records = [redecided(d, now=NOW, workflow=workflow) for d in decisions]
        published.extend(records)
        return [r.decision for r in records]

    handler = Handler(POLICY, lambda: NOW)
    desk = AdoptionDesk(
        load_versions(),
        AdoptionLog(tmp_path / "adoptions.jsonl"),
        lambda: NOW,
        lambda r: None,
        POLICY,
        open_work=Found(open_ids=["SJ-2023-0003"]),
    )
    adopt = request()
    first, second = call(desk, ("reviewer-a", "REVIEWER", adopt), ("reviewer-b", "REVIEWER", adopt), publish=publish)
    assert first.status == "proposed" and second.status == "adopted"
    [record_] = published
    draft = rules.evaluate(DEMO["SJ-2023-0003"], POLICY)
    assert record_.topic == "subsidy.decisions.v1"
    assert record_.decision.decision_id == f"SJ-2023-0003@{FINAL_VERSION}"
    assert record_.decision.supersedes_decision_id == draft.decision_id
    assert dict(record_.headers)["ce_type"] == b"cn.gov.songjiang.subsidy.decision.superseded.v1"
    assert record_.key == DEMO["SJ-2023-0003"].firm.credit_code.encode()
    [answered] = second.redecisions
    assert answered.supersedes_decision_id == draft.decision_id
    assert codec.decision_from_proto(answered) == record_.decision
    del handler


def test_an_adoption_whose_redecisions_cannot_be_published_says_so(tmp_path):
    async def publish(decisions):
        raise ConnectionError("broker gone")

    desk = AdoptionDesk(
        load_versions(),
        AdoptionLog(tmp_path / "adoptions.jsonl"),
        lambda: NOW,
        lambda r: None,
        POLICY,
        open_work=Found(open_ids=["SJ-2023-0003"]),
    )
    adopt = request()
    _, second = call(desk, ("reviewer-a", "REVIEWER", adopt), ("reviewer-b", "REVIEWER", adopt), publish=publish)
    assert second.code() == grpc.StatusCode.UNAVAILABLE
    assert "adopted, but its 1 re-decision(s) could not be published" in second.details()
