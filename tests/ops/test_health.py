"""Health that means something.

- The decision (``subsidy.platform.metrics.stall_reason``): a pure function of
  timestamps, tested in milliseconds.
- intake and payout in-process against the harness's Kafka broker and a
  PostgreSQL server of this module's own: SERVING with both up; NOT_SERVING
  when a consumer loop stops polling (held through its test hook) and
  SERVING again when it moves; NOT_SERVING when PostgreSQL is stopped and
  SERVING again when it is back.
- eligibility: its readiness with a stalled consumer (lag, no progress).
"""

from __future__ import annotations

import time

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from subsidy.platform.metrics import ConsumerProgress, stall_reason
from subsidy_dev.postgres import PostgresServer

STALL = 60.0


# ----------------------------------------------------------------------------- the decision


def reason(now, **kw):
    base = dict(started=0.0, last_poll=now, last_advance=None, last_broker_contact=now, lag=0, stall_s=STALL)
    base.update(kw)
    return stall_reason(now, **base)


def test_a_consumer_that_polls_reaches_the_broker_and_has_no_lag_is_healthy_even_without_records():
    assert reason(1000.0) is None


def test_nothing_counts_during_the_first_stall_period_after_start():
    assert reason(30.0, last_poll=None, last_broker_contact=None, lag=5) is None


def test_a_consumer_that_has_not_polled_within_the_period_is_stalled():
    assert reason(1000.0, last_poll=1000.0 - STALL - 1) == "not polled within 60s"
    assert reason(1000.0, last_poll=None) == "not polled within 60s"
    assert reason(1000.0, last_poll=1000.0 - STALL) is None  # the boundary still counts


def test_a_consumer_whose_broker_does_not_answer_is_stalled():
    assert "Kafka broker" in reason(1000.0, last_broker_contact=1000.0 - STALL - 1)
    assert "Kafka broker" in reason(1000.0, last_broker_contact=None)


def test_with_lag_a_consumer_must_also_have_advanced_within_the_period():
    assert reason(1000.0, lag=3, last_advance=990.0) is None
    assert reason(1000.0, lag=3, last_advance=1000.0 - STALL - 1) == "lag of 3 records and no progress within 60s"
    assert reason(1000.0, lag=3, last_advance=None) is not None
    # Without lag, not advancing is simply having nothing to do.
    assert reason(1000.0, lag=0, last_advance=None) is None


def test_progress_moving_again_clears_the_stall():
    clock = [0.0]
    progress = ConsumerProgress("test-consumer", stall_s=10, clock=lambda: clock[0], wall=lambda: 1.7e9)
    clock[0] = 5.0
    progress.polled()
    progress.broker_answered(lag=2)
    clock[0] = 20.0
    assert progress.stall_reason() == "not polled within 10s"
    progress.polled(records=2)
    assert progress.stall_reason() == "no answer from the Kafka broker within 10s"
    progress.broker_answered(lag=2)
    assert progress.stall_reason() == "lag of 2 records and no progress within 10s"
    progress.advanced()
    assert progress.healthy


# ---------------------------------------------------------------- intake and payout for real


def wait_status(stub, want, timeout=45.0, service=""):
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=3).status
        except Exception:  # noqa: BLE001 - not up yet
            status = None
        if status == want:
            return status
        time.sleep(0.2)
    raise AssertionError(
        f"health is {health_pb2.HealthCheckResponse.ServingStatus.Name(status or 0)}, "
        f"want {health_pb2.HealthCheckResponse.ServingStatus.Name(want)} after {timeout:.0f}s"
    )


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TEST_STALL_S = 3.0


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory):
    """A PostgreSQL server of this module's own: the tests stop and start it."""
    server = PostgresServer(tmp_path_factory.mktemp("health-postgres"))
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def _running_intake(bootstrap, url):
    from integration.test_intake_support import RunningIntake, settings

    return RunningIntake(settings(bootstrap, url, stall_s=TEST_STALL_S, metrics_refresh_s=0.5)), (
        lambda svc: svc.app.projection
    )


def _running_payout(bootstrap, url):
    from integration.test_payout_support import RunningPayout, settings

    return RunningPayout(settings(bootstrap, url, stall_s=TEST_STALL_S, metrics_refresh_s=0.5)), (
        lambda svc: svc.app.decisions
    )


@pytest.fixture(params=["intake", "payout"])
def service(request, kafka_bootstrap, own_postgres):
    running, consumer_of = {"intake": _running_intake, "payout": _running_payout}[request.param](
        kafka_bootstrap, own_postgres.url
    )
    with running as svc:
        svc.health = health_pb2_grpc.HealthStub(svc.channel)
        svc.consumer = consumer_of(svc)
        svc.name = request.param
        yield svc


@pytest.mark.integration
def test_serving_with_database_and_kafka_up_not_serving_when_a_consumer_stalls_serving_when_it_moves(service):
    wait_status(service.health, SERVING)
    service.consumer.hold.hold()
    try:
        wait_status(service.health, NOT_SERVING, timeout=TEST_STALL_S + 15)
        # Held, the loop neither polls nor asks the broker for end offsets:
        # whichever of the two ages past the limit first is the reason.
        assert service.consumer.progress.stall_reason() is not None
    finally:
        service.consumer.hold.release()
    wait_status(service.health, SERVING, timeout=TEST_STALL_S + 15)


@pytest.mark.integration
def test_not_serving_while_postgresql_is_down_and_serving_again_when_it_is_back(service, own_postgres):
    wait_status(service.health, SERVING)
    own_postgres.stop()
    try:
        wait_status(service.health, NOT_SERVING, timeout=20)
        assert service.app.not_ready_reason() is not None
    finally:
        own_postgres.start()
    wait_status(service.health, SERVING, timeout=60)


# -------------------------------------------------------------------------------- eligibility


def test_eligibility_is_not_ready_when_its_consumer_has_lag_and_does_not_advance():
    from prometheus_client import CollectorRegistry

    from subsidy.core.policy import load_policy
    from subsidy.services.eligibility.bootstrap import create_app
    from subsidy.services.eligibility.config import Settings

    service = create_app(Settings(stall_seconds=10), policy=load_policy(), registry=CollectorRegistry())
    clock = [0.0]
    service.progress = ConsumerProgress("eligibility-test", stall_s=10, clock=lambda: clock[0])
    service.consumer_running = lambda: True  # type: ignore[method-assign]
    clock[0] = 100.0
    service.progress.polled()
    service.progress.broker_answered(lag=0)
    assert service.ready()
    service.progress.broker_answered(lag=7)
    assert service.not_ready_reason() == "lag of 7 records and no progress within 10s"
    service.progress.advanced()
    assert service.ready()
    service.policy = None
    assert service.not_ready_reason() == "no policy loaded"


def test_intake_keeps_accepting_while_its_consumers_stall_and_says_so_overall(kafka_bootstrap, tmp_path):
    """The readiness name follows the database only; the overall name follows Kafka too."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from integration.test_intake_support import RunningIntake, wait_for
    from integration.test_intake_support import settings as intake_settings

    from subsidy.services.intake.adapters.grpc import SERVICE_NAME

    with RunningIntake(
        intake_settings(kafka_bootstrap, f"sqlite:///{tmp_path / 'intake.db'}", stall_s=1.0, health_interval_s=0.2)
    ) as svc:
        stub = health_pb2_grpc.HealthStub(svc.channel)

        def status(name):
            return stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=3).status

        wait_for(lambda: status("") == health_pb2.HealthCheckResponse.SERVING, timeout=45)
        svc.app.projection.hold.hold()
        try:
            wait_for(lambda: status("") == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=45)
            assert status(SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        finally:
            svc.app.projection.hold.release()
        wait_for(lambda: status("") == health_pb2.HealthCheckResponse.SERVING, timeout=45)
