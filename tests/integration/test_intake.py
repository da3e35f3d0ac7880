"""The intake service against a real Kafka broker (and PostgreSQL for the
store): gRPC in, Kafka out, the status projection back in."""

from __future__ import annotations

import socket

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from kafka import KafkaProducer

from subsidy.contracts import cloudevents, topics
from subsidy.platform.grpc import status as rich_status
from subsidy.services.intake import metrics
from subsidy.v1 import application_pb2, decision_pb2, events_pb2, intake_pb2

from .test_intake_support import (
    FIRM,
    PROVIDER,
    RunningIntake,
    events_with_id,
    new_id,
    rent_application,
    settings,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def intake(kafka_bootstrap, tmp_path_factory):
    """One running intake (SQLite) shared by the tests of this module."""
    db = f"sqlite:///{tmp_path_factory.mktemp('intake') / 'intake.db'}"
    with RunningIntake(settings(kafka_bootstrap, db)) as svc:
        wait_for(lambda: svc.app.relay.running, timeout=60)
        yield svc


def submit(svc, application, metadata=()):
    return svc.stub.SubmitApplication(
        intake_pb2.SubmitApplicationRequest(application=application), metadata=metadata, timeout=10
    )


def count_rows(svc, application_id):
    with svc.app.db.transaction() as tx:
        apps = tx.one("SELECT COUNT(*) FROM intake_applications WHERE application_id = ?", (application_id,))[0]
        outbox = tx.one(
            "SELECT COUNT(*) FROM intake_outbox WHERE headers LIKE ?", (f'%["ce_id", "{application_id}"]%',)
        )[0]
    return apps, outbox


def test_health_reports_serving_for_the_server_and_the_service(intake):
    stub = health_pb2_grpc.HealthStub(intake.channel)
    for service in ("", "subsidy.v1.IntakeService"):
        answer = wait_for(
            lambda: (
                stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status  # noqa: B023 - called at once
                == health_pb2.HealthCheckResponse.SERVING
            ),
            timeout=10,
        )
        assert answer


def test_reflection_lists_the_intake_service(intake):
    stub = reflection_pb2_grpc.ServerReflectionStub(intake.channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"subsidy.v1.IntakeService", "grpc.health.v1.Health"} <= names


def test_a_submitted_application_is_on_kafka_with_its_key_headers_and_trace_id(intake, kafka_bootstrap):
    app_id = new_id()
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = submit(
        intake,
        rent_application(app_id, name="申请人自报"),
        metadata=(("traceparent", f"00-{trace}-00f067aa0ba902b7-01"),),
    )
    assert not response.duplicate
    assert response.receipt.application_id == app_id and response.receipt.trace_id == trace

    [record] = events_with_id(kafka_bootstrap, topics.APPLICATIONS.name, app_id)
    assert record.key == FIRM.encode()
    headers = cloudevents.as_dict(record.headers)
    assert headers["ce_type"] == cloudevents.TYPE_APPLICATION_SUBMITTED
    assert headers["ce_source"] == "/songjiang/subsidy/intake"
    assert headers["content-type"] == "application/protobuf"
    assert cloudevents.trace_id_of(record.headers) == trace
    published = application_pb2.Application.FromString(record.value)
    assert published.firm.name == "上海泗泾智造示范工厂有限公司"  # the registry's, not the applicant's
    assert list(published.firm.kinds) == ["INDUSTRIAL", "SME"] and published.firm.registered_in_district

    status = intake.stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=app_id), timeout=5).application
    assert status.state == intake_pb2.APPLICATION_STATE_RECEIVED
    assert status.application == published
    assert status.receipt == response.receipt
    assert not status.HasField("decision")


def test_invalid_input_is_invalid_argument_with_a_field_violation_and_nothing_is_stored_or_published(
    intake, kafka_bootstrap
):
    app_id = new_id()
    bad = rent_application(app_id)
    bad.rent.lease_end = "2025-02-30"
    with pytest.raises(grpc.RpcError) as caught:
        submit(intake, bad)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "application.rent.lease_end" in err.details() and "not a real date" in err.details()
    status, violations = rich_status.field_violations(err.trailing_metadata())
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert violations == [("application.rent.lease_end", "is not a real date: 2025-02-30")]
    assert count_rows(intake, app_id) == (0, 0)
    assert events_with_id(kafka_bootstrap, topics.APPLICATIONS.name, app_id, timeout=2) == []


def test_the_same_payload_again_answers_the_original_receipt_without_a_second_kafka_message(intake, kafka_bootstrap):
    app_id = new_id()
    first = submit(intake, rent_application(app_id))
    again = submit(intake, rent_application(app_id))
    assert again.duplicate and again.receipt == first.receipt
    assert count_rows(intake, app_id) == (1, 1)
    records = events_with_id(kafka_bootstrap, topics.APPLICATIONS.name, app_id, expect=1, settle=1.5)
    assert len(records) == 1


def test_the_same_id_with_another_payload_is_already_exists(intake):
    app_id = new_id()
    submit(intake, rent_application(app_id))
    other = rent_application(app_id)
    other.rent.rent_paid_fen = 1
    with pytest.raises(grpc.RpcError) as caught:
        submit(intake, other)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert count_rows(intake, app_id) == (1, 1)


def test_an_unknown_firm_is_failed_precondition_and_nothing_is_stored(intake):
    app_id = new_id()
    with pytest.raises(grpc.RpcError) as caught:
        submit(intake, rent_application(app_id, credit_code="91310117000000019J"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not in the district's registry" in caught.value.details()
    assert count_rows(intake, app_id) == (0, 0)


def test_a_cloud_claim_gets_its_directory_listing_from_the_service_years_directory(intake):
    listed, unlisted = new_id(), new_id()
    for app_id, provider in ((listed, PROVIDER), (unlisted, "91310117DLWJ0QAU76")):
        application = application_pb2.Application(
            application_id=app_id,
            submitted_on="2024-04-22",
            firm=application_pb2.Firm(credit_code=FIRM),
            cloud_adoption=application_pb2.CloudAdoptionClaim(
                provider_credit_code=provider,
                provider_listed_in_directory=(provider != PROVIDER),
                service_year=2023,
                spend_fen=2400000,
            ),
        )
        submit(intake, application)

    def get(i):
        return intake.stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=i), timeout=5)

    assert get(listed).application.application.cloud_adoption.provider_listed_in_directory is True
    assert get(unlisted).application.application.cloud_adoption.provider_listed_in_directory is False


def test_a_firms_applications_are_listed_newest_first_with_page_tokens(intake):
    firm = "91310117MA1K8Q3P5K"  # a firm only this test submits for
    ids = [new_id("LIST") for _ in range(3)]
    for app_id in ids:
        submit(intake, rent_application(app_id, credit_code=firm))
    page = intake.stub.ListApplications(intake_pb2.ListApplicationsRequest(credit_code=firm, page_size=2), timeout=5)
    rest = intake.stub.ListApplications(
        intake_pb2.ListApplicationsRequest(credit_code=firm, page_size=2, page_token=page.next_page_token), timeout=5
    )
    listed = [s.application.application_id for s in [*page.applications, *rest.applications]]
    assert listed == ids[::-1] and rest.next_page_token == ""


def test_the_directory_is_served_by_year(intake):
    answer = intake.stub.ListDirectory(intake_pb2.ListDirectoryRequest(year=2023), timeout=5)
    assert answer.year == 2023
    codes = {e.credit_code: e for e in answer.entries}
    assert codes[PROVIDER].cloud_services and codes[PROVIDER].category == "PLATFORM"
    assert "91310117DLWJ0QAU76" not in codes


def test_get_of_an_unknown_id_is_not_found(intake):
    with pytest.raises(grpc.RpcError) as caught:
        intake.stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=new_id()), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_projection_applies_a_decision_ignores_a_replay_and_dead_letters_garbage(intake, kafka_bootstrap):
    app_id = new_id()
    submit(intake, rent_application(app_id))
    decision = decision_pb2.Decision(
        decision_id=f"{app_id}@test-1",
        application_id=app_id,
        credit_code=FIRM,
        clause="1.rent",
        outcome="ELIGIBLE",
        max_award_fen=200000000,
        policy_version="test-1",
        decision_year=2025,
        submitted_on="2025-02-20",
    )
    headers = cloudevents.headers(decision.decision_id, cloudevents.TYPE_DECISION_MADE, "/test", "ab" * 16)
    garbage_key = new_id("DLQ").encode()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    dead_before = metrics.DEAD_LETTERS.labels(topics.DECISIONS.name, "intake-projection")._value.get()
    try:
        producer.send(
            topics.DECISIONS.name, key=FIRM.encode(), value=decision.SerializeToString(), headers=headers
        ).get(30)

        def decided():
            s = intake.stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=app_id), timeout=5)
            return s.application if s.application.state == intake_pb2.APPLICATION_STATE_DECIDED else None

        status = wait_for(decided, timeout=30, interval=0.2)
        assert status.decision == decision
        with intake.app.db.transaction() as tx:
            before = tx.one("SELECT updated_at FROM intake_applications WHERE application_id = ?", (app_id,))

        # A replay, then an undecodable message, then a marker to know both were consumed.
        producer.send(
            topics.DECISIONS.name, key=FIRM.encode(), value=decision.SerializeToString(), headers=headers
        ).get(30)
        producer.send(topics.DECISIONS.name, key=garbage_key, value=b"\xff\xffnot a decision").get(30)
        wait_for(
            lambda: metrics.DEAD_LETTERS.labels(topics.DECISIONS.name, "intake-projection")._value.get() > dead_before,
            timeout=30,
            interval=0.2,
        )
    finally:
        producer.close()
    with intake.app.db.transaction() as tx:
        after = tx.one("SELECT updated_at FROM intake_applications WHERE application_id = ?", (app_id,))
    assert after == before  # the replay changed nothing

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topics.DECISIONS_DLQ.name, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        letters = []
        wait_for(
            lambda: (
                letters.extend(r for b in consumer.poll(timeout_ms=200).values() for r in b)
                or any(r.key == garbage_key for r in letters)
            ),
            timeout=20,
        )
    finally:
        consumer.close()
    [record] = [r for r in letters if r.key == garbage_key]
    letter = events_pb2.DeadLetter.FromString(record.value)
    assert letter.source_topic == topics.DECISIONS.name and letter.value == b"\xff\xffnot a decision"
    assert letter.consumer == "intake-projection" and letter.error


def test_when_the_registry_platform_is_down_submit_is_unavailable_and_nothing_is_stored(kafka_bootstrap, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'intake.db'}"
    config = settings(
        kafka_bootstrap, db, registry_url=f"http://127.0.0.1:{port}", registry_timeout_s=0.3, registry_attempts=2
    )
    with RunningIntake(config) as svc:
        app_id = new_id()
        with pytest.raises(grpc.RpcError) as caught:
            submit(svc, rent_application(app_id))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "government data platform is unavailable" in caught.value.details()
        assert count_rows(svc, app_id) == (0, 0)


def test_payout_events_show_the_grant_and_its_tranches_in_get_application_once_each(intake, kafka_bootstrap):
    from subsidy.v1 import payout_pb2

    app_id = new_id()
    submit(intake, rent_application(app_id))
    tranche_id = f"{app_id}/tranche-0"
    events = [
        payout_pb2.PayoutEvent(
            event_id=f"grant:{app_id}",
            grant_recorded=payout_pb2.GrantRecorded(
                application_id=app_id,
                decision_id=f"{app_id}@t",
                credit_code=FIRM,
                clause="1.rent",
                max_award_fen=200000000,
                granted_fen=150000000,
                decision_year=2025,
                tranche_count=1,
            ),
        ),
        payout_pb2.PayoutEvent(
            event_id=f"scheduled:{tranche_id}",
            tranche_scheduled=payout_pb2.TrancheScheduled(
                tranche_id=tranche_id,
                application_id=app_id,
                credit_code=FIRM,
                clause="1.rent",
                number=0,
                amount_fen=150000000,
                due_on="2025-02-20",
                budget_year=2025,
            ),
        ),
        payout_pb2.PayoutEvent(
            event_id=f"paid:{tranche_id}",
            tranche_paid=payout_pb2.TranchePaid(
                tranche_id=tranche_id,
                credit_code=FIRM,
                amount_fen=150000000,
                paid_on="2025-03-01",
                payment_id="PAY-1",
            ),
        ),
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for event in events + events[:1]:  # the grant event replayed at the end
            headers = cloudevents.headers(event.event_id, "test.payout", "/test", "cd" * 16)
            producer.send(topics.PAYOUTS.name, key=FIRM.encode(), value=event.SerializeToString(), headers=headers).get(
                30
            )
    finally:
        producer.close()

    def paid():
        s = intake.stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=app_id), timeout=5).application
        return s if s.grant.tranches and s.grant.tranches[0].status == payout_pb2.TRANCHE_STATUS_PAID else None

    status = wait_for(paid, timeout=30, interval=0.2)
    assert status.state == intake_pb2.APPLICATION_STATE_RECEIVED, "RECORDED waits for the decision itself"
    decision = decision_pb2.Decision(
        decision_id=f"{app_id}@t",
        application_id=app_id,
        credit_code=FIRM,
        clause="1.rent",
        outcome="ELIGIBLE",
        max_award_fen=200000000,
        policy_version="t",
        decision_year=2025,
        submitted_on="2025-02-20",
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(topics.DECISIONS.name, key=FIRM.encode(), value=decision.SerializeToString()).get(30)
    finally:
        producer.close()
    status = wait_for(
        lambda: (lambda s: s if s.state == intake_pb2.APPLICATION_STATE_RECORDED else None)(
            intake.stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=app_id), timeout=5).application
        ),
        timeout=30,
        interval=0.2,
    )
    assert status.decision == decision
    assert status.grant.granted_fen == 150000000 and len(status.grant.tranches) == 1
    tranche = status.grant.tranches[0]
    assert (tranche.tranche_id, tranche.amount_fen, tranche.budget_year, tranche.payment_id) == (
        tranche_id,
        150000000,
        2025,
        "PAY-1",
    )
    wait_for(lambda: metrics.PAYOUT_EVENTS_APPLIED.labels("replayed")._value.get() >= 1, timeout=20, interval=0.2)
    again = intake.stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=app_id), timeout=5).application
    assert again.grant == status.grant, "the replayed grant event changed nothing"


def test_review_and_the_notice_gate_through_the_broker_under_review_then_reviewed_then_reserved_then_payable(
    intake, kafka_bootstrap
):
    """The two projections on the real broker: a decision that requires review
    shows the application UNDER_REVIEW; the reviewed decision replaces it and a
    late replay of the computed one does not; the RESERVED grant, then
    GrantPayable with its tranche, make it RESERVED, then PAYABLE."""
    from subsidy.v1 import payout_pb2

    app_id = new_id()
    submit(intake, rent_application(app_id))
    computed = decision_pb2.Decision(
        decision_id=f"{app_id}@t",
        application_id=app_id,
        credit_code=FIRM,
        clause="1.rent",
        outcome="ELIGIBLE",
        max_award_fen=200000000,
        policy_version="t",
        decision_year=2025,
        submitted_on="2025-02-20",
        review_required=True,
        review_reasons=["ABOVE_FOUR_EYES_THRESHOLD"],
    )
    reviewed = decision_pb2.Decision()
    reviewed.CopyFrom(computed)
    reviewed.decision_id = f"{app_id}@t/review:R-1"
    reviewed.review_required = False
    del reviewed.review_reasons[:]
    reviewed.max_award_fen = 150000000
    reviewed.review.CopyFrom(
        decision_pb2.ReviewRecord(
            supersedes_decision_id=computed.decision_id,
            item_id="R-1",
            reviewers=["a", "b"],
            basis="核定",
            result="APPROVED",
            decided_at="2025-03-01T00:00:00Z",
        )
    )

    def produce(topic, value):
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        try:
            producer.send(topic, key=FIRM.encode(), value=value.SerializeToString()).get(30)
        finally:
            producer.close()

    def status_in(state):
        return wait_for(
            lambda: (lambda s: s if s.state == state else None)(
                intake.stub.GetApplication(
                    intake_pb2.GetApplicationRequest(application_id=app_id), timeout=5
                ).application
            ),
            timeout=30,
            interval=0.2,
        )

    produce(topics.DECISIONS.name, computed)
    assert status_in(intake_pb2.APPLICATION_STATE_UNDER_REVIEW).decision == computed
    produce(topics.DECISIONS.name, reviewed)
    produce(topics.DECISIONS.name, computed)  # a late replay of the computed decision
    decided = status_in(intake_pb2.APPLICATION_STATE_DECIDED)
    wait_for(lambda: metrics.DECISIONS_APPLIED.labels("superseded")._value.get() >= 1, timeout=20, interval=0.2)
    shown = intake.stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=app_id), timeout=5).application
    assert decided.decision == shown.decision == reviewed, "the reviewed decision, never the computed one"

    tranche_id = f"{app_id}/tranche-0"
    produce(
        topics.PAYOUTS.name,
        payout_pb2.PayoutEvent(
            event_id=f"grant:{app_id}",
            grant_recorded=payout_pb2.GrantRecorded(
                application_id=app_id,
                decision_id=reviewed.decision_id,
                credit_code=FIRM,
                clause="1.rent",
                granted_fen=150000000,
                decision_year=2025,
                state=payout_pb2.GRANT_STATE_RESERVED,
            ),
        ),
    )
    reserved = status_in(intake_pb2.APPLICATION_STATE_RESERVED)
    assert (reserved.grant.state, list(reserved.grant.tranches)) == (payout_pb2.GRANT_STATE_RESERVED, [])
    produce(
        topics.PAYOUTS.name,
        payout_pb2.PayoutEvent(
            event_id=f"payable:{reviewed.decision_id}",
            grant_payable=payout_pb2.GrantPayable(
                application_id=app_id,
                decision_id=reviewed.decision_id,
                credit_code=FIRM,
                clause="1.rent",
                notice_id="N-1",
                payable_on="2025-03-14",
                granted_fen=150000000,
                tranche_count=1,
            ),
        ),
    )
    produce(
        topics.PAYOUTS.name,
        payout_pb2.PayoutEvent(
            event_id=f"scheduled:{tranche_id}",
            tranche_scheduled=payout_pb2.TrancheScheduled(
                tranche_id=tranche_id,
                application_id=app_id,
                credit_code=FIRM,
                clause="1.rent",
                number=0,
                amount_fen=150000000,
                due_on="2025-03-14",
                budget_year=2025,
            ),
        ),
    )
    payable = wait_for(
        lambda: (lambda s: s if s.state == intake_pb2.APPLICATION_STATE_PAYABLE and s.grant.tranches else None)(
            intake.stub.GetApplication(intake_pb2.GetApplicationRequest(application_id=app_id), timeout=5).application
        ),
        timeout=30,
        interval=0.2,
    )
    assert (payable.grant.payable_on, payable.grant.notice_id, payable.grant.tranches[0].due_on) == (
        "2025-03-14",
        "N-1",
        "2025-03-14",
    )
    listed = intake.stub.ListApplications(intake_pb2.ListApplicationsRequest(credit_code=FIRM), timeout=5)
    assert any(
        a.receipt.application_id == app_id and a.state == intake_pb2.APPLICATION_STATE_PAYABLE
        for a in listed.applications
    )
