"""`python -m subsidy.services.intake` as a process: it serves, reports SERVING, and
exits 0 soon after SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from subsidy.v1 import intake_pb2, intake_pb2_grpc
from subsidy_dev import free_port

from .test_intake_support import ROOT, migrate, new_id, rent_application, wait_for

pytestmark = pytest.mark.integration


def test_the_service_runs_as_a_module_and_exits_cleanly_on_sigterm(kafka_bootstrap, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SUBSIDY_INTAKE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SUBSIDY_INTAKE_DATABASE_URL": f"sqlite:///{tmp_path / 'intake.db'}",
        "SUBSIDY_INTAKE_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        "SUBSIDY_INTAKE_GRACE_SECONDS": "2",
    }
    env.pop("SUBSIDY_REGISTRY_URL", None)
    log = tmp_path / "intake.log"
    migrate("intake", env["SUBSIDY_INTAKE_DATABASE_URL"])  # the services only check the schema: migrate first
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "subsidy.services.intake"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)

        def serving():
            try:
                return (
                    health.Check(health_pb2.HealthCheckRequest(service="subsidy.v1.IntakeService"), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                )
            except grpc.RpcError:
                return False

        wait_for(serving, timeout=60, interval=0.2)
        app_id = new_id()
        answer = intake_pb2_grpc.IntakeServiceStub(channel).SubmitApplication(
            intake_pb2.SubmitApplicationRequest(application=rent_application(app_id)), timeout=10
        )
        assert answer.receipt.application_id == app_id
        channel.close()

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = log.read_text(encoding="utf-8").splitlines()
    assert any('"intake stopped"' in line for line in lines), lines[-20:]
    accepted = [line for line in lines if '"application accepted"' in line]
    assert accepted and all('"trace_id"' in line for line in accepted)
    assert "example.cn" not in log.read_text(encoding="utf-8")
