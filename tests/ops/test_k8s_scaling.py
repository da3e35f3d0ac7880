"""deploy/k8s, rendered: autoscaling on consumer lag (KEDA's Kafka scaler,
never beyond the partitions the KafkaTopic resources declare), one source
of truth for topics in prod (runtime creation off), and the cap
reconciliation CronJob (issue 16)."""

from __future__ import annotations

import pytest

from subsidy.platform import topics as platform_topics
from tests.ops.test_k8s import (
    KAFKA_PORT,
    OVERLAYS,
    SERVICES,
    container_env,
    deployment,
    dns,
    named,
    of_kind,
    rendered,
    selects,
)

# The consumer Deployments that scale on lag, and the (group, topic) each trigger must watch.
SCALED = {
    "eligibility": {("subsidy-eligibility", "subsidy.applications.v1")},
    "payout": {("subsidy-payout", "subsidy.decisions.v1"), ("subsidy-payout-payments", "subsidy.payments.v1")},
    "notify": {("subsidy-notify", "subsidy.decisions.v1"), ("subsidy-notify", "subsidy.payouts.v1")},
}
# Where each service's configuration names those groups (its ConfigMap; eligibility's is faust's app id).
GROUP_VARIABLES = {
    "payout": {"subsidy-payout": "SUBSIDY_PAYOUT_GROUP", "subsidy-payout-payments": "SUBSIDY_PAYOUT_PAYMENTS_GROUP"},
    "notify": {"subsidy-notify": "SUBSIDY_NOTIFY_GROUP"},
}


def kafka_triggers(scaled_object: dict) -> list[dict]:
    triggers = scaled_object["spec"]["triggers"]
    assert all(t["type"] == "kafka" for t in triggers), scaled_object["metadata"]["name"]
    return triggers


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_max_replicas_never_exceed_the_partitions_of_the_kafka_topics(overlay):
    docs = rendered(f"overlays/{overlay}")
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic")}
    scaled = of_kind(docs, "ScaledObject")
    assert {s["metadata"]["name"] for s in scaled} == {f"subsidy-{dns(s)}" for s in SCALED}
    for so in scaled:
        name, spec = so["metadata"]["name"], so["spec"]
        for trigger in kafka_triggers(so):
            topic = trigger["metadata"]["topic"]
            assert topic in partitions, f"{name}: {topic} is no KafkaTopic"
            assert spec["maxReplicaCount"] <= partitions[topic], f"{name}: {spec['maxReplicaCount']} > {topic}"
            # KEDA's own cap at the partition count stays on.
            assert trigger["metadata"]["allowIdleConsumers"] == "false", name
            assert int(trigger["metadata"]["lagThreshold"]) > 0, name
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name


def test_the_partition_check_does_fail_on_a_max_above_the_partitions():
    docs = rendered("overlays/prod")
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic")}
    so = named(docs, "ScaledObject", "subsidy-payout")
    too_many = partitions[so["spec"]["triggers"][0]["metadata"]["topic"]] + 1
    assert not all(too_many <= partitions[t["metadata"]["topic"]] for t in kafka_triggers(so))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_consumer_scales_on_its_own_groups_and_topics_and_nothing_else_owns_its_replicas(overlay):
    docs = rendered(f"overlays/{overlay}")
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")}
    for service, watched in SCALED.items():
        so = named(docs, "ScaledObject", f"subsidy-{dns(service)}")
        target = so["spec"]["scaleTargetRef"]["name"]
        assert target == deployment(docs, service)["metadata"]["name"]
        assert target not in hpa_targets, f"{target}: a second autoscaler"
        assert "replicas" not in deployment(docs, service)["spec"], f"{target}: KEDA owns replicas"
        triggers = kafka_triggers(so)
        assert {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers} == watched
        env = container_env(docs, deployment(docs, service))
        for group, variable in GROUP_VARIABLES.get(service, {}).items():
            assert env[variable] == group, f"{service}: {variable}"
        for t in triggers:
            host, _, port = t["metadata"]["bootstrapServers"].partition(":")
            assert host == "subsidy-kafka-kafka-bootstrap" and int(port) == KAFKA_PORT[overlay]
    from subsidy.services.eligibility.config import APP_ID  # faust's group is its app id

    assert next(iter(SCALED["eligibility"]))[0] == APP_ID


def test_prod_keda_speaks_sasl_ssl_as_a_user_that_may_only_describe():
    docs = rendered("overlays/prod")
    auth = named(docs, "TriggerAuthentication", "subsidy-keda-kafka")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": ("subsidy-keda-kafka", "username"),
        "password": ("subsidy-keda-kafka", "password"),
        "ca": ("subsidy-kafka-cluster-ca-cert", "ca.crt"),
    }
    for so in of_kind(docs, "ScaledObject"):
        for t in kafka_triggers(so):
            assert t["authenticationRef"] == {"name": "subsidy-keda-kafka"}
            assert (t["metadata"]["sasl"], t["metadata"]["tls"]) == ("scram_sha512", "enable")
    user = named(docs, "KafkaUser", "subsidy-keda")
    assert user["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]["name"] == "subsidy-keda-kafka"
    acls = user["spec"]["authorization"]["acls"]
    assert all(a["operations"] == ["Describe"] and a["resource"]["patternType"] == "literal" for a in acls)
    watched = {pair for pairs in SCALED.values() for pair in pairs}
    assert {a["resource"]["name"] for a in acls if a["resource"]["type"] == "topic"} == {t for _, t in watched}
    assert {a["resource"]["name"] for a in acls if a["resource"]["type"] == "group"} == {g for g, _ in watched}
    # KEDA's operator may reach the TLS listener.
    kafka = named(docs, "Kafka", "subsidy-kafka")
    tls = next(listener for listener in kafka["spec"]["kafka"]["listeners"] if listener["port"] == 9093)
    keda_pod = {"app": "keda-operator"}
    assert any(
        p.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "keda"}
        and selects(p["podSelector"], keda_pod)
        for p in tls["networkPolicyPeers"]
    )


def test_dev_keda_reads_the_plain_listener_without_credentials():
    docs = rendered("overlays/dev")
    assert not of_kind(docs, "TriggerAuthentication")
    for so in of_kind(docs, "ScaledObject"):
        assert all("authenticationRef" not in t and "sasl" not in t["metadata"] for t in kafka_triggers(so))


# ------------------------------------------------------------------ topics: one source of truth in prod


def test_prod_turns_runtime_topic_creation_off_for_every_service_and_dev_does_not():
    prod, dev = rendered("overlays/prod"), rendered("overlays/dev")
    for service in SERVICES:
        env = container_env(prod, deployment(prod, service))
        assert env.get(platform_topics.CREATION_VARIABLE) == "off", service
        assert platform_topics.creation_enabled(env) is False, service
        assert platform_topics.creation_enabled(container_env(dev, deployment(dev, service))) is True, service
    # The truth is then the KafkaTopic resources: every contract topic is one.
    from subsidy.contracts import topics as contract

    assert {t["spec"]["topicName"] for t in of_kind(prod, "KafkaTopic")} == {s.name for s in contract.ALL}


# ------------------------------------------------------------------ the cap reconciliation CronJob


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cap_reconciliation_cronjob_runs_the_reconcile_command_locked_down(overlay):
    docs = rendered(f"overlays/{overlay}")
    cron = named(docs, "CronJob", "subsidy-cap-reconcile")
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "subsidy.services.payout", "reconcile"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    env = {e["name"]: e for e in container["env"]}
    assert "valueFrom" in env["SUBSIDY_PAYOUT_DATABASE_URL"]
    if overlay == "prod":
        assert env["SUBSIDY_PAYOUT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "subsidy-pg-service"
        assert env["PGSSLMODE"]["value"] == "verify-full"
        assert env["PGSSLROOTCERT"]["value"].startswith("/etc/subsidy/pg-ca/")
    # Its pods may reach PostgreSQL (both ends of the NetworkPolicies) and are not a Service's endpoints.
    labels = job["template"]["metadata"]["labels"]
    pg = named(docs, "NetworkPolicy", "subsidy-pg")
    assert any(
        selects(peer["podSelector"], labels)
        for rule in pg["spec"]["ingress"]
        for peer in rule["from"]
        if "podSelector" in peer
    )
    own = named(docs, "NetworkPolicy", "subsidy-cap-reconcile")
    assert selects(own["spec"]["podSelector"], labels)
    assert any(
        peer.get("podSelector", {}).get("matchLabels") == {"cnpg.io/cluster": "subsidy-pg"}
        for rule in own["spec"]["egress"]
        for peer in rule["to"]
    )
    for service in of_kind(docs, "Service"):
        assert not selects({"matchLabels": service["spec"].get("selector", {})}, labels), service["metadata"]["name"]


# ------------------------------------------------------------------ gRPC balancing across intake pods


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_intake_has_a_headless_service_for_client_side_round_robin(overlay):
    docs = rendered(f"overlays/{overlay}")
    headless = named(docs, "Service", "subsidy-intake-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"].get("publishNotReadyAddresses", False) is False
    pod_labels = deployment(docs, "intake")["spec"]["template"]["metadata"]["labels"]
    assert selects({"matchLabels": headless["spec"]["selector"]}, pod_labels)
    assert [(p["name"], p["port"]) for p in headless["spec"]["ports"]] == [("grpc", 50051)]
    for monitor in of_kind(docs, "ServiceMonitor"):
        assert not selects(monitor["spec"]["selector"], headless["metadata"]["labels"]), monitor["metadata"]["name"]
    if overlay == "prod":  # TLS: the name a dns:/// client verifies is in intake's certificate
        certificate = named(docs, "Certificate", "subsidy-intake-tls")
        assert {"subsidy-intake-headless", "subsidy-intake-headless.subsidy.svc"} <= set(
            certificate["spec"]["dnsNames"]
        )
