"""deploy/k8s: render every overlay with kustomize and check the result offline.

- core kinds against the Kubernetes OpenAPI schemas shipped by
  kubernetes-validate, in strict mode (unknown fields fail), for the oldest
  and the newest Kubernetes version we support;
- custom resources (Strimzi, CloudNativePG, Prometheus Operator) against the
  vendored CRD schema subsets in deploy/k8s/crd-schemas/, strictly;
- the conventions: non-root, read-only root filesystem, no capabilities,
  requests and limits, gRPC probes on the health names the code registers,
  a schema-migration Job per service with a database, ordered before the
  Deployments (Argo CD waves),
  topics as subsidy/contracts/topics.py declares them, the policy files all shipped,
  every environment variable one the code reads, no secret in the base,
  a deterministic render.

Every overlay renders with kustomize's DEFAULT options (the load
restrictor on, as `kubectl kustomize`, `kubectl apply -k` and Argo CD use
it): the files the manifests ship are copies inside deploy/k8s kept by
`make k8s-sync` (deploy/k8s/sync-files.py), and a test fails when they drift
from their source. kubeconform validates every overlay strictly too, as a
second, independent validator.

kustomize comes from subsidy_dev.tools, kubeconform from tests/ops/kubeconform.py
(both built with `go install` on first use, then cached); kubernetes-validate
and jsonschema are test extras.
"""

from __future__ import annotations

import copy
import functools
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from subsidy.contracts import topics
from subsidy.platform.grpc.server import LIVENESS
from subsidy_dev import tools
from tests.ops import kubeconform

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRD_SCHEMAS = K8S / "crd-schemas"
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes we support (lifecycle.preStop.sleep is on by default
# from 1.30) and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CORE_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"}

SERVICES = ("intake", "eligibility", "payout", "notify", "review", "registry_sync", "operations")
# The staff console: a web app (HTTP behind the Ingress), no Kafka, no database;
# its own checks are in tests/ops/test_k8s_console.py, the generic ones here.
WEB = ("console",)
GRPC_PORT = {
    "intake": 50051,
    "eligibility": 50052,
    "payout": 50053,
    "notify": 50054,
    "review": 50055,
    "registry_sync": 50057,
    "operations": 50058,
}
# The plaintext health-only port (SUBSIDY_HEALTH_ADDRESS) the probes ask.
HEALTH_PORT = 8081
# The Kafka listener each overlay's clients use: plaintext in dev, TLS + SCRAM elsewhere.
KAFKA_PORT = {"dev": 9092, "prod": 9093}
METRICS_PORT = {
    "intake": 9464,
    "eligibility": 9102,
    "payout": 9465,
    "notify": 9467,
    "review": 9468,
    "registry_sync": 9470,
    "operations": 9480,
    "console": 9469,
}
USES_DATABASE = {"intake", "payout", "notify", "review", "registry_sync", "operations"}


def dns(service: str) -> str:
    """The Kubernetes name of a service (registry_sync: registry-sync)."""
    return service.replace("_", "-")


# Consumers of 6-partition topics: more replicas than partitions stay idle.
PARTITION_BOUND = {
    "eligibility": topics.APPLICATIONS.partitions,
    "payout": max(topics.DECISIONS.partitions, topics.PAYMENTS.partitions),
}


def health_names() -> dict[str, str]:
    """The service names each bootstrap sets SERVING (besides "")."""
    from subsidy.services.eligibility.adapters.grpc import SERVICE_NAME as eligibility
    from subsidy.services.intake.adapters.grpc import SERVICE_NAME as intake
    from subsidy.services.notify.bootstrap import SERVICE_NAME as notify
    from subsidy.services.operations.adapters.grpc import SERVICE_NAME as operations
    from subsidy.services.payout.adapters.grpc import SERVICE_NAME as payout
    from subsidy.services.registry_sync.bootstrap import SERVICE_NAME as registry_sync
    from subsidy.services.review.adapters.grpc import SERVICE_NAME as review

    return {
        "intake": intake,
        "eligibility": eligibility,
        "payout": payout,
        "notify": notify,
        "review": review,
        "registry_sync": registry_sync,
        "operations": operations,
    }


# ------------------------------------------------------------------ rendering


@functools.cache
def kustomize_binary() -> str:
    try:
        return str(tools.kustomize())
    except tools.ToolUnavailable as exc:  # a fresh machine without Go: say what is missing
        pytest.fail(f"kustomize is not available: {exc}")


def build(path: Path) -> str:
    """`kustomize build` with the default options (what `kubectl kustomize` does)."""
    result = subprocess.run(
        [kustomize_binary(), "build", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kustomize build {path.relative_to(ROOT)} failed:\n{result.stderr}"
    return result.stdout


@functools.cache
def rendered_text(target: str) -> str:
    return build(K8S / target)


@functools.cache
def _rendered(target: str) -> tuple[dict, ...]:
    return tuple(d for d in yaml.safe_load_all(rendered_text(target)) if d)


def rendered(target: str) -> list[dict]:
    return copy.deepcopy(list(_rendered(target)))


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def generated(docs: list[dict], kind: str, name: str) -> dict:
    """A ConfigMap/Secret from a generator: its name carries a hash suffix."""
    found = [
        d for d in of_kind(docs, kind) if re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", d["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one generated {kind} {name}-<hash>, found {len(found)}"
    return found[0]


def deployment(docs: list[dict], service: str) -> dict:
    return named(docs, "Deployment", f"subsidy-{dns(service)}")


def container_env(docs: list[dict], dep: dict) -> dict[str, str]:
    """The environment the container gets from its ConfigMaps (envFrom) and env values."""
    by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    env: dict[str, str] = {}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        obj = by_name.get(ref["name"])
        if obj is None:  # a Secret created out of band (prod)
            continue
        env.update(obj.get("data") or {})
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "<from " + next(iter(item.get("valueFrom", {"?": 0}))) + ">")
    return env


# ------------------------------------------------------------------ schemas


def strict(schema):
    """Reject unknown fields as the API server's strict field validation does:
    every object schema with properties gets additionalProperties: false,
    unless it preserves unknown fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and isinstance(out["properties"], dict)
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    group, _, version = api_version.rpartition("/")
    path = CRD_SCHEMAS / f"{group}_{version}_{kind.lower()}.yaml"
    assert path.exists(), f"no vendored CRD schema for {api_version} {kind}: add {path.relative_to(ROOT)}"
    schema = strict(yaml.safe_load(path.read_text()))
    # The schema must be a schema (no format checker: Kubernetes patterns are
    # Go/RE2 regexes such as "^(?i)...", not ECMA-262 ones).
    jsonschema.Draft7Validator(jsonschema.Draft7Validator.META_SCHEMA).validate(schema)
    return jsonschema.Draft7Validator(schema)


def crd_errors(doc: dict) -> list[str]:
    validator = crd_validator(doc["apiVersion"], doc["kind"])
    return [
        f"{doc['kind']} {doc['metadata']['name']}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def core_errors(doc: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(map(str, exc.path)) or "(root)"
        return [f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {path}: {exc.message}"]
    return []


# ------------------------------------------------------------------ render and validate


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_render_is_deterministic(overlay):
    first = rendered_text(f"overlays/{overlay}")
    again = build(K8S / "overlays" / overlay)
    assert first == again
    assert first.strip(), "empty render"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_resources_are_valid_strictly(overlay, version):
    docs = [d for d in rendered(f"overlays/{overlay}") if d["apiVersion"] in CORE_GROUPS]
    assert {d["kind"] for d in docs} >= {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Job",
        "Service",
        "ServiceAccount",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    }
    errors = [e for d in docs for e in core_errors(d, version)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_their_crd_schemas(overlay):
    docs = [d for d in rendered(f"overlays/{overlay}") if d["apiVersion"] not in CORE_GROUPS]
    secure = (
        {"KafkaUser", "Certificate", "Issuer", "ObjectStore", "ScheduledBackup", "TriggerAuthentication"}
        if overlay != "dev"
        else set()
    )
    assert {d["kind"] for d in docs} == {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "Cluster",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ScaledObject",
        *secure,
    }
    errors = [e for d in docs for e in crd_errors(d)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubeconform_strict(overlay, version, tmp_path):
    try:
        kubeconform.binary()
    except kubeconform.Unavailable as exc:
        pytest.fail(f"kubeconform is not available: {exc}")
    text = rendered_text(f"overlays/{overlay}")
    result = kubeconform.validate(text, version, tmp_path, CRD_SCHEMAS)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(_rendered(f"overlays/{overlay}"))
    assert f"{count} resources found in 1 file - Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout


def test_kubeconform_does_reject_unknown_fields(tmp_path):
    """Guard against a kubeconform run that passes everything (a schema it
    cannot find, a CRD schema left open)."""
    text = rendered_text("overlays/prod")
    for good, bad in (
        ("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"),
        ("\n  partitions: 6\n", "\n  partition: 6\n"),
    ):
        assert good in text
        work = tmp_path / bad.strip().split(":")[0]
        result = kubeconform.validate(text.replace(good, bad, 1), KUBERNETES_VERSIONS[0], work, CRD_SCHEMAS)
        assert result.returncode == 1, result.stdout
        assert "additional properties" in result.stdout and "Invalid: 1," in result.stdout


def test_the_copies_in_deploy_match_their_sources():
    """policy/ and demo/registry.json are the sources; deploy/k8s ships copies
    (the default load restrictor refuses files outside the kustomization)."""
    result = subprocess.run(
        [sys.executable, str(K8S / "sync-files.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"the copies drifted (run `make k8s-sync`):\n{result.stderr}"


def test_the_drift_check_catches_a_change_a_new_file_and_a_stale_copy(tmp_path):
    import shutil

    for part in ("policy", "demo", "deploy/k8s", "deploy/grafana"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    script = [sys.executable, str(K8S / "sync-files.py"), "--root", str(tmp_path)]

    def check() -> str:
        result = subprocess.run([*script, "--check"], capture_output=True, text=True, timeout=60)
        return result.stderr if result.returncode else ""

    assert check() == ""
    clause = tmp_path / "policy" / "clauses" / "2.yaml"
    clause.write_text(clause.read_text() + "\n# changed\n")
    (tmp_path / "policy" / "clauses" / "99.yaml").write_text("new: clause\n")
    (tmp_path / "deploy/k8s/base/policy/directory/1999.yaml").write_text("old: year\n")
    (tmp_path / "demo" / "registry.json").write_text("{}")
    problems = check()
    for expected in (
        "differs: deploy/k8s/base/policy/clauses/2.yaml",
        "missing: deploy/k8s/base/policy/clauses/99.yaml",
        "stale: deploy/k8s/base/policy/directory/1999.yaml",
        "differs: deploy/k8s/overlays/dev/registry.json",
        "differs: deploy/k8s/base/policy/kustomization.yaml",
    ):
        assert expected in problems
    assert subprocess.run(script, timeout=60).returncode == 0  # make k8s-sync
    assert check() == ""
    generated = (tmp_path / "deploy/k8s/base/policy/kustomization.yaml").read_text()
    assert "99.yaml=clauses/99.yaml" in generated and "1999" not in generated


def test_the_validators_do_reject_unknown_and_wrong_fields():
    """Guard against validation that passes everything."""
    docs = rendered("overlays/prod")
    dep = deployment(docs, "intake")
    dep["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True  # misspelt
    assert core_errors(dep, KUBERNETES_VERSIONS[-1])
    topic = of_kind(docs, "KafkaTopic")[0]
    topic["spec"]["partition"] = 6  # misspelt
    assert crd_errors(topic)
    pool = named(docs, "KafkaNodePool", "dual-role")
    pool["spec"]["roles"] = ["zookeeper"]
    assert crd_errors(pool)
    rules = of_kind(docs, "PrometheusRule")[0]
    rules["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    assert crd_errors(rules)


def test_every_name_is_a_dns_subdomain():
    pattern = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    for overlay in OVERLAYS:
        for d in rendered(f"overlays/{overlay}"):
            name = d["metadata"]["name"]
            assert pattern.match(name) and len(name) <= 253, f"{d['kind']} {name}"


# ------------------------------------------------------------------ workloads


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down(overlay):
    docs = rendered(f"overlays/{overlay}")
    deployments = of_kind(docs, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {f"subsidy-{dns(s)}" for s in SERVICES + WEB}
    for dep in deployments + of_kind(docs, "Job"):
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, name
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert pod_sc.get("runAsUser", 0) != 0 and pod_sc.get("runAsGroup", 0) != 0, name
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert not sc.get("capabilities", {}).get("add"), where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(bound, {})), f"{where}: {bound}"
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: no writable /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_probes_use_the_health_names_the_code_registers(overlay):
    docs = rendered(f"overlays/{overlay}")
    names = health_names()
    for service in SERVICES:
        dep = deployment(docs, service)
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", f"subsidy.services.{service}"]
        expected = {
            # Ready: the name the service turns NOT_SERVING when Kafka or the database fails.
            "readinessProbe": names[service],
            # Alive and started: the process answers, whatever Kafka and the database do.
            "livenessProbe": LIVENESS,
            "startupProbe": LIVENESS,
        }
        for probe, name in expected.items():
            grpc = container.get(probe, {}).get("grpc")
            assert grpc, f"{service}: {probe} is not a gRPC probe"
            assert grpc == {"port": HEALTH_PORT, "service": name}, f"{service}: {probe}"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": GRPC_PORT[service], "metrics": METRICS_PORT[service], "health": HEALTH_PORT}
        env = container_env(docs, dep)
        assert env["SUBSIDY_HEALTH_ADDRESS"] == f"0.0.0.0:{HEALTH_PORT}"
        # The Service does not expose the plaintext health port.
        assert HEALTH_PORT not in {
            p["port"] for p in named(docs, "Service", f"subsidy-{dns(service)}")["spec"]["ports"]
        }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_addresses_bind_all_interfaces_on_the_declared_ports(overlay):
    docs = rendered(f"overlays/{overlay}")
    for service in SERVICES:
        env = container_env(docs, deployment(docs, service))
        prefix = f"SUBSIDY_{service.upper()}"
        assert env[f"{prefix}_GRPC_ADDRESS"] == f"0.0.0.0:{GRPC_PORT[service]}"
        if service == "eligibility":
            assert env[f"{prefix}_METRICS_ADDRESS"] == "0.0.0.0"
            assert env[f"{prefix}_METRICS_PORT"] == str(METRICS_PORT[service])
        else:
            assert env[f"{prefix}_METRICS_ADDRESS"] == f"0.0.0.0:{METRICS_PORT[service]}"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"subsidy-kafka-kafka-bootstrap:{KAFKA_PORT[overlay]}"
        if service in USES_DATABASE:
            item = next(e for e in dep_env_items(docs, service) if e["name"] == f"{prefix}_DATABASE_URL")
            # dev: the owner; elsewhere the services' DML-only role (components/secure/postgres-roles.yaml).
            secret = "subsidy-pg-app" if overlay == "dev" else "subsidy-pg-service"
            assert item["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "uri"}
        else:
            assert f"{prefix}_DATABASE_URL" not in env


def dep_env_items(docs, service):
    return deployment(docs, service)["spec"]["template"]["spec"]["containers"][0].get("env", [])


# libpq's own environment variables (psycopg connects through libpq, which
# reads them when the URL does not set the parameter): TLS to PostgreSQL.
LIBPQ_VARIABLES = {"PGSSLMODE", "PGSSLROOTCERT"}


def env_vars_read_by(service: str) -> set[str]:
    sources = [
        ROOT / "subsidy" / "services" / service / "config.py",
        ROOT / "subsidy/platform/security/kafka.py",
        ROOT / "subsidy/platform/topics.py",  # SUBSIDY_KAFKA_TOPIC_CREATION (ensure_all, every service)
    ]
    if service in ("eligibility", "notify", "intake", "payout"):
        sources.append(ROOT / "subsidy" / "core" / "policy.py")  # SUBSIDY_POLICY_DIR
    names: set[str] = set()
    for path in sources:
        text = path.read_text()
        names |= set(re.findall(r"\"((?:KAFKA|SUBSIDY)_[A-Z0-9_]+)\"", text))
        # Env.secret("X") reads X or the file named by X_FILE.
        names |= {f"{n}_FILE" for n in re.findall(r"secret\(\"((?:KAFKA|SUBSIDY)_[A-Z0-9_]+)\"", text)}
    # SecurityConfig: get("TLS_CERT_FILE") is SUBSIDY_TLS_CERT_FILE or SUBSIDY_<SERVICE>_TLS_CERT_FILE.
    security = (ROOT / "subsidy/platform/security/config.py").read_text()
    for suffix in re.findall(r"get\(\"([A-Z_]+)\"", security) + re.findall(r"seconds\(\"([A-Z_]+)\"", security):
        names |= {f"SUBSIDY_{suffix}", f"SUBSIDY_{service.upper()}_{suffix}"}
    names |= set(re.findall(r"\"(SUBSIDY_DEV_MODE)\"", security))
    if service in USES_DATABASE:
        names |= LIBPQ_VARIABLES
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_set_is_one_the_service_reads(overlay):
    docs = rendered(f"overlays/{overlay}")
    for service in SERVICES:
        env = set(container_env(docs, deployment(docs, service)))
        unknown = env - env_vars_read_by(service)
        assert not unknown, f"{service} does not read {sorted(unknown)}"
        assert "SUBSIDY_PAYOUT_TODAY" not in env, "a fixed date is for demos and tests"


def test_secret_settings_are_not_in_configmaps():
    for overlay in OVERLAYS:
        for cm in of_kind(rendered(f"overlays/{overlay}"), "ConfigMap"):
            for key, value in (cm.get("data") or {}).items():
                if key.endswith("_FILE"):  # the path of a file from a mounted Secret, not the secret
                    assert value.startswith("/etc/subsidy/"), f"{cm['metadata']['name']}: {key}={value}"
                    continue
                assert not re.search(r"DATABASE_URL|SECRET|SMTP_URL|PASSWORD|SMS_GATEWAY_URL", key), (
                    f"{cm['metadata']['name']}: {key} belongs in a Secret"
                )


def test_policy_files_are_all_shipped_and_mounted():
    docs = rendered("overlays/prod")
    policy = generated(docs, "ConfigMap", "subsidy-policy")
    clauses = generated(docs, "ConfigMap", "subsidy-policy-clauses")
    directory = generated(docs, "ConfigMap", "subsidy-policy-directory")
    assert policy["data"] == {p.name: p.read_text() for p in (ROOT / "policy").glob("*.yaml")}
    assert clauses["data"] == {p.name: p.read_text() for p in (ROOT / "policy" / "clauses").glob("*.yaml")}
    assert directory["data"] == {p.name: p.read_text() for p in (ROOT / "policy" / "directory").glob("*.yaml")}
    for service in ("eligibility", "notify"):  # the services that load_policy()
        dep = deployment(docs, service)
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["name"]: m for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["policy"]["mountPath"] == container_env(docs, dep)["SUBSIDY_POLICY_DIR"]
        sources = volumes["policy"]["projected"]["sources"]
        assert sources[0]["configMap"]["name"] == policy["metadata"]["name"]
        projected = sources[1]["configMap"]
        assert projected["name"] == clauses["metadata"]["name"]
        assert {(i["key"], i["path"]) for i in projected["items"]} == {(k, f"clauses/{k}") for k in clauses["data"]}
    intake = deployment(docs, "intake")
    volumes = {v["name"]: v for v in intake["spec"]["template"]["spec"]["volumes"]}
    assert volumes["directory"]["configMap"]["name"] == directory["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in intake["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["directory"] == container_env(docs, intake)["SUBSIDY_DIRECTORY_DIR"]


def mounted_policy(docs: list[dict], dep: dict) -> dict[str, str]:
    """{path below the mount: content} of a Deployment's projected "policy" volume."""
    by_name = {d["metadata"]["name"]: d for d in of_kind(docs, "ConfigMap")}
    volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "policy")
    files: dict[str, str] = {}
    for source in volume["projected"]["sources"]:
        cm = by_name[source["configMap"]["name"]]
        items = source["configMap"].get("items") or [{"key": k, "path": k} for k in cm["data"]]
        for item in items:
            assert item["path"] not in files, f"{item['path']} twice"
            files[item["path"]] = cm["data"][item["key"]]
    return files


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_file_of_policy_is_mounted_where_the_services_read_it(overlay):
    """policy/ as the services read it in the checkout, file for file, is what
    intake, eligibility and notify find at SUBSIDY_POLICY_DIR (versions/ and
    any new folder included: eligibility loads policy/versions.yaml's folders)."""
    expected = {
        p.relative_to(ROOT / "policy").as_posix(): p.read_text()
        for p in (ROOT / "policy").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.relative_to(ROOT / "policy").parts[0] != "directory"
    }
    docs = rendered(f"overlays/{overlay}")
    for service in ("intake", "eligibility", "notify"):
        assert mounted_policy(docs, deployment(docs, service)) == expected, service


def test_writable_directories_are_empty_dirs():
    docs = rendered("overlays/prod")
    for service, variable in (("eligibility", "SUBSIDY_ELIGIBILITY_DATA_DIR"), ("notify", "SUBSIDY_NOTIFY_MAIL_DIR")):
        dep = deployment(docs, service)
        path = container_env(docs, dep)[variable]
        mounts = {m["mountPath"]: m["name"] for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert "emptyDir" in volumes[mounts[path]], f"{service}: {path}"


def test_dev_registry_file_is_mounted_where_the_services_look():
    docs = rendered("overlays/dev")
    for service in ("intake", "notify"):
        dep = deployment(docs, service)
        path = Path(container_env(docs, dep)["SUBSIDY_REGISTRY_FILE"])
        mounts = {m["mountPath"]: m["name"] for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        cm_name = volumes[mounts[str(path.parent)]]["configMap"]["name"]
        cm = named(docs, "ConfigMap", cm_name)
        assert cm["data"][path.name] == (ROOT / "demo" / "registry.json").read_text()


def test_prod_asks_the_government_data_platform():
    docs = rendered("overlays/prod")
    for service in ("intake", "notify"):
        assert container_env(docs, deployment(docs, service))["SUBSIDY_REGISTRY_URL"].startswith("https://")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_accounts_services_pdbs(overlay):
    docs = rendered(f"overlays/{overlay}")
    for service in SERVICES:
        name = f"subsidy-{dns(service)}"
        sa = named(docs, "ServiceAccount", name)
        assert sa.get("automountServiceAccountToken") is False
        assert deployment(docs, service)["spec"]["template"]["spec"]["serviceAccountName"] == name
        svc = named(docs, "Service", name)
        assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {
            "grpc": GRPC_PORT[service],
            "metrics": METRICS_PORT[service],
        }
        labels = deployment(docs, service)["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        pdb = named(docs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_autoscaling_never_exceeds_the_partitions():
    for overlay in OVERLAYS:
        docs = rendered(f"overlays/{overlay}")
        hpas = {h["metadata"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
        # The consumers scale on lag with KEDA (tests/ops/test_k8s_scaling.py); intake on CPU.
        assert set(hpas) == {"subsidy-intake"}
        scaled = {s["metadata"]["name"]: s for s in of_kind(docs, "ScaledObject")}
        for service, bound in PARTITION_BOUND.items():
            assert scaled[f"subsidy-{dns(service)}"]["spec"]["maxReplicaCount"] <= bound
        for name, hpa in hpas.items():
            assert hpa["spec"]["scaleTargetRef"]["name"] == name
            assert "replicas" not in named(docs, "Deployment", name)["spec"], f"{name}: the HPA owns replicas"
            assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    prod = rendered("overlays/prod")
    assert all(h["spec"]["minReplicas"] >= 3 for h in of_kind(prod, "HorizontalPodAutoscaler"))


# ------------------------------------------------------------------ schema migrations


def wave(doc: dict) -> int:
    """The Argo CD sync wave of a resource (0 when not annotated)."""
    return int((doc["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) picks ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_migration_job_per_service_with_a_database_runs_subsidy_migrate_before_the_deployments(overlay):
    from subsidy.cli import build_parser

    docs = rendered(f"overlays/{overlay}")
    jobs = {j["metadata"]["name"]: j for j in of_kind(docs, "Job")}
    assert set(jobs) == {f"subsidy-{dns(s)}-migrate" for s in USES_DATABASE}
    for service in sorted(USES_DATABASE):
        job = jobs[f"subsidy-{dns(service)}-migrate"]
        pod = job["spec"]["template"]["spec"]
        container = pod["containers"][0]
        served = deployment(docs, service)["spec"]["template"]["spec"]["containers"][0]
        # The same image as the service, the command the CLI really has, for this service.
        assert container["image"] == served["image"]
        assert container["command"][:3] == ["python", "-m", "subsidy.cli"]
        args = build_parser().parse_args(container["command"][3:])
        assert (args.command, args.service) == ("migrate", service)
        assert args.database_url is None, "the URL carries the password: it comes from the Secret"
        # The service's own database setting: the owner's Secret (DDL), which is
        # the Deployment's in dev and NOT the Deployment's elsewhere (there the
        # services connect as the DML-only role subsidy_app).
        url = f"SUBSIDY_{service.upper()}_DATABASE_URL"
        (job_url,) = [e for e in container["env"] if e["name"] == url]
        (served_url,) = [e for e in served["env"] if e["name"] == url]
        assert job_url["valueFrom"]["secretKeyRef"] == {"name": "subsidy-pg-app", "key": "uri"}
        assert (job_url == served_url) == (overlay == "dev")
        assert pod["restartPolicy"] == "Never"
        assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
        # Argo CD: a Sync hook replaced on every sync, before the Deployments' wave...
        annotations = job["metadata"]["annotations"]
        assert annotations["argocd.argoproj.io/hook"] == "Sync"
        assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
        assert wave(job) < min(wave(d) for d in of_kind(docs, "Deployment"))
        # ... after what it needs: its account, the database, the way to it.
        labels = job["spec"]["template"]["metadata"]["labels"]
        needs = [named(docs, "ServiceAccount", pod["serviceAccountName"]), named(docs, "Cluster", "subsidy-pg")]
        allowing = [
            p
            for p in of_kind(docs, "NetworkPolicy")
            if p["metadata"]["name"] != "subsidy-default-deny" and selects(p["spec"]["podSelector"], labels)
        ]
        assert allowing, "no NetworkPolicy lets the Job out"
        egress = {p["port"] for policy in allowing for rule in policy["spec"].get("egress", []) for p in rule["ports"]}
        assert {53, 5432} <= egress
        pg = named(docs, "NetworkPolicy", "subsidy-pg")
        assert any(
            selects(peer["podSelector"], labels)
            for rule in pg["spec"]["ingress"]
            for peer in rule["from"]
            if "podSelector" in peer and 5432 in {p["port"] for p in rule["ports"]}
        )
        for needed in needs + allowing + [pg]:
            assert wave(needed) < wave(job), f"{needed['kind']} {needed['metadata']['name']} is not before the Job"
        # Not a pod of the service: no Service sends it traffic, no PDB or policy of the service counts it.
        for kind in ("Service", "PodDisruptionBudget"):
            for obj in of_kind(docs, kind):
                selector = obj["spec"]["selector"]
                assert not selects(selector if kind == "PodDisruptionBudget" else {"matchLabels": selector}, labels), (
                    f"{kind} {obj['metadata']['name']} selects the migration Job's pods"
                )


# ------------------------------------------------------------------ network


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_default_deny_then_allow(overlay):
    docs = rendered(f"overlays/{overlay}")
    deny = named(docs, "NetworkPolicy", "subsidy-default-deny")
    assert deny["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/part-of": "subsidy"}}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny["spec"].get("ingress") and not deny["spec"].get("egress")
    for service in SERVICES:
        policy = named(docs, "NetworkPolicy", f"subsidy-{dns(service)}")
        labels = deployment(docs, service)["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert ingress_ports == {"grpc", "metrics"}
        metrics_rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "metrics")
        assert metrics_rule["from"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ]
        egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert {53, KAFKA_PORT[overlay]} <= egress_ports
        assert not ({9092, 9093} - {KAFKA_PORT[overlay]}) & egress_ports, "only the overlay's Kafka listener"
        assert (5432 in egress_ports) == (service in USES_DATABASE)
        if service == "notify":
            assert {25, 465, 587, 443} <= egress_ports


def test_the_operations_pod_reaches_every_services_grpc_port():
    """The runbooks' ops pod (docs/operations.md#an-operations-pod) calls each
    service with grpcurl; a port missing from its egress is a runbook that times out."""
    docs = rendered("overlays/prod")
    ops = named(docs, "NetworkPolicy", "subsidy-ops")
    to_services = [
        rule
        for rule in ops["spec"]["egress"]
        if {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "subsidy"}}} in rule["to"]
    ]
    reachable = {p["port"] for rule in to_services for p in rule["ports"]}
    for service, port in GRPC_PORT.items():
        declared = {
            p["containerPort"]
            for c in deployment(docs, service)["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", ())
            if p.get("name") == "grpc"
        }
        assert declared == {port}, service
        assert port in reachable, f"the ops pod cannot reach {service}'s gRPC port {port}"


# ------------------------------------------------------------------ Kafka and PostgreSQL


def topic_config(topic: dict) -> dict[str, str]:
    return {k: str(v) for k, v in topic["spec"]["config"].items()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_match_subsidy_topics(overlay):
    docs = rendered(f"overlays/{overlay}")
    pool = named(docs, "KafkaNodePool", "dual-role")
    kafka = named(docs, "Kafka", "subsidy-kafka")
    nodes = pool["spec"]["replicas"]
    kt = {t["spec"]["topicName"]: t for t in of_kind(docs, "KafkaTopic")}
    assert set(kt) == {spec.name for spec in topics.ALL}
    for spec in topics.ALL:
        topic = kt[spec.name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["spec"]["partitions"] == spec.partitions, spec.name
        config = topic_config(topic)
        for key, value in spec.config.items():
            assert config[key] == value, f"{spec.name}: {key}"
        assert topic["spec"]["replicas"] <= nodes
        assert int(config["min.insync.replicas"]) < topic["spec"]["replicas"] or nodes == 1
    broker = {k: str(v) for k, v in kafka["spec"]["kafka"]["config"].items()}
    assert broker["auto.create.topics.enable"].lower() == "false"
    assert {"controller", "broker"} <= set(pool["spec"]["roles"])


def test_prod_kafka_replicates_three_ways_with_two_in_sync():
    docs = rendered("overlays/prod")
    assert named(docs, "KafkaNodePool", "dual-role")["spec"]["replicas"] == 3
    broker = {k: str(v) for k, v in named(docs, "Kafka", "subsidy-kafka")["spec"]["kafka"]["config"].items()}
    assert broker["default.replication.factor"] == "3"
    assert broker["min.insync.replicas"] == "2"
    assert broker["offsets.topic.replication.factor"] == "3"
    for topic in of_kind(docs, "KafkaTopic"):
        assert topic["spec"]["replicas"] == 3
        assert topic_config(topic)["min.insync.replicas"] == "2"
    eligibility = container_env(docs, deployment(docs, "eligibility"))
    assert eligibility["SUBSIDY_ELIGIBILITY_TOPIC_REPLICATION_FACTOR"] == "3"


RESTORE = K8S / "restore" / "cluster-restore.yaml"


def test_prod_backs_up_the_ledger_with_point_in_time_recovery():
    docs = rendered("overlays/prod")
    cluster = named(docs, "Cluster", "subsidy-pg")
    store = named(docs, "ObjectStore", "subsidy-pg-backups")
    (archiver,) = [p for p in cluster["spec"]["plugins"] if p.get("isWALArchiver")]
    assert archiver["name"] == "barman-cloud.cloudnative-pg.io"
    assert archiver["parameters"]["barmanObjectName"] == store["metadata"]["name"]
    assert store["spec"]["configuration"]["destinationPath"].startswith("s3://")
    assert re.fullmatch(r"[1-9][0-9]*d", store["spec"]["retentionPolicy"])
    (backup,) = of_kind(docs, "ScheduledBackup")
    assert backup["spec"]["cluster"]["name"] == "subsidy-pg"
    assert backup["spec"]["method"] == "plugin"
    assert backup["spec"]["pluginConfiguration"]["name"] == archiver["name"]
    seconds, minutes, hours, *rest = backup["spec"]["schedule"].split()
    assert rest == ["*", "*", "*"] and hours.isdigit(), "a base backup every day"
    assert wave(store) < wave(cluster), "the object store before the Cluster that archives to it"
    dev = named(rendered("overlays/dev"), "Cluster", "subsidy-pg")
    assert "plugins" not in dev["spec"] and not of_kind(rendered("overlays/dev"), "ScheduledBackup")


def test_the_restore_cluster_recovers_from_prods_object_store(tmp_path):
    restore = yaml.safe_load(RESTORE.read_text())
    assert not crd_errors(restore)
    result = kubeconform.validate(RESTORE.read_text(), KUBERNETES_VERSIONS[-1], tmp_path, CRD_SCHEMAS)
    assert result.returncode == 0, result.stdout
    docs = rendered("overlays/prod")
    store = named(docs, "ObjectStore", "subsidy-pg-backups")
    prod = named(docs, "Cluster", "subsidy-pg")
    recovery = restore["spec"]["bootstrap"]["recovery"]
    (source,) = [c for c in restore["spec"]["externalClusters"] if c["name"] == recovery["source"]]
    assert source["plugin"]["parameters"] == {"barmanObjectName": store["metadata"]["name"], "serverName": "subsidy-pg"}
    assert recovery["recoveryTarget"]["targetTime"]
    assert (recovery["database"], recovery["owner"]) == ("subsidy", "subsidy")
    (archiver,) = [p for p in restore["spec"]["plugins"] if p.get("isWALArchiver")]
    assert archiver["parameters"]["serverName"] != "subsidy-pg", "never archive over the lost cluster's WAL"
    assert restore["metadata"]["name"] != prod["metadata"]["name"]
    assert restore["spec"]["imageName"] == prod["spec"]["imageName"]


def test_the_services_connect_as_a_role_without_ddl():
    docs = rendered("overlays/prod")
    cluster = named(docs, "Cluster", "subsidy-pg")
    (role,) = cluster["spec"]["managed"]["roles"]
    assert role["name"] == "subsidy_app" and role["passwordSecret"]["name"] == "subsidy-pg-service"
    sql = " ".join(cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]).upper()
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO SUBSIDY_APP" in sql
    assert not re.search(r"GRANT (ALL|CREATE)|SUPERUSER|CREATEROLE|OWNER TO SUBSIDY_APP", sql)
    assert cluster["spec"]["bootstrap"]["initdb"]["owner"] != role["name"]


def test_postgres_instances_per_overlay():
    assert named(rendered("overlays/prod"), "Cluster", "subsidy-pg")["spec"]["instances"] == 3
    assert named(rendered("overlays/dev"), "Cluster", "subsidy-pg")["spec"]["instances"] == 1
    cluster = named(rendered("overlays/prod"), "Cluster", "subsidy-pg")
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    assert {k: initdb[k] for k in ("database", "owner", "encoding")} == {
        "database": "subsidy",
        "owner": "subsidy",
        "encoding": "UTF8",
    }


# ------------------------------------------------------------------ secrets and monitoring


def test_no_secret_in_base_or_prod_carries_data():
    for target in ("base", "overlays/prod"):
        for secret in of_kind(rendered(target), "Secret"):
            assert not secret.get("data") and not secret.get("stringData"), f"{target}: {secret['metadata']['name']}"
    assert not of_kind(rendered("overlays/prod"), "Secret"), "prod Secrets are created out of band"


def test_dev_secret_values_are_obviously_fake():
    import base64

    secrets = of_kind(rendered("overlays/dev"), "Secret")
    assert [s["metadata"]["name"].rsplit("-", 1)[0] for s in secrets] == ["subsidy-notify-secrets"]
    for key, value in secrets[0]["data"].items():
        text = base64.b64decode(value).decode()
        assert text == "" or "fake" in text, f"{key} does not look fake"
    notify = deployment(rendered("overlays/dev"), "notify")
    refs = [
        s["secretRef"]["name"]
        for s in notify["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        if "secretRef" in s
    ]
    assert refs == [secrets[0]["metadata"]["name"]]


def test_every_service_is_scraped():
    for overlay in OVERLAYS:
        docs = rendered(f"overlays/{overlay}")
        monitors = {m["metadata"]["name"]: m for m in of_kind(docs, "ServiceMonitor")}
        assert set(monitors) == {f"subsidy-{dns(s)}" for s in SERVICES + WEB}
        for name, monitor in monitors.items():
            svc = named(docs, "Service", name)
            assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
            assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
