"""The OpenWork adapter over intake's ListApplications (ADR 0021), against a
gRPC IntakeService of the test's own that answers from a list of statuses,
page by page, and records every request and its metadata: both states read
to their last page as the caller, an application seen in both counted once
(as noticed), the policy version of a grant from before grants named it,
and every way of not finding the whole set refused (never a part of it)."""

from __future__ import annotations

import socket
from concurrent import futures

import grpc
import pytest
from eligibility_support import POLICY, demo_applications

from subsidy.contracts import codec
from subsidy.core import eligibility as rules
from subsidy.services.eligibility.adapters.intake import IntakeOpenWork
from subsidy.services.eligibility.model import Caller, OpenWorkUnavailable
from subsidy.v1 import intake_pb2, intake_pb2_grpc, payout_pb2

DEMO = {a.application_id: a for a in demo_applications()}
RESERVED, PAYABLE = intake_pb2.APPLICATION_STATE_RESERVED, intake_pb2.APPLICATION_STATE_PAYABLE
REVIEWER = Caller("reviewer-b", "REVIEWER", "Bearer reviewer-b-token")


def status(application_id, state, *, grant_version=True):
    app = DEMO[application_id]
    decision = rules.evaluate(app, POLICY)
    message = intake_pb2.ApplicationStatus(
        application=codec.application_to_proto(app), state=state, decision=codec.decision_to_proto(decision)
    )
    message.grant.application_id = application_id
    message.grant.decision_id = decision.decision_id
    message.grant.granted_fen = decision.max_award_fen
    message.grant.state = payout_pb2.GRANT_STATE_RESERVED if state == RESERVED else payout_pb2.GRANT_STATE_PAYABLE
    if grant_version:
        message.grant.policy_version = decision.policy_version
    return message


class Intake(intake_pb2_grpc.IntakeServiceServicer):
    """ListApplications over ``statuses``, filtered by state, paged by index;
    ``refuse``: a status code every call answers with instead."""

    def __init__(self, statuses, refuse=None, repeat_token=False):
        self.statuses = statuses
        self.refuse = refuse
        self.repeat_token = repeat_token
        self.calls = []

    def ListApplications(self, request, context):
        self.calls.append((request, dict(context.invocation_metadata())))
        if self.refuse is not None:
            context.abort(self.refuse, "refused by the test's intake")
        matching = [s for s in self.statuses if not request.state or s.state == request.state]
        start = int(request.page_token or 0)
        end = start + request.page_size
        token = request.page_token if self.repeat_token and request.page_token else str(end)
        return intake_pb2.ListApplicationsResponse(
            applications=matching[start:end], next_page_token=token if end < len(matching) else ""
        )


@pytest.fixture
def intake():
    servers = []

    def serve(servicer):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        intake_pb2_grpc.add_IntakeServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield serve
    for server in servers:
        server.stop(None)


def test_every_page_of_both_states_is_read_as_the_caller(intake):
    reserved = ["SJ-2024-0003", "SJ-2023-0003", "SJ-2023-0004"]
    payable = ["SJ-2025-0007", "SJ-2024-0006", "SJ-2023-0001"]
    servicer = Intake([status(i, RESERVED) for i in reserved] + [status(i, PAYABLE) for i in payable])
    source = IntakeOpenWork(intake(servicer), page_size=2)
    try:
        found = source.find(REVIEWER)
    finally:
        source.close()
    # By application id, whatever order intake listed them in.
    assert [a.application_id for a in found.open_applications] == sorted(reserved)
    assert found.open_applications[0] == DEMO["SJ-2023-0003"]
    assert [(n.application.application_id, n.granted_fen) for n in found.noticed_awards] == [
        (i, rules.evaluate(DEMO[i], POLICY).max_award_fen) for i in sorted(payable)
    ]
    assert {n.policy_version for n in found.noticed_awards} == {POLICY.version}
    # RESERVED to its last page first, then PAYABLE; across firms, the largest page; the reviewer's own token.
    requests = [(r.state, r.page_token, r.credit_code, r.page_size) for r, _ in servicer.calls]
    assert requests == [
        (RESERVED, "", "", 2),
        (RESERVED, "2", "", 2),
        (PAYABLE, "", "", 2),
        (PAYABLE, "2", "", 2),
    ]
    assert {metadata.get("authorization") for _, metadata in servicer.calls} == {"Bearer reviewer-b-token"}
    assert found.source.startswith("intake at 127.0.0.1:")


def test_without_a_token_nothing_is_forwarded(intake):
    servicer = Intake([status("SJ-2023-0003", RESERVED)])
    found = IntakeOpenWork(intake(servicer)).find(Caller("reviewer-a", "REVIEWER"))
    assert [a.application_id for a in found.open_applications] == ["SJ-2023-0003"] and not found.noticed_awards
    assert all("authorization" not in metadata for _, metadata in servicer.calls)


def test_a_grant_that_passed_its_notice_during_the_read_is_noticed_only(intake):
    # Listed RESERVED, then PAYABLE by the time the second listing ran: the ledger keeps its amount.
    servicer = Intake(
        [status("SJ-2023-0003", RESERVED), status("SJ-2025-0007", RESERVED), status("SJ-2025-0007", PAYABLE)]
    )
    found = IntakeOpenWork(intake(servicer)).find(REVIEWER)
    assert [a.application_id for a in found.open_applications] == ["SJ-2023-0003"]
    assert [n.application.application_id for n in found.noticed_awards] == ["SJ-2025-0007"]


def test_a_grant_from_before_grants_named_their_version_takes_its_decisions(intake):
    servicer = Intake([status("SJ-2025-0007", PAYABLE, grant_version=False)])
    [award] = IntakeOpenWork(intake(servicer)).find(REVIEWER).noticed_awards
    assert award.policy_version == rules.evaluate(DEMO["SJ-2025-0007"], POLICY).policy_version == POLICY.version


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, True),
        (grpc.StatusCode.PERMISSION_DENIED, False),
        (grpc.StatusCode.UNAUTHENTICATED, False),
    ],
)
def test_intake_refusing_is_unavailable_work_saying_why(intake, code, retryable):
    address = intake(Intake([status("SJ-2023-0003", RESERVED)], refuse=code))
    with pytest.raises(OpenWorkUnavailable) as refused:
        IntakeOpenWork(address).find(REVIEWER)
    assert refused.value.retryable is retryable
    assert f"intake at {address} (ListApplications APPLICATION_STATE_RESERVED: {code.name}: refused by" in str(
        refused.value
    )
    assert "reviewer-b-token" not in str(refused.value)


def test_intake_unreachable_is_retryable():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(OpenWorkUnavailable) as refused:
        IntakeOpenWork(address, timeout_seconds=2).find(REVIEWER)
    assert refused.value.retryable
    assert refused.value.args[0].startswith(
        f"the applications not yet past their public notice cannot be read from intake at {address}"
    )


def test_a_record_intake_holds_that_does_not_decode_refuses_the_whole_set(intake):
    broken = status("SJ-2023-0004", RESERVED)
    broken.application.firm.credit_code = "91310117XXXXXXXXX0"
    servicer = Intake([status("SJ-2023-0003", RESERVED), broken])
    with pytest.raises(OpenWorkUnavailable) as refused:
        IntakeOpenWork(intake(servicer)).find(REVIEWER)
    assert not refused.value.retryable
    assert "intake's application 'SJ-2023-0004' cannot be read (firm.credit_code: " in str(refused.value)


def test_a_negative_grant_refuses_the_whole_set(intake):
    bad = status("SJ-2025-0007", PAYABLE)
    bad.grant.granted_fen = -1
    with pytest.raises(OpenWorkUnavailable, match=r"'SJ-2025-0007': grant.granted_fen: must be >= 0, got -1"):
        IntakeOpenWork(intake(Intake([bad]))).find(REVIEWER)


def test_a_listing_that_does_not_advance_is_refused(intake):
    servicer = Intake(
        [status(i, RESERVED) for i in ("SJ-2023-0003", "SJ-2023-0004", "SJ-2024-0003")], repeat_token=True
    )
    with pytest.raises(OpenWorkUnavailable, match="answered the same page token twice"):
        IntakeOpenWork(intake(servicer), page_size=1).find(REVIEWER)


def test_adopting_while_intake_is_down_adopts_and_records_nothing(tmp_path):
    """The real adapter behind the real servicer: intake unreachable, both
    reviewers' steps are UNAVAILABLE, and the audit trail stays empty."""
    import asyncio
    import datetime as dt

    from subsidy.core.versions import load_versions
    from subsidy.services.eligibility.adapters.adoption_log import AdoptionLog
    from subsidy.services.eligibility.adapters.grpc import GrpcServer
    from subsidy.services.eligibility.adoption import AdoptionDesk
    from subsidy.v1 import policy_service_pb2, policy_service_pb2_grpc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    routed = []
    trail = tmp_path / "adoptions.jsonl"
    final = load_versions().get("fictional-final-2023").policy.version
    desk = AdoptionDesk(
        load_versions(),
        AdoptionLog(trail),
        lambda: dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC),
        routed.append,
        POLICY,
        open_work=IntakeOpenWork(address, timeout_seconds=2),
    )
    request = policy_service_pb2.AdoptVersionRequest(version_id="fictional-final-2023", policy_version=final)

    async def main():
        server = GrpcServer("127.0.0.1:0", POLICY, ready=lambda: True, grace_seconds=1.0, adoption=desk)
        await server.start()
        answers = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
                for subject in ("reviewer-a", "reviewer-b"):
                    metadata = (("x-subsidy-subject", subject), ("x-subsidy-role", "REVIEWER"))
                    try:
                        answers.append(await stub.AdoptVersion(request, metadata=metadata, timeout=10))
                    except grpc.aio.AioRpcError as exc:
                        answers.append(exc)
        finally:
            await server.stop()
        return answers

    for answer in asyncio.run(main()):
        assert answer.code() == grpc.StatusCode.UNAVAILABLE
        assert f"cannot be read from intake at {address}" in answer.details()
    assert not desk.state.proposals and not desk.state.adopted and not routed
    assert not trail.exists() or trail.read_text() == ""
