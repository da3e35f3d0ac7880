"""The metric contract, checked on the real thing: Kafka (a broker of its own)
and the services as processes (LocalStack), the demo applications
through the whole pipeline (the people's part included: review and the
public notice, subsidy_dev/review_story.py), then each service's /metrics scraped over HTTP
and

- linted by ``promtool check metrics`` (no problems at all);
- holding the contract's names (docs/metrics.md) in the right services, with
  the contract's labels;
- carrying no personal data in any label value (no credit code, no
  application id, no e-mail address, no phone number).

The scrape is taken once per test session (``scrape_whole_stack``) and shared
with tests/ops/test_dashboard.py, which checks the Grafana dashboard against
the families the services really export.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from subsidy.contracts import topics
from subsidy.v1 import application_pb2, intake_pb2, intake_pb2_grpc
from subsidy_dev.demo import settle, submit_all
from subsidy_dev.kafka import KafkaBroker
from subsidy_dev.stack import LocalStack
from subsidy_dev.tools import promtool

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEMO = [
    json.loads(line)
    for line in (REPO / "demo" / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
SERVICES = ("intake", "eligibility", "payout", "notify", "review", "registry_sync", "operations")

# What each service must export: exposition family name -> label names (the
# contract of the operations issue; deploy/k8s alerts use these names).
COMMON = {
    "subsidy_grpc_server_handled_total": {"grpc_service", "grpc_method", "grpc_code"},
    "subsidy_grpc_server_handling_seconds": {"grpc_service", "grpc_method"},
}
KAFKA_CONSUMER = {
    "subsidy_kafka_messages_consumed_total": {"topic", "consumer"},
    "subsidy_kafka_consumer_lag": {"topic", "partition", "group"},
    "subsidy_dead_letters_total": {"topic", "consumer"},
    "subsidy_consumer_last_progress_timestamp_seconds": {"consumer"},
}
OUTBOX = {
    "subsidy_outbox_depth": {"store"},
    "subsidy_outbox_oldest_pending_age_seconds": {"store"},
    "subsidy_outbox_publish_delay_seconds": {"store"},
    "subsidy_kafka_messages_produced_total": {"topic", "producer"},
}
DB = {"subsidy_db_transaction_duration_seconds": {"store", "outcome"}}
CONTRACT = {
    "intake": {**COMMON, **KAFKA_CONSUMER, **OUTBOX, **DB, "subsidy_intake_submissions_total": {"outcome"}},
    "eligibility": {
        **COMMON,
        **KAFKA_CONSUMER,
        "subsidy_kafka_messages_produced_total": {"topic", "producer"},
        "subsidy_decisions_total": {"clause", "outcome"},
    },
    "payout": {
        **COMMON,
        **KAFKA_CONSUMER,
        **OUTBOX,
        **DB,
        "subsidy_payout_granted_fen_total": {"clause"},
        "subsidy_payout_scheduled_fen_total": {"clause", "budget_year"},
        "subsidy_payout_cap_hits_total": {"clause"},
        "subsidy_payout_tranches": {"status"},
        "subsidy_payout_tranches_overdue": set(),
        "subsidy_payout_tranches_paid_total": set(),
        # issue 16 / issue 13 item 7 (adapters/ledger_gauges.py, reconcile.py)
        "subsidy_payout_scheduler_last_run_timestamp_seconds": set(),
        "subsidy_payout_tranches_scheduled_past_due": set(),
        "subsidy_payout_tranches_held_past_grace": set(),
        "subsidy_payout_recoveries_open": set(),
        "subsidy_payout_recovery_oldest_open_age_seconds": set(),
        "subsidy_payout_cap_mismatches": {"kind"},
        "subsidy_payout_cap_reconciled_firms": set(),
        "subsidy_payout_cap_reconcile_last_run_timestamp_seconds": set(),
    },
    "notify": {
        **COMMON,
        **KAFKA_CONSUMER,
        **DB,
        "subsidy_notifications_sent_total": {"channel"},
        "subsidy_notifications_failed_total": {"channel"},
    },
    "review": {
        **COMMON,
        **KAFKA_CONSUMER,
        **DB,
        "subsidy_review_decisions_total": {"result"},
        "subsidy_review_steps_total": {"action"},
        "subsidy_review_refused_total": {"rpc", "code"},
        "subsidy_review_items": {"status"},
        "subsidy_review_items_overdue": set(),
        "subsidy_review_holiday_calendar_remaining_seconds": set(),
        "subsidy_review_lines_payable_total": set(),
    },
    "registry_sync": {
        **DB,
        "subsidy_registry_sync_changes_total": {"outcome"},
        "subsidy_registry_sync_changes_rejected_total": {"reason"},
        "subsidy_registry_sync_facts_written_total": set(),
        "subsidy_registry_sync_lag_changes": set(),
        "subsidy_registry_sync_last_success_timestamp_seconds": set(),
        "subsidy_registry_sync_lag_seconds": set(),
    },
    "operations": {
        **COMMON,
        **KAFKA_CONSUMER,
        **OUTBOX,
        **DB,
        "subsidy_operations_dead_letters_read_total": {"topic", "outcome"},
        "subsidy_operations_dead_letters": {"topic", "state"},
        "subsidy_operations_dead_letters_oldest_pending_age_seconds": {"topic"},
    },
}
# Families that must have samples after the demo (not only HELP/TYPE lines).
WITH_SAMPLES = {
    "intake": [
        "subsidy_grpc_server_handled_total",
        "subsidy_grpc_server_handling_seconds",
        "subsidy_intake_submissions_total",
        "subsidy_kafka_messages_consumed_total",
        "subsidy_kafka_messages_produced_total",
        "subsidy_kafka_consumer_lag",
        "subsidy_outbox_depth",
        "subsidy_outbox_oldest_pending_age_seconds",
        "subsidy_outbox_publish_delay_seconds",
        "subsidy_consumer_last_progress_timestamp_seconds",
        "subsidy_db_transaction_duration_seconds",
    ],
    "eligibility": [
        "subsidy_grpc_server_handled_total",
        "subsidy_decisions_total",
        "subsidy_dead_letters_total",
        "subsidy_kafka_messages_consumed_total",
        "subsidy_kafka_messages_produced_total",
        "subsidy_kafka_consumer_lag",
        "subsidy_consumer_last_progress_timestamp_seconds",
    ],
    "payout": [
        "subsidy_payout_granted_fen_total",
        "subsidy_payout_scheduled_fen_total",
        "subsidy_payout_cap_hits_total",
        "subsidy_payout_tranches",
        "subsidy_payout_tranches_overdue",
        "subsidy_kafka_messages_consumed_total",
        "subsidy_kafka_messages_produced_total",
        "subsidy_kafka_consumer_lag",
        "subsidy_outbox_depth",
        "subsidy_outbox_publish_delay_seconds",
        "subsidy_consumer_last_progress_timestamp_seconds",
        "subsidy_grpc_server_handled_total",
    ],
    "review": [
        "subsidy_review_decisions_total",
        "subsidy_review_steps_total",
        "subsidy_review_items",
        "subsidy_review_lines_payable_total",
        "subsidy_kafka_messages_consumed_total",
        "subsidy_kafka_consumer_lag",
        "subsidy_consumer_last_progress_timestamp_seconds",
        "subsidy_grpc_server_handled_total",
    ],
    # The garbage record eligibility dead-letters (_exercise), read into operations' database.
    "operations": [
        "subsidy_operations_dead_letters_read_total",
        "subsidy_operations_dead_letters",
        "subsidy_operations_dead_letters_oldest_pending_age_seconds",
        "subsidy_kafka_consumer_lag",
        "subsidy_outbox_depth",
    ],
    "registry_sync": [
        "subsidy_registry_sync_changes_total",
        "subsidy_registry_sync_facts_written_total",
        "subsidy_registry_sync_lag_changes",
        "subsidy_registry_sync_last_success_timestamp_seconds",
    ],
    "notify": [
        "subsidy_notifications_sent_total",
        "subsidy_kafka_messages_consumed_total",
        "subsidy_kafka_consumer_lag",
        "subsidy_consumer_last_progress_timestamp_seconds",
        "subsidy_grpc_server_handled_total",
    ],
}

_SCRAPES: dict[str, str] | None = None


def metrics_url(stack: LocalStack, name: str) -> str:
    env = stack.services[name].env
    if name == "eligibility":
        return f"http://{env['SUBSIDY_ELIGIBILITY_METRICS_ADDRESS']}:{env['SUBSIDY_ELIGIBILITY_METRICS_PORT']}/metrics"
    return f"http://{env[f'SUBSIDY_{name.upper()}_METRICS_ADDRESS']}/metrics"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode("utf-8")


def _exercise(stack: LocalStack) -> None:
    """Enough traffic for every business metric: the demo set to the ledger, a
    refused submission, a garbage record for the dead-letter topic."""
    from kafka import KafkaProducer

    with grpc.insecure_channel(stack.intake_address) as channel:
        intake = intake_pb2_grpc.IntakeServiceStub(channel)
        submitted = dict(submit_all(intake, DEMO))
        assert set(submitted.values()) <= {"accepted", "duplicate"}, submitted
        with pytest.raises(grpc.RpcError) as refused:
            intake.SubmitApplication(
                intake_pb2.SubmitApplicationRequest(application=application_pb2.Application()), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        settle(stack, intake, [a["application_id"] for a in DEMO], timeout=180)
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    producer.send(topics.APPLICATIONS.name, key=b"garbage", value=b"\xff\x00 not a protobuf").get(timeout=10)
    producer.close()


def scrape_whole_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Start everything once per session, run the demo, scrape each service's
    /metrics, stop everything; the texts by service."""
    global _SCRAPES
    if _SCRAPES is not None:
        return _SCRAPES
    var = tmp_path_factory.mktemp("ops-metrics")
    fast = {
        "intake": {"SUBSIDY_INTAKE_METRICS_REFRESH_SECONDS": "1"},
        "review": {"SUBSIDY_REVIEW_METRICS_REFRESH_SECONDS": "1"},
        "operations": {"SUBSIDY_OPERATIONS_METRICS_REFRESH_SECONDS": "1"},
        "registry_sync": {"SUBSIDY_REGISTRY_SYNC_POLL_SECONDS": "1"},
        "payout": {
            "SUBSIDY_PAYOUT_METRICS_REFRESH_SECONDS": "1",
            # A "today" late enough that every demo tranche is DUE, some overdue.
            "SUBSIDY_PAYOUT_TODAY": "2027-12-31",
            "SUBSIDY_DEV_CLOCK_FILE": "",  # the fixed day above, not the stack's clock
            "SUBSIDY_PAYOUT_SCHEDULER_INTERVAL_SECONDS": "1",
            "SUBSIDY_PAYOUT_RECONCILE_INTERVAL_SECONDS": "1",  # the cap reconciliation after the demo too
        },
    }
    with (
        KafkaBroker(var / "kafka") as broker,
        LocalStack(
            var / "stack",
            kafka_bootstrap=broker.bootstrap,
            services=SERVICES,
            extra_env=fast,
        ) as stack,
    ):
        _exercise(stack)
        deadline = time.monotonic() + 60
        texts: dict[str, str] = {}
        while True:
            texts = {name: scrape(metrics_url(stack, name)) for name in SERVICES}
            missing = _missing_samples(texts)
            # The operations service reads the DLQs on its own and refreshes its
            # gauges every second: wait for the garbage application's letter too.
            if (not missing and _letter_pending(texts)) or time.monotonic() > deadline:
                break
            time.sleep(1)
    _SCRAPES = texts
    keep = os.environ.get("SUBSIDY_METRICS_SCRAPE_DIR")  # to look at what was scraped
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            (Path(keep) / f"{name}.prom").write_text(text, encoding="utf-8")
    return texts


def _letter_pending(texts: dict[str, str]) -> bool:
    samples = families(texts["operations"]).get("subsidy_operations_dead_letters", {"samples": []})["samples"]
    return any(
        labels.get("topic") == topics.APPLICATIONS_DLQ.name and labels.get("state") == "PENDING" and value >= 1
        for _, labels, value in samples
    )


def families(text: str) -> dict[str, dict]:
    """Exposition family name (as in ``# TYPE``) -> {type, samples: [(name, labels, value)]}."""
    out: dict[str, dict] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out[name] = {"type": kind, "samples": []}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        if name not in out:
            name = family.name
        entry = out.setdefault(name, {"type": family.type, "samples": []})
        entry["samples"].extend((s.name, s.labels, s.value) for s in family.samples)
    return out


def exported_families(texts: dict[str, str]) -> set[str]:
    """Every family any service exports, by exposition name."""
    return {name for text in texts.values() for name in families(text)}


def _missing_samples(texts: dict[str, str]) -> list[str]:
    missing = []
    for service, names in WITH_SAMPLES.items():
        found = families(texts[service])
        missing += [f"{service}:{n}" for n in names if not found.get(n, {}).get("samples")]
    return missing


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory) -> dict[str, str]:
    return scrape_whole_stack(tmp_path_factory)


@pytest.mark.parametrize("service", SERVICES)
def test_promtool_finds_no_problem_in_what_the_service_exports(scrapes, service, tmp_path):
    text = scrapes[service]
    result = subprocess.run(
        [str(promtool()), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        f"promtool check metrics on {service}:\n{result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_the_contract_names_are_exported_with_their_labels(scrapes, service):
    found = families(scrapes[service])
    for name, labels in CONTRACT[service].items():
        assert name in found, f"{service} does not export {name}"
        for sample_name, sample_labels, _ in found[name]["samples"]:
            got = set(sample_labels) - {"le"}
            assert got == labels, f"{service}: {sample_name} has labels {sorted(got)}, want {sorted(labels)}"


def test_the_demo_left_samples_in_every_business_metric(scrapes):
    assert _missing_samples(scrapes) == []


def test_the_numbers_tell_the_story(scrapes):
    intake = families(scrapes["intake"])
    accepted = sum(
        v for _, labels, v in intake["subsidy_intake_submissions_total"]["samples"] if labels["outcome"] == "accepted"
    )
    assert accepted >= len({a["application_id"] for a in DEMO}) - 1
    assert any(
        labels["grpc_code"] == "INVALID_ARGUMENT" and labels["grpc_method"] == "SubmitApplication"
        for _, labels, _ in intake["subsidy_grpc_server_handled_total"]["samples"]
    )
    eligibility = families(scrapes["eligibility"])
    decided = sum(v for _, _, v in eligibility["subsidy_decisions_total"]["samples"])
    assert decided >= 32
    assert any(
        labels["topic"] == topics.APPLICATIONS.name and v >= 1
        for _, labels, v in eligibility["subsidy_dead_letters_total"]["samples"]
    )
    payout = families(scrapes["payout"])
    granted = sum(v for _, _, v in payout["subsidy_payout_granted_fen_total"]["samples"])
    scheduled = sum(v for _, _, v in payout["subsidy_payout_scheduled_fen_total"]["samples"])
    assert granted == scheduled > 0, "every granted fen is scheduled in some budget year"
    statuses = {labels["status"]: v for _, labels, v in payout["subsidy_payout_tranches"]["samples"]}
    # HELD too: the fake data platform's scripted changes move a firm out of the district (release gates).
    assert (
        {"SCHEDULED", "DUE", "PAID", "CANCELLED"} <= set(statuses) <= {"SCHEDULED", "DUE", "PAID", "CANCELLED", "HELD"}
    )
    assert statuses["DUE"] > 0
    assert payout["subsidy_payout_tranches_overdue"]["samples"][0][2] > 0
    # The cap reconciliation ran in payout over the demo's whole ledger (caps partly
    # used, reviewed decisions, withdrawn lines, held and cancelled tranches) and
    # found every firm's recorded usage equal to what its grants hold.
    mismatches = {labels["kind"]: v for _, labels, v in payout["subsidy_payout_cap_mismatches"]["samples"]}
    assert mismatches == {"usage": 0, "over_cap": 0}
    assert payout["subsidy_payout_cap_reconciled_firms"]["samples"][0][2] >= 10  # the demo's firms
    assert payout["subsidy_payout_cap_reconcile_last_run_timestamp_seconds"]["samples"][0][2] > 0
    assert payout["subsidy_payout_scheduler_last_run_timestamp_seconds"]["samples"][0][2] > 0
    notify = families(scrapes["notify"])
    assert sum(v for _, _, v in notify["subsidy_notifications_sent_total"]["samples"]) > 0
    # The garbage application is a letter PENDING in operations (what
    # SubsidyDeadLettersUnhandled reads), and every DLQ topic has its age series.
    operations = families(scrapes["operations"])
    pending = {
        labels["topic"]: v
        for _, labels, v in operations["subsidy_operations_dead_letters"]["samples"]
        if labels["state"] == "PENDING"
    }
    assert pending[topics.APPLICATIONS_DLQ.name] >= 1
    ages = {
        labels["topic"]: v
        for _, labels, v in operations["subsidy_operations_dead_letters_oldest_pending_age_seconds"]["samples"]
    }
    assert set(ages) == {t.name for t in topics.ALL if t.name.endswith(".dlq")}
    assert all(v >= 0 for v in ages.values())
    assert all(ages[t] == 0 for t, n in pending.items() if n == 0), "no letter pending: age 0"


CREDIT_CODE = re.compile(r"^[0-9A-Z]{18}$")
APPLICATION_ID = re.compile(r"SJ-\d{4}-\d{4}")
PHONE = re.compile(r"(\+?86[- ]?)?1[3-9]\d{9}|\d{3,4}-\d{7,8}")


@pytest.mark.parametrize("service", SERVICES)
def test_no_label_value_carries_personal_data(scrapes, service):
    for family in families(scrapes[service]).values():
        for sample_name, labels, _ in family["samples"]:
            for key, value in labels.items():
                where = f"{service}: {sample_name}{{{key}={value!r}}}"
                assert not CREDIT_CODE.match(value), f"a credit code in a label: {where}"
                assert "@" not in value, f"an e-mail address in a label: {where}"
                assert not PHONE.search(value), f"a phone number in a label: {where}"
                assert not APPLICATION_ID.search(value), f"an application id in a label: {where}"
