"""deploy/grafana/subsidy-pipeline.json queries only what the services really
export: every metric name in every panel's PromQL is one of the families in
the scrape tests/ops/test_metrics.py takes of the running stack (the same
session-wide scrape, not a hand-written list)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ops.test_metrics import exported_families, families, scrape_whole_stack

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "subsidy-pipeline.json"

FUNCTIONS = {
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "count_values",
    "day_of_month",
    "delta",
    "deriv",
    "exp",
    "floor",
    "group",
    "histogram_quantile",
    "holt_winters",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log2",
    "log10",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "predict_linear",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev",
    "stdvar",
    "sum",
    "sum_over_time",
    "time",
    "timestamp",
    "topk",
    "vector",
}
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers followed by ``{``,
    ``(``, ``[``, whitespace, ``)``, ``,`` or the end, once strings, label
    matchers, grouping label lists and range selectors are removed, and
    without functions, keywords and Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # range selectors, $__rate_interval
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(?=\s*[{(\[),]|\s|$)", text):
        word = match.group(1)
        if word in FUNCTIONS or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def family_of(name: str, exported: dict[str, str]) -> str:
    """A histogram's _bucket/_sum/_count series belong to its family."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and exported.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return name


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, str]:
    texts = scrape_whole_stack(tmp_path_factory)
    kinds: dict[str, str] = {}
    for text in texts.values():
        kinds.update({name: f["type"] for name, f in families(text).items()})
    assert set(kinds) == exported_families(texts)
    return kinds


def test_metric_names_are_extracted_as_promql_reads_them():
    expr = (
        "histogram_quantile(0.95, sum by (le, store) (rate(subsidy_outbox_publish_delay_seconds_bucket"
        "[$__rate_interval]))) / clamp_min(sum by (grpc_service) (rate(subsidy_grpc_server_handled_total"
        '{grpc_code=~"UNKNOWN|INTERNAL"}[5m])), 1e-9) + time() - max(up offset 5m) + on (job) group_left foo'
    )
    assert metric_names(expr) == {
        "subsidy_outbox_publish_delay_seconds_bucket",
        "subsidy_grpc_server_handled_total",
        "up",
        "foo",
    }


def test_the_dashboard_is_grafana_json_with_a_prometheus_datasource_variable(dashboard):
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


# The platform row's metrics: not the services', each from a scrape the
# manifests set up (monitoring/kafka-metrics.yaml) or the cluster's own.
EXTERNAL = {
    "up": "Prometheus",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kubelet_volume_stats_available_bytes": "kubelet",
    "kubelet_volume_stats_capacity_bytes": "kubelet",
    "kafka_controller_kafkacontroller_offlinepartitionscount": "JMX exporter (PodMonitor subsidy-kafka)",
    "kafka_topic_partition_under_replicated_partition": "Strimzi Kafka exporter (PodMonitor subsidy-kafka)",
    "kafka_consumergroup_lag": "Strimzi Kafka exporter (PodMonitor subsidy-kafka)",
    "cnpg_collector_up": "CloudNativePG exporter (PodMonitor subsidy-pg)",
    "cnpg_pg_replication_lag": "CloudNativePG exporter (PodMonitor subsidy-pg)",
}


def test_every_metric_the_dashboard_queries_is_exported_by_a_service(dashboard, exported):
    queried = {name for expr in exprs(dashboard) for name in metric_names(expr)}
    assert queried, "no metric names found"
    unknown = sorted(name for name in queried if family_of(name, exported) not in exported and name not in EXTERNAL)
    assert unknown == [], f"the dashboard queries metrics no service exports: {unknown}"


def test_the_dashboard_covers_the_pipeline_end_to_end_and_the_money(dashboard, exported):
    queried = {family_of(name, exported) for expr in exprs(dashboard) for name in metric_names(expr)}
    for name in (
        "subsidy_intake_submissions_total",
        "subsidy_decisions_total",
        "subsidy_payout_granted_fen_total",
        "subsidy_payout_scheduled_fen_total",
        "subsidy_kafka_consumer_lag",
        "subsidy_dead_letters_total",
        "subsidy_outbox_depth",
        "subsidy_outbox_oldest_pending_age_seconds",
        "subsidy_grpc_server_handled_total",
        "subsidy_grpc_server_handling_seconds",
        "subsidy_payout_tranches",
        "subsidy_payout_tranches_overdue",
        "subsidy_notifications_sent_total",
        "subsidy_notifications_failed_total",
    ):
        assert name in queried, f"no panel shows {name}"


def test_namespace_and_instance_variables_scope_every_service_query(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"namespace", "instance"} <= set(variables)
    assert variables["instance"]["includeAll"] and variables["instance"]["multi"]
    for expr in exprs(dashboard):
        for selector in re.findall(r"\b(subsidy_[a-z0-9_]+)(\{[^}]*\})?", expr):
            assert 'namespace=~"$namespace"' in selector[1], f"{selector[0]} not scoped: {expr}"
        if re.search(r"\b(kube|kubelet|kafka|cnpg)_", expr) or re.search(r"\bup\{", expr):
            assert 'namespace=~"$namespace"' in expr, expr


def test_the_platform_row_shows_targets_restarts_brokers_and_databases(dashboard):
    queried = {name for expr in exprs(dashboard) for name in metric_names(expr)}
    assert {"up", "kube_pod_container_status_restarts_total"} <= queried
    assert any(n.startswith("kafka_") for n in queried) and any(n.startswith("cnpg_") for n in queried)
    assert set(EXTERNAL) == queried - {n for n in queried if n.startswith("subsidy_")}


def test_the_manifests_provision_the_dashboard():
    from ops.test_k8s import generated, rendered

    for overlay in ("dev", "prod"):
        cm = generated(rendered(f"overlays/{overlay}"), "ConfigMap", "subsidy-grafana-dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["data"] == {DASHBOARD.name: DASHBOARD.read_text(encoding="utf-8")}
