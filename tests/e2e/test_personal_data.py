"""No contact details or people's names in logs or metrics: the whole
pipeline on its own broker (all four services as processes, e-mail over a
real SMTP server, signed webhooks and SMS to real HTTP receivers), then
every service log and every /metrics page is searched for every contact
value in the registry (e-mails, phones, webhook URLs, and any name given
for a contact)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from integration.test_notify_support import HttpSink, SmtpSink

from subsidy.v1 import intake_pb2_grpc
from subsidy_dev.demo import settle, submit_all
from subsidy_dev.kafka import KafkaBroker
from subsidy_dev.stack import LocalStack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEMO = [
    json.loads(line)
    for line in (REPO / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def _contact_values(registry: dict) -> set[str]:
    values: set[str] = set()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value.strip():
            values.add(value.strip())

    for firm in registry["firms"]:
        walk(firm.get("contacts") or {})
        for key in ("contact_name", "contact_person", "legal_representative", "person"):
            walk(firm.get(key))
    return values


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    var = tmp_path_factory.mktemp("pii")
    registry = json.loads((REPO / "demo" / "registry.json").read_text(encoding="utf-8"))
    originals = _contact_values(registry)
    with SmtpSink() as smtp, HttpSink() as hooks, HttpSink() as sms:
        for firm in registry["firms"]:
            if firm.get("contacts"):
                firm["contacts"]["webhook_url"] = hooks.url(f"/hooks/{firm['credit_code']}")
        registry_path = var / "registry.json"
        registry_path.write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
        keys = var / "webhook-keys"
        keys.write_text("k-2026=e2e-new-key,k-2025=e2e-old-key\n", encoding="utf-8")
        notify_env = {
            "SUBSIDY_REGISTRY_FILE": str(registry_path),
            "SUBSIDY_NOTIFY_SMTP_URL": smtp.url,
            "SUBSIDY_NOTIFY_WEBHOOK_KEYS_FILE": str(keys),
            "SUBSIDY_NOTIFY_SMS_GATEWAY_URL": sms.url("/sms"),
        }
        with (
            KafkaBroker(var / "kafka") as broker,
            LocalStack(
                var / "stack",
                kafka_bootstrap=broker.bootstrap,
                services=("intake", "eligibility", "payout", "notify", "review"),
                extra_env={"intake": {"SUBSIDY_REGISTRY_FILE": str(registry_path)}, "notify": notify_env},
            ) as stack,
        ):
            with grpc.insecure_channel(stack.intake_address) as channel:
                intake = intake_pb2_grpc.IntakeServiceStub(channel)
                submit_all(intake, DEMO)
                settle(stack, intake, [a["application_id"] for a in DEMO], timeout=180)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (smtp.envelopes and hooks.requests and sms.requests):
                time.sleep(0.5)
            time.sleep(3)
            metrics = {}
            for name, service in stack.services.items():
                address = next((v for k, v in service.env.items() if k.endswith("METRICS_ADDRESS") and ":" in v), None)
                if name == "eligibility":
                    address = f"127.0.0.1:{service.env['SUBSIDY_ELIGIBILITY_METRICS_PORT']}"
                if address:
                    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:  # nosec B310
                        metrics[name] = response.read().decode("utf-8", "replace")
            yield {
                "stack": stack,
                "values": originals | _contact_values(registry),
                "metrics": metrics,
                "smtp": smtp,
                "hooks": hooks,
                "sms": sms,
                "logs": var / "stack" / "logs",
                "notices": var / "stack" / "notices",
            }


def test_notifications_were_really_sent_on_every_channel(run):
    assert run["smtp"].envelopes and run["hooks"].requests and run["sms"].requests
    for request in run["hooks"].requests:
        assert request["headers"]["X-Subsidy-Signature"].startswith("keyid=k-2026,sha256=")


def test_no_contact_value_in_any_service_log(run):
    logs = sorted(run["logs"].glob("*.log"))
    assert {p.stem for p in logs} >= {"intake", "eligibility", "payout", "notify", "review"}
    leaks = []
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert text.strip(), path
        for value in run["values"]:
            if value in text:
                leaks.append(f"{path.name}: {value}")
    assert not leaks, leaks


def test_no_contact_value_in_any_metric(run):
    assert set(run["metrics"]) == {"intake", "eligibility", "payout", "notify", "review"}
    leaks = [f"{name}: {value}" for name, text in run["metrics"].items() for value in run["values"] if value in text]
    assert not leaks, leaks


def test_no_contact_value_on_the_public_notice_as_html_or_as_pdf_text(run):
    """The 公示 list is public: firm, credit code, clause, amount, nothing else."""
    import shutil
    import subprocess

    documents = sorted(run["notices"].glob("*.html")) + sorted(run["notices"].glob("*.pdf"))
    assert any(p.suffix == ".pdf" for p in documents), "the demo story published a notice"
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (poppler-utils) is installed by the CI setup"
    leaks = []
    for path in documents:
        if path.suffix == ".pdf":
            text = subprocess.run([pdftotext, str(path), "-"], capture_output=True, check=True, text=True).stdout
            assert "公示" in text, path
        else:
            text = path.read_text(encoding="utf-8")
        leaks += [f"{path.name}: {value}" for value in run["values"] if value in text]
    assert not leaks, leaks
