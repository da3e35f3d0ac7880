"""The rendered manifests are secure in every overlay but dev (issue 16):
gRPC TLS from cert-manager Certificates, JWT authentication with keys from a
Secret, no reflection, Kafka SASL_SSL with one KafkaUser per service and ACLs
limited to what each reads and writes, PostgreSQL sslmode=verify-full with
CloudNativePG's CA. Checked on the rendered YAML with the services' own
settings code (SecurityConfig, KafkaSecurity, check_exposure), so a variable
the code would not read as meant fails here."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from subsidy.contracts import topics
from subsidy.platform import topics as platform_topics
from subsidy.platform.security.config import SecurityConfig, SecurityConfigError, check_exposure
from subsidy.platform.security.kafka import KafkaSecurity
from tests.ops.test_k8s import (
    GRPC_PORT,
    K8S,
    SERVICES,
    USES_DATABASE,
    container_env,
    deployment,
    dns,
    named,
    of_kind,
    rendered,
)

OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
SECURE_OVERLAYS = [o for o in OVERLAYS if o != "dev"]
NAMESPACE = {"prod": "subsidy"}


def secret_mounts(docs: list[dict], pod: dict, container: dict) -> dict[str, str]:
    """{mount path: Secret name} of the container's Secret volumes."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            out[mount["mountPath"]] = volume["secret"]["secretName"]
    return out


def secret_of_file(mounts: dict[str, str], path: str) -> str:
    parent = str(PurePosixPath(path).parent)
    assert parent in mounts, f"{path} is not in a mounted Secret ({sorted(mounts)})"
    return mounts[parent]


def env_items(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_dev_is_the_only_overlay_without_the_secure_component():
    assert "dev" in OVERLAYS and SECURE_OVERLAYS, OVERLAYS
    for overlay in OVERLAYS:
        text = (K8S / "overlays" / overlay / "kustomization.yaml").read_text()
        assert ("../../components/secure" in text) == (overlay != "dev"), overlay


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_grpc_is_tls_with_jwt_authentication_and_no_reflection(overlay):
    docs = rendered(f"overlays/{overlay}")
    certificates = {c["spec"]["secretName"]: c for c in of_kind(docs, "Certificate")}
    issuers = {i["metadata"]["name"]: i for i in of_kind(docs, "Issuer")}
    for service in SERVICES:
        dep = deployment(docs, service)
        pod = dep["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = container_env(docs, dep)
        config = SecurityConfig.from_env(service, env)
        assert config.tls and config.auth_mode == "jwt" and not config.reflection_enabled, service
        assert not config.dev_mode and "SUBSIDY_DEV_MODE" not in env, service
        check_exposure(config, env[f"SUBSIDY_{service.upper()}_GRPC_ADDRESS"])  # what the server does at start
        assert config.issuer and config.audience, service
        mounts = secret_mounts(docs, pod, container)
        # The certificate: cert-manager's, for the Service's DNS names, from the CA issuer.
        tls_secret = secret_of_file(mounts, config.tls_cert_file)
        assert secret_of_file(mounts, config.tls_key_file) == tls_secret
        certificate = certificates[tls_secret]
        names = set(certificate["spec"]["dnsNames"])
        svc = f"subsidy-{dns(service)}"
        assert {svc, f"{svc}.{NAMESPACE[overlay]}.svc"} <= names, service
        assert "server auth" in certificate["spec"]["usages"]
        issuer = issuers[certificate["spec"]["issuerRef"]["name"]]
        assert "ca" in issuer["spec"], "service certificates come from the CA issuer"
        assert {PurePosixPath(config.tls_cert_file).name, PurePosixPath(config.tls_key_file).name} == {
            "tls.crt",
            "tls.key",
        }
        # The JWT verification keys: a Secret made out of band (never in git).
        assert secret_of_file(mounts, config.jwks_file) == "subsidy-jwks"
        assert not [s for s in of_kind(docs, "Secret") if s["metadata"]["name"].startswith("subsidy-jwks")]
        assert GRPC_PORT[service] in {p["containerPort"] for p in container["ports"]}


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_kafka_is_sasl_ssl_as_one_user_per_service(overlay):
    docs = rendered(f"overlays/{overlay}")
    kafka = named(docs, "Kafka", "subsidy-kafka")
    listeners = kafka["spec"]["kafka"]["listeners"]
    # Every listener: TLS and SCRAM; no plaintext, no anonymous listener left.
    for listener in listeners:
        assert listener["tls"] is True, listener["name"]
        assert listener.get("authentication", {}).get("type") == "scram-sha-512", listener["name"]
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert not kafka["spec"]["kafka"]["authorization"].get("superUsers")
    assert "userOperator" in kafka["spec"]["entityOperator"]
    users = {u["metadata"]["name"]: u for u in of_kind(docs, "KafkaUser")}
    internal = {item["port"] for item in listeners if item["type"] == "internal"}
    for service in SERVICES:
        dep = deployment(docs, service)
        pod = dep["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = container_env(docs, dep)
        security = KafkaSecurity.from_env(env)
        assert (security.protocol, security.mechanism) == ("SASL_SSL", "SCRAM-SHA-512"), service
        assert security.check_hostname, service
        host, _, port = env["KAFKA_BOOTSTRAP_SERVERS"].partition(":")
        assert host == "subsidy-kafka-kafka-bootstrap" and int(port) in internal
        user = users[security.username]
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "subsidy-kafka"
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert security.username == f"subsidy-{dns(service)}", "one user per service"
        password = env_items(container)["SUBSIDY_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": security.username, "key": "password"}  # the User Operator's Secret
        mounts = secret_mounts(docs, pod, container)
        assert secret_of_file(mounts, security.cafile) == "subsidy-kafka-cluster-ca-cert"


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_postgresql_is_verify_full_with_the_cluster_ca(overlay):
    docs = rendered(f"overlays/{overlay}")
    pods = [(f"deployment {s}", deployment(docs, s)) for s in sorted(USES_DATABASE)]
    pods += [(f"job {j['metadata']['name']}", j) for j in of_kind(docs, "Job")]
    assert len(pods) == 2 * len(USES_DATABASE)
    for what, obj in pods:
        pod = obj["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {k: v.get("value") for k, v in env_items(container).items()}
        assert env.get("PGSSLMODE") == "verify-full", what
        mounts = secret_mounts(docs, pod, container)
        assert secret_of_file(mounts, env["PGSSLROOTCERT"]) == "subsidy-pg-ca", what
        # The URL comes from CloudNativePG's Secret, which sets no sslmode of its own.
        urls = [e for e in env_items(container).values() if e["name"].endswith("_DATABASE_URL")]
        assert urls and all("valueFrom" in e for e in urls), what


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_every_deployment_would_start_only_secure(overlay):
    """The refusal the code applies at start, on each Deployment's environment."""
    docs = rendered(f"overlays/{overlay}")
    for service in SERVICES:
        env = container_env(docs, deployment(docs, service))
        check_exposure(SecurityConfig.from_env(service, env), env[f"SUBSIDY_{service.upper()}_GRPC_ADDRESS"])


def test_base_alone_and_dev_without_its_flag_would_refuse_to_start():
    """Fail closed: base without components/secure and without SUBSIDY_DEV_MODE
    does not serve plaintext; dev serves plaintext only because it says so."""
    for target in ("base", "overlays/dev"):
        docs = rendered(target)
        for service in SERVICES:
            env = container_env(docs, deployment(docs, service))
            address = env[f"SUBSIDY_{service.upper()}_GRPC_ADDRESS"]
            config = SecurityConfig.from_env(service, env)
            assert not config.tls and config.auth_mode == "off"
            if target == "base":
                with pytest.raises(SecurityConfigError):
                    check_exposure(config, address)
            else:
                assert env["SUBSIDY_DEV_MODE"] == "1"
                check_exposure(config, address)
                env.pop("SUBSIDY_DEV_MODE")
                with pytest.raises(SecurityConfigError):
                    check_exposure(SecurityConfig.from_env(service, env), address)


# ------------------------------------------------------------------ Kafka ACLs

T = topics
# What each principal may do on each topic (docs/security.md#kafka), besides
# Describe on the contract's topics (ensure_all checks them at start, see
# components/secure/kafka-users.yaml) and its consumer groups.
ACCESS = {
    "subsidy-intake": {
        T.APPLICATIONS.name: {"Write"},
        T.DECISIONS.name: {"Read"},
        T.PAYOUTS.name: {"Read"},
        T.DECISIONS_DLQ.name: {"Write"},
        T.PAYOUTS_DLQ.name: {"Write"},
        T.FIRMS.name: {"Read"},
        T.FIRMS_DLQ.name: {"Write"},
        T.PROPOSALS.name: {"Write"},
    },
    "subsidy-eligibility": {
        T.APPLICATIONS.name: {"Read"},
        T.DECISIONS.name: {"Write"},
        T.SHADOW_DECISIONS.name: {"Write"},  # a candidate policy's decisions, for comparison only
        T.POLICY_ADOPTIONS.name: {"Read", "Write"},  # the adoption trail every instance reads (ADR 0018)
        T.APPLICATIONS_DLQ.name: {"Write"},
    },
    "subsidy-payout": {
        T.DECISIONS.name: {"Read"},
        T.PAYMENTS.name: {"Read"},
        T.NOTICES.name: {"Read"},
        T.PAYOUTS.name: {"Write"},
        T.DECISIONS_DLQ.name: {"Write"},
        T.PAYMENTS_DLQ.name: {"Write"},
        T.NOTICES_DLQ.name: {"Write"},
        T.FIRMS.name: {"Read"},
        T.FIRMS_DLQ.name: {"Write"},
    },
    "subsidy-notify": {
        T.DECISIONS.name: {"Read"},
        T.PAYOUTS.name: {"Read"},
        T.NOTICES.name: {"Read"},
        T.REVIEWS.name: {"Read"},
        T.PROPOSALS.name: {"Read"},
        T.NOTIFICATIONS_DLQ.name: {"Write"},
    },
    "subsidy-registry-sync": {
        T.FIRMS.name: {"Write"},
        T.FIRMS_DLQ.name: {"Write"},
    },
    "subsidy-review": {
        T.DECISIONS.name: {"Read", "Write"},  # reviewed decisions replace computed ones
        T.PAYOUTS.name: {"Read"},
        T.APPLICATIONS.name: {"Read"},
        T.REVIEWS.name: {"Write"},
        T.NOTICES.name: {"Write"},
        T.DECISIONS_DLQ.name: {"Write"},
        T.PAYOUTS_DLQ.name: {"Write"},
        T.APPLICATIONS_DLQ.name: {"Write"},
    },
    # Reads every DLQ (and dead-letters back onto it); replays to the contract
    # topics but the two money topics (ADR 0019, "Kafka access").
    "subsidy-operations": {
        **{t.name: {"Read", "Write"} for t in T.ALL if t.name.endswith(".dlq")},
        **{
            t.name: {"Write"}
            for t in T.ALL
            if not t.name.endswith(".dlq") and t.name not in (T.PAYMENTS.name, T.PAYOUTS.name, T.POLICY_ADOPTIONS.name)
        },
    },
}
GROUPS = {
    "subsidy-intake": {"subsidy-intake-projection", "subsidy-intake-payouts", "subsidy-intake-firms"},
    "subsidy-eligibility": {"subsidy-eligibility"},
    "subsidy-payout": {"subsidy-payout", "subsidy-payout-payments", "subsidy-payout-notices", "subsidy-payout-firms"},
    "subsidy-notify": {"subsidy-notify"},
    "subsidy-review": {"subsidy-review", "subsidy-review-payouts", "subsidy-review-applications"},
    "subsidy-registry-sync": set(),
    "subsidy-operations": {f"subsidy-operations-{t.name}" for t in T.ALL if t.name.endswith(".dlq")},
}
CONTRACT = {t.name for t in T.ALL}


def acl_table(user: dict) -> tuple[dict[str, set[str]], set[str], list[dict]]:
    """({literal topic: its operations}, {literal groups read}, other ACLs)."""
    topics_: dict[str, set[str]] = {}
    groups: set[str] = set()
    other = []
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert acl.get("type", "allow") == "allow"
        pattern = resource.get("patternType", "literal")
        if resource["type"] == "topic" and pattern == "literal":
            topics_.setdefault(resource["name"], set()).update(acl["operations"])
        elif resource["type"] == "group" and pattern == "literal" and acl["operations"] == ["Read"]:
            groups.add(resource["name"])
        else:
            other.append(acl)
    return topics_, groups, other


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_kafka_acls_give_each_service_what_it_reads_and_writes_only(overlay):
    docs = rendered(f"overlays/{overlay}")
    users = {u["metadata"]["name"]: u for u in of_kind(docs, "KafkaUser")}
    for name, expected in ACCESS.items():
        topics_, groups, other = acl_table(users[name])
        assert groups == GROUPS[name], name
        for topic, operations in topics_.items():
            assert topic in CONTRACT, f"{name}: ACL on {topic}, not a contract topic"
            assert "Describe" in operations, f"{name} on {topic}: Describe (ensure_all lists every contract topic)"
            assert operations - {"Describe"} == expected.get(topic, set()), f"{name} on {topic}"
            assert "All" not in operations
        assert set(topics_) == CONTRACT, f"{name}: Describe on every contract topic (ensure_all)"
        if name == "subsidy-eligibility":  # faust's own topics, under its app id
            assert [(a["resource"]["name"], a["resource"]["patternType"]) for a in other] == [
                ("subsidy-eligibility-", "prefix")
            ]
        else:
            assert not other, f"{name}: {other}"
    # Only finance writes payment confirmations; only payout writes the payout events.
    for name, user in users.items():
        topics_, _, other = acl_table(user)
        assert not any(a["resource"]["name"] in ("*", "") for a in other), name
        if "Write" in topics_.get(T.PAYMENTS.name, set()):
            assert name == "finance", f"{name} may write {T.PAYMENTS.name}"
        if "Write" in topics_.get(T.PAYOUTS.name, set()):
            assert name == "subsidy-payout", f"{name} may write {T.PAYOUTS.name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_kafka_topics_create_topics_where_acls_hold(overlay):
    """One source of truth for topics wherever the KafkaUsers' ACLs hold (every
    overlay with components/secure): every service runs with topic creation off
    (as subsidy.platform.topics reads it) and no user may create a topic, neither
    by Create on a topic (literal or prefix) nor by Create on the cluster. Dev
    has no ACLs and no users, and creates its topics at start."""
    docs = rendered(f"overlays/{overlay}")
    users = of_kind(docs, "KafkaUser")
    kafka = named(docs, "Kafka", "subsidy-kafka")["spec"]["kafka"]
    creation = {s: platform_topics.creation_enabled(container_env(docs, deployment(docs, s))) for s in SERVICES}
    if overlay in SECURE_OVERLAYS:
        assert users and kafka["authorization"]["type"] == "simple"
        assert not any(creation.values()), f"topic creation on in {overlay}: {creation}"
        for user in users:
            for acl in user["spec"]["authorization"]["acls"]:
                if acl["resource"]["type"] in ("topic", "cluster"):
                    denied = {"Create", "All"} & set(acl["operations"])
                    assert not denied, f"{user['metadata']['name']} may create topics: {acl}"
    else:
        assert not users and "authorization" not in kafka, overlay
        assert all(creation.values()), f"{overlay} creates its topics at start: {creation}"


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_the_consumer_groups_in_the_acls_are_the_ones_configured(overlay):
    docs = rendered(f"overlays/{overlay}")
    for service, variables in {
        "intake": ("SUBSIDY_INTAKE_PROJECTION_GROUP",),
        "payout": ("SUBSIDY_PAYOUT_GROUP", "SUBSIDY_PAYOUT_PAYMENTS_GROUP"),
        "notify": ("SUBSIDY_NOTIFY_GROUP",),
        "review": ("SUBSIDY_REVIEW_GROUP", "SUBSIDY_REVIEW_PAYOUTS_GROUP", "SUBSIDY_REVIEW_APPLICATIONS_GROUP"),
    }.items():
        env = container_env(docs, deployment(docs, service))
        for variable in variables:
            assert env[variable] in GROUPS[f"subsidy-{dns(service)}"], variable
    # operations: one group per DLQ topic, "<prefix>-<topic>" (adapters/kafka.py).
    from subsidy.services.operations.model import DLQ_TOPICS

    prefix = container_env(docs, deployment(docs, "operations"))["SUBSIDY_OPERATIONS_GROUP_PREFIX"]
    assert {f"{prefix}-{topic}" for topic in DLQ_TOPICS} == GROUPS["subsidy-operations"]


# ------------------------------------------------------------------ finance


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_finance_reads_payouts_and_writes_payments_only(overlay):
    docs = rendered(f"overlays/{overlay}")
    finance = named(docs, "KafkaUser", "finance")
    assert finance["spec"]["authentication"]["type"] == "scram-sha-512"
    acls = {
        (a["resource"]["type"], a["resource"]["name"], a["resource"].get("patternType", "literal")): set(
            a["operations"]
        )
        for a in finance["spec"]["authorization"]["acls"]
    }
    assert acls == {
        ("topic", T.PAYOUTS.name, "literal"): {"Read", "Describe"},
        ("topic", T.PAYMENTS.name, "literal"): {"Write", "Describe"},
        ("group", "finance-", "prefix"): {"Read"},
    }
    assert len(finance["spec"]["authorization"]["acls"]) == 3


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_finance_has_its_own_listener_reachable_from_the_finance_network_only(overlay):
    import ipaddress

    docs = rendered(f"overlays/{overlay}")
    listeners = {item["name"]: item for item in named(docs, "Kafka", "subsidy-kafka")["spec"]["kafka"]["listeners"]}
    finance = listeners.pop("finance")
    assert finance["type"] in ("loadbalancer", "nodeport", "ingress", "route"), "reachable from outside the cluster"
    assert finance["tls"] is True and finance["authentication"]["type"] == "scram-sha-512"
    ranges = finance["configuration"]["loadBalancerSourceRanges"]
    peers = [p["ipBlock"]["cidr"] for p in finance["networkPolicyPeers"]]
    assert ranges and sorted(ranges) == sorted(peers), "the load balancer and the NetworkPolicy admit the same network"
    assert all(len(p) == 1 for p in finance["networkPolicyPeers"]), "ipBlock peers only"
    for cidr in ranges:
        network = ipaddress.ip_network(cidr)
        assert network.is_private and network.prefixlen >= 8, cidr
    # The in-cluster listener admits the subsidy pods (and KEDA's operator, which
    # reads the consumer lag as subsidy-keda, Describe only), not the finance network.
    (internal,) = listeners.values()
    assert internal["networkPolicyPeers"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "subsidy"}}},
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
            "podSelector": {"matchLabels": {"app": "keda-operator"}},
        },
    ]
    for service in SERVICES:
        bootstrap = container_env(docs, deployment(docs, service))["KAFKA_BOOTSTRAP_SERVERS"]
        assert bootstrap.endswith(f":{internal['port']}"), service


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_the_ops_user_reads_dead_letters_and_writes_nothing(overlay):
    docs = rendered(f"overlays/{overlay}")
    ops = named(docs, "KafkaUser", "subsidy-ops")
    topics_, groups, other = acl_table(ops)
    assert groups == {"subsidy-ops-dlq"} and not other
    assert set(topics_) == {t.name for t in T.ALL if t.name.endswith(".dlq")}
    assert all(operations == {"Read", "Describe"} for operations in topics_.values())


def topics_named_in_code(service: str) -> set[str]:
    """The contract topics a service's code names (topics.X), its platform
    helpers aside: a heuristic that catches a new consumer or producer whose
    ACL was forgotten (the broker would refuse it in prod only)."""
    import re as _re

    by_constant = {name: spec.name for name, spec in vars(T).items() if isinstance(spec, T.TopicSpec)}
    root = K8S.parents[1] / "subsidy" / "services" / service
    used = set()
    for path in root.rglob("*.py"):
        for constant in _re.findall(r"topics\.([A-Z_]+)\b", path.read_text()):  # topics. or contract_topics.
            if constant in by_constant:
                used.add(by_constant[constant])
    return used


# Topics a service's code names only to decode a stored value or to refuse
# it (operations' decoder table and NEVER_REPLAYED, model.py), never to read or
# write: the money topics and the adoption trail, which operations may not
# replay to (ADR 0019, "Kafka access").
DECODED_ONLY = {"operations": {T.PAYMENTS.name, T.PAYOUTS.name, T.POLICY_ADOPTIONS.name}}


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_every_topic_a_service_names_in_its_code_is_in_its_acls(overlay):
    docs = rendered(f"overlays/{overlay}")
    users = {u["metadata"]["name"]: u for u in of_kind(docs, "KafkaUser")}
    for service in SERVICES:
        topics_, _, _ = acl_table(users[f"subsidy-{dns(service)}"])
        granted = {t for t, ops in topics_.items() if ops - {"Describe"}}
        missing = topics_named_in_code(service) - granted - DECODED_ONLY.get(service, set())
        assert not missing, (
            f"subsidy-{dns(service)} names {sorted(missing)} in its code but may neither read nor write them"
        )
