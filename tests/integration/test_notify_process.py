"""`python -m subsidy.services.notify` as a process: it reports SERVING over gRPC
health (with reflection), notifies, logs without contact details, and exits
0 soon after SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from unit.notify.notify_fakes import decision

from subsidy_dev import free_port

from .test_notify_support import (
    ROOT,
    SECRET,
    HttpSink,
    Producer,
    SmtpSink,
    group_at_end,
    migrate,
    new_id,
    registry_file,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_the_service_runs_as_a_module_logs_no_contacts_and_exits_cleanly_on_sigterm(kafka_bootstrap, tmp_path):
    port = free_port()
    with SmtpSink() as smtp, HttpSink() as hook, HttpSink() as sms:
        webhook_url = hook.url("/hooks/private-path-zhao")
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SUBSIDY_NOTIFY_GRPC_ADDRESS": f"127.0.0.1:{port}",
            "SUBSIDY_NOTIFY_DATABASE_URL": f"sqlite:///{tmp_path / 'notify.db'}",
            "SUBSIDY_NOTIFY_GROUP": group_at_end(kafka_bootstrap, f"it-notify-{uuid.uuid4().hex[:8]}"),
            "SUBSIDY_NOTIFY_SMTP_URL": smtp.url,
            "SUBSIDY_NOTIFY_WEBHOOK_SECRET": SECRET,
            "SUBSIDY_NOTIFY_SMS_GATEWAY_URL": sms.url("/sms"),
            "SUBSIDY_NOTIFY_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
            "SUBSIDY_NOTIFY_HEALTH_INTERVAL_SECONDS": "0.2",
            "SUBSIDY_NOTIFY_GRACE_SECONDS": "2",
            "SUBSIDY_REGISTRY_FILE": str(
                registry_file(tmp_path, webhook_url, phone="+86-21-5555-0777", mail="zhao.liu@example.cn")
            ),
        }
        env.pop("SUBSIDY_REGISTRY_URL", None)
        log = tmp_path / "notify.log"
        migrate("notify", env["SUBSIDY_NOTIFY_DATABASE_URL"])  # the services only check the schema: migrate first
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "subsidy.services.notify"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        producer = Producer(kafka_bootstrap)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            health = health_pb2_grpc.HealthStub(channel)

            def serving():
                try:
                    return (
                        health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                        == health_pb2.HealthCheckResponse.SERVING
                    )
                except grpc.RpcError:
                    return False

            wait_for(serving, timeout=60, interval=0.2)
            answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            assert "grpc.health.v1.Health" in {s.name for a in answers for s in a.list_services_response.service}
            channel.close()

            message = decision(app=new_id("SJ"))
            producer.decision(message)
            eid = f"decision:{message.decision_id}"
            wait_for(lambda: smtp.with_header("X-Subsidy-Event-Id", eid) and sms.requests and hook.requests, timeout=40)

            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert time.monotonic() - started < 10
        finally:
            producer.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert any('"notify stopped"' in line for line in lines), lines[-20:]
    sent = [line for line in lines if '"notification sent"' in line and eid in line]
    assert len(sent) == 3 and all(f'"trace_id": "{producer.trace_id}"' in line for line in sent)
    for secret in ("zhao.liu", "example.cn", "5555-0777", "private-path-zhao", webhook_url, SECRET):
        assert secret not in text
