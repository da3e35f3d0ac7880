"""The alerts: deploy/k8s/base/monitoring/prometheus-rules.yaml (a PrometheusRule,
the only copy of the rules) checked and unit-tested with promtool.

spec.groups is extracted into a plain rules file next to a copy of
deploy/prometheus/alerts-tests.yaml, then `promtool check rules` and
`promtool test rules` run on them. promtool comes from
subsidy_dev.tools (Debian's prometheus package on first use).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest
import yaml

from subsidy_dev import tools

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "k8s" / "base" / "monitoring" / "prometheus-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts-tests.yaml"
RULES_FILE_NAME = "subsidy-alerts.rules.yaml"  # what alerts-tests.yaml's rule_files names
OPERATIONS = ROOT / "docs" / "operations.md"

# The metrics the services export (the names are a contract with the
# services' code and the dashboard).
METRICS = {
    "subsidy_grpc_server_handled_total",
    "subsidy_grpc_server_handling_seconds",
    "subsidy_kafka_messages_consumed_total",
    "subsidy_kafka_messages_produced_total",
    "subsidy_kafka_consumer_lag",
    "subsidy_dead_letters_total",
    "subsidy_outbox_depth",
    "subsidy_outbox_oldest_pending_age_seconds",
    "subsidy_outbox_publish_delay_seconds",
    "subsidy_db_transaction_duration_seconds",
    "subsidy_intake_submissions_total",
    "subsidy_decisions_total",
    "subsidy_payout_granted_fen_total",
    "subsidy_payout_scheduled_fen_total",
    "subsidy_payout_cap_hits_total",
    "subsidy_payout_tranches",
    "subsidy_payout_tranches_overdue",
    "subsidy_notifications_sent_total",
    "subsidy_notifications_failed_total",
    "subsidy_consumer_last_progress_timestamp_seconds",
    "subsidy_auth_denied_total",
    "subsidy_outbox_parked_total",
    "subsidy_registry_sync_last_success_timestamp_seconds",
    "subsidy_registry_sync_changes_rejected_total",
    "subsidy_payout_scheduler_last_run_timestamp_seconds",
    "subsidy_payout_tranches_scheduled_past_due",
    "subsidy_payout_tranches_held_past_grace",
    "subsidy_payout_recovery_oldest_open_age_seconds",
    "subsidy_policy_redecisions_owed",
    "subsidy_payout_cap_mismatches",
    "subsidy_payout_cap_reconcile_last_run_timestamp_seconds",
    "subsidy_intake_proposals_total",
    "subsidy_operations_dead_letters_oldest_pending_age_seconds",
    "subsidy_review_holiday_calendar_remaining_seconds",
}
# Metrics of other exporters the alerts use, and where they come from (each
# scraped by what the manifests deploy, or by the cluster's own monitoring).
EXTERNAL_METRICS = {
    "kube_pod_container_status_waiting_reason": "kube-state-metrics",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kubelet_volume_stats_available_bytes": "kubelet",
    "kubelet_volume_stats_capacity_bytes": "kubelet",
    "kafka_controller_kafkacontroller_offlinepartitionscount": "JMX exporter (monitoring/kafka-metrics.yaml)",
    "kafka_topic_partition_under_replicated_partition": "Strimzi Kafka exporter",
    "kafka_topic_partition_current_offset": "Strimzi Kafka exporter",
    "kafka_topic_partition_oldest_offset": "Strimzi Kafka exporter",
    "kafka_consumergroup_current_offset": "Strimzi Kafka exporter",
    "kube_job_status_failed": "kube-state-metrics",
    "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp": "CloudNativePG's Barman Cloud plugin (PodMonitor subsidy-pg)",
    "barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp": "CloudNativePG's Barman Cloud plugin (PodMonitor subsidy-pg)",
}
CLIENT_ERROR_CODES = ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION")
# Refusals by authentication or the access policy: SubsidyAuthFailures, not server errors.
AUTH_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED")
SEVERITIES = {"critical", "warning"}


def rule_groups() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    return doc["spec"]["groups"]


def alerts() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


@functools.cache
def promtool_binary() -> str:
    try:
        return str(tools.promtool())
    except tools.ToolUnavailable as exc:
        pytest.fail(f"promtool is not available: {exc}")


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / RULES_FILE_NAME).write_text(
        yaml.safe_dump({"groups": rule_groups()}, sort_keys=False, allow_unicode=True, width=1000)
    )
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return tmp_path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_binary(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules(rules_dir):
    result = promtool("check", "rules", RULES_FILE_NAME, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_test_rules(rules_dir):
    assert yaml.safe_load(RULE_TESTS.read_text())["rule_files"] == [RULES_FILE_NAME]
    result = promtool("test", "rules", RULE_TESTS.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in test.get("alert_rule_test", []):
            cases.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    for alert in alerts():
        assert cases.get(alert["alert"]) == {True, False}, f"{alert['alert']}: needs a firing and a quiet case"
    assert set(cases) <= {a["alert"] for a in alerts()}, "a test names an alert that does not exist"


def test_the_alerts_the_operations_issue_asks_for_exist():
    names = {a["alert"] for a in alerts()}
    assert names >= {
        "SubsidyKafkaConsumerLagHigh",
        "SubsidyDeadLetters",
        "SubsidyOutboxBacklog",
        "SubsidyTranchesOverdue",
        "SubsidyGrpcErrorRatioHigh",
        "SubsidyServiceDown",
        # issue 16
        "SubsidyConsumerStalled",
        "SubsidyConsumerGroupDown",
        "SubsidyCrashLooping",
        "SubsidyKafkaUnderReplicatedPartitions",
        "SubsidyKafkaOfflinePartitions",
        "SubsidyVolumeFilling",
        "SubsidyDeadLettersUnhandled",
        "SubsidyOutboxParked",
        "SubsidyAuthFailures",
        "SubsidyPayoutSchedulerNotRunning",
        "SubsidyTranchesScheduledPastDue",
        "SubsidyCapMismatch",
        "SubsidyCapReconcileJobFailed",
        # issue 13 item 7
        "SubsidyTranchesHeldPastGrace",
        "SubsidyRecoveryOpenTooLong",
        "SubsidyProposalsExpiredUnanswered",
    }
    assert len(names) == len(alerts()), "alert names must be unique"


def test_grpc_error_ratio_leaves_out_client_errors():
    (rule,) = [a for a in alerts() if a["alert"] == "SubsidyGrpcErrorRatioHigh"]
    excluded = re.search(r'grpc_code!~"([^"]+)"', rule["expr"]).group(1).split("|")
    assert set(excluded) == {"OK", *CLIENT_ERROR_CODES, *AUTH_CODES}


def test_auth_failures_alert_on_their_own_counter():
    (rule,) = [a for a in alerts() if a["alert"] == "SubsidyAuthFailures"]
    assert "subsidy_auth_denied_total" in rule["expr"] and "reason" in rule["expr"]
    from subsidy.platform.security.interceptor import AUTH_DENIED

    assert AUTH_DENIED._name == "subsidy_auth_denied", "the counter the interceptor increments"


def test_the_group_down_alert_names_every_consumer_group():
    from tests.ops.test_k8s_security import GROUPS

    (rule,) = [a for a in alerts() if a["alert"] == "SubsidyConsumerGroupDown"]
    named_groups = set(re.findall(r'absent\(subsidy_kafka_consumer_lag\{group="([^"]+)"\}\)', rule["expr"]))
    assert named_groups == set().union(*GROUPS.values())


def test_alerts_use_only_the_services_metric_names():
    for alert in alerts():
        used = set(re.findall(r"\bsubsidy_[a-z_]+\b", alert["expr"]))
        assert used <= METRICS, f"{alert['alert']}: unknown metric(s) {sorted(used - METRICS)}"
        others = set(re.findall(r"\b((?:kube|kubelet|kafka)_[a-z_]+)\b", alert["expr"]))
        assert others <= set(EXTERNAL_METRICS), f"{alert['alert']}: {sorted(others - set(EXTERNAL_METRICS))}"


def test_the_service_metrics_the_alerts_use_exist_in_the_code():
    """A metric the code does not export would keep an alert silent forever."""
    sources = "".join(p.read_text() for p in (ROOT / "subsidy").rglob("*.py"))
    for name in sorted(METRICS):
        base = re.sub(r"_(total|seconds)$", "", name) if name.endswith("_total") else name
        assert f'"{base}"' in sources or f'"{name}"' in sources, name


def github_anchor(heading: str) -> str:
    """The fragment GitHub/GitLab give a Markdown heading."""
    text = unicodedata.normalize("NFKC", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_alert_is_labelled_annotated_and_has_a_runbook():
    assert OPERATIONS.exists(), "docs/operations.md holds the runbooks"
    anchors = {
        github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", OPERATIONS.read_text(), re.MULTILINE)
    }
    for alert in alerts():
        name = alert["alert"]
        assert alert.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = alert.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name
        url = annotations.get("runbook_url", "")
        assert url.split("#")[0].endswith("/docs/operations.md"), f"{name}: {url}"
        fragment = url.partition("#")[2]
        assert fragment == name.lower(), f"{name}: runbook anchor should be #{name.lower()}"
        assert fragment in anchors, f"{name}: docs/operations.md has no heading for #{fragment}"
