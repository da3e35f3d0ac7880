"""The staff console's manifests (issue 15, item 1; issue 16, items 1 and 6):
a web app, not a gRPC service, so the generic checks of test_k8s.py (locked
down, scraped) cover it and these check what is its own, on the rendered
YAML, with the console's own settings code (Settings.from_env): the
environment it gets would start it, or refuse it where it must.

- probes on the plaintext health port with the names its health server answers;
- the Service exposes HTTP and metrics, never the health port;
- reachable only from the ingress controller (HTTP) and monitoring (metrics);
  out only to DNS, the five services' gRPC ports and HTTPS beyond the cluster;
- secrets as files from Secrets (session, OIDC client, JWKS), none in git;
- every variable set is one it reads;
- secure overlays: the services' TLS verified against the namespace CA; prod: an
  Ingress with TLS from cert-manager for the public URL's host;
- intake through its headless Service (client-side round robin).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pytest

from subsidy.platform.grpc.server import LIVENESS
from subsidy.services.console.config import Settings, SettingsError
from tests.ops.test_k8s import (
    GRPC_PORT,
    HEALTH_PORT,
    METRICS_PORT,
    OVERLAYS,
    ROOT,
    container_env,
    deployment,
    named,
    of_kind,
    rendered,
)
from tests.ops.test_k8s_security import SECURE_OVERLAYS, secret_mounts, secret_of_file

HTTP_PORT = 8080
#: What the console calls: its setting, the Service it names, the gRPC port.
CALLS = {
    "intake": ("SUBSIDY_CONSOLE_INTAKE_ADDRESS", "subsidy-intake-headless", GRPC_PORT["intake"]),
    "review": ("SUBSIDY_CONSOLE_REVIEW_ADDRESS", "subsidy-review", GRPC_PORT["review"]),
    "payout": ("SUBSIDY_CONSOLE_PAYOUT_ADDRESS", "subsidy-payout", GRPC_PORT["payout"]),
    "operations": ("SUBSIDY_CONSOLE_OPERATIONS_ADDRESS", "subsidy-operations", GRPC_PORT["operations"]),
    "eligibility": ("SUBSIDY_CONSOLE_ELIGIBILITY_ADDRESS", "subsidy-eligibility", GRPC_PORT["eligibility"]),
}


def console(docs):
    dep = deployment(docs, "console")
    return dep, dep["spec"]["template"]["spec"], dep["spec"]["template"]["spec"]["containers"][0]


def as_started(docs, overlay: str) -> dict[str, str]:
    """The environment the console would start with: its ConfigMap and env,
    and for each *_FILE a path the test checks is in a mounted Secret."""
    _, pod, container = console(docs)
    env = container_env(docs, deployment(docs, "console"))
    mounts = secret_mounts(docs, pod, container)
    for key, path in env.items():
        if key.endswith("_FILE") and key != "SUBSIDY_CONSOLE_DEV_SIGNING_KEY_FILE":
            secret_of_file(mounts, path)  # the file comes from a Secret
    return env


def settings_with_files(env: dict[str, str], tmp_path) -> Settings:
    """Settings.from_env on the rendered environment, the Secrets' files
    replaced by local files of plausible content."""
    local = dict(env)
    for key, path in env.items():
        if key.endswith("_FILE"):
            file = tmp_path / PurePosixPath(path).name
            file.write_text("x" * 48 if "SECRET" in key else '{"keys": []}')
            local[key] = str(file)
    return Settings.from_env(local)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_console_probes_its_health_port_with_the_names_it_answers(overlay):
    docs = rendered(f"overlays/{overlay}")
    _, _, container = console(docs)
    assert container["command"] == ["python", "-m", "subsidy.services.console"]
    for probe, name in {
        "readinessProbe": "subsidy.console",  # bootstrap.serve() sets it SERVING once uvicorn runs
        "livenessProbe": LIVENESS,
        "startupProbe": LIVENESS,
    }.items():
        assert container[probe]["grpc"] == {"port": HEALTH_PORT, "service": name}, probe
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": HTTP_PORT, "metrics": METRICS_PORT["console"], "health": HEALTH_PORT}
    env = container_env(docs, deployment(docs, "console"))
    assert env["SUBSIDY_CONSOLE_GRPC_ADDRESS"] == f"0.0.0.0:{HEALTH_PORT}"  # its health server
    assert env["SUBSIDY_CONSOLE_HTTP_ADDRESS"] == f"0.0.0.0:{HTTP_PORT}"
    assert env["SUBSIDY_CONSOLE_METRICS_ADDRESS"] == f"0.0.0.0:{METRICS_PORT['console']}"
    svc = named(docs, "Service", "subsidy-console")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {
        "http": HTTP_PORT,
        "metrics": METRICS_PORT["console"],
    }
    labels = deployment(docs, "console")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert named(docs, "PodDisruptionBudget", "subsidy-console")["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
    assert named(docs, "ServiceAccount", "subsidy-console")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_console_is_reached_from_the_ingress_only_and_reaches_the_services_grpc_only(overlay):
    docs = rendered(f"overlays/{overlay}")
    policy = named(docs, "NetworkPolicy", "subsidy-console")
    labels = deployment(docs, "console")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert ingress == {
        "http": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        "metrics": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    }
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 443} | {port for _, _, port in CALLS.values()}, "no Kafka, no PostgreSQL"
    (to_services,) = [r for r in policy["spec"]["egress"] if GRPC_PORT["intake"] in {p["port"] for p in r["ports"]}]
    (peer,) = to_services["to"]
    (expression,) = peer["podSelector"]["matchExpressions"]
    assert set(expression["values"]) == set(CALLS)
    # Each service's own policy admits the console on its gRPC port.
    for service in CALLS:
        theirs = named(docs, "NetworkPolicy", f"subsidy-{service}")
        assert any(
            rule["ports"][0]["port"] == "grpc"
            and {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "subsidy"}}} in rule["from"]
            for rule in theirs["spec"]["ingress"]
        ), service
    # Nothing but the console's own policy lets traffic in on 8080.
    for other in of_kind(docs, "NetworkPolicy"):
        if other["metadata"]["name"] != "subsidy-console":
            for rule in other["spec"].get("ingress", []):
                assert "http" not in {p.get("port") for p in rule.get("ports", [])}, other["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_console_calls_the_services_at_their_services_and_intake_headless(overlay):
    docs = rendered(f"overlays/{overlay}")
    env = container_env(docs, deployment(docs, "console"))
    for service, (variable, name, port) in CALLS.items():
        assert env[variable] == f"{name}:{port}", variable
        svc = named(docs, "Service", name)
        assert port in {p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc"}, service
    assert named(docs, "Service", "subsidy-intake-headless")["spec"]["clusterIP"] == "None"


def env_vars_read_by_console() -> set[str]:
    text = (ROOT / "subsidy/services/console/config.py").read_text()
    names = set(re.findall(r"\"(SUBSIDY_[A-Z0-9_]+)\"", text))
    names |= {f"{n}_FILE" for n in re.findall(r"secret\(\"(SUBSIDY_[A-Z0-9_]+)\"", text)}
    names |= {"SUBSIDY_LOG_LEVEL"}  # bootstrap.main
    names |= {"SUBSIDY_POLICY_DIR"}  # subsidy/core/policy.py (the budget page's policy diff)
    assert "SUBSIDY_POLICY_DIR" in (ROOT / "subsidy/core/policy.py").read_text()
    assert "SUBSIDY_LOG_LEVEL" in (ROOT / "subsidy/services/console/bootstrap.py").read_text()
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_console_variable_is_one_it_reads_and_no_secret_is_in_git(overlay):
    docs = rendered(f"overlays/{overlay}")
    env = as_started(docs, overlay)
    unknown = set(env) - env_vars_read_by_console()
    assert not unknown, f"the console does not read {sorted(unknown)}"
    assert "SUBSIDY_CONSOLE_SESSION_SECRET" not in env and "SUBSIDY_CONSOLE_OIDC_CLIENT_SECRET" not in env
    _, pod, container = console(docs)
    mounts = secret_mounts(docs, pod, container)
    assert secret_of_file(mounts, env["SUBSIDY_CONSOLE_SESSION_SECRET_FILE"]) == "subsidy-console"
    assert secret_of_file(mounts, env["SUBSIDY_CONSOLE_OIDC_CLIENT_SECRET_FILE"]) == "subsidy-console"
    assert secret_of_file(mounts, env["SUBSIDY_CONSOLE_AUTH_JWKS_FILE"]) == "subsidy-jwks"
    assert not [s for s in of_kind(docs, "Secret") if s["metadata"]["name"].startswith("subsidy-console")]
    # The policy volume is policy/ as the services get it (the projected patch).
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounted["policy"] == env["SUBSIDY_POLICY_DIR"]
    assert "projected" in volumes["policy"]
    assert (
        volumes["policy"]
        == {v["name"]: v for v in deployment(docs, "intake")["spec"]["template"]["spec"]["volumes"]}["policy"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_rendered_environment_starts_the_console_with_oidc_and_no_dev_sign_in(overlay, tmp_path):
    docs = rendered(f"overlays/{overlay}")
    env = as_started(docs, overlay)
    settings = settings_with_files(env, tmp_path)
    assert settings.oidc_enabled and not settings.dev_signin_enabled and not settings.dev_mode
    assert settings.secure_cookies
    assert urlsplit(settings.oidc_issuer).scheme == "https" and urlsplit(settings.public_url).scheme == "https"
    # The console verifies tokens as the services do: the same issuer and audience (secure overlays).
    if overlay in SECURE_OVERLAYS:
        service_env = container_env(docs, deployment(docs, "review"))
        assert settings.issuer == service_env["SUBSIDY_AUTH_ISSUER"]
        assert settings.audience == service_env["SUBSIDY_AUTH_AUDIENCE"]
    # Without its session secret it refuses to start (fail closed).
    without = {k: v for k, v in env.items() if not k.startswith("SUBSIDY_CONSOLE_SESSION_SECRET")}
    with pytest.raises(SettingsError, match="SUBSIDY_CONSOLE_SESSION_SECRET"):
        settings_with_files(without, tmp_path)


@pytest.mark.parametrize("overlay", SECURE_OVERLAYS)
def test_the_console_verifies_the_services_tls_against_the_namespace_ca(overlay):
    docs = rendered(f"overlays/{overlay}")
    env = as_started(docs, overlay)
    _, pod, container = console(docs)
    assert secret_of_file(secret_mounts(docs, pod, container), env["SUBSIDY_CONSOLE_TLS_CA_FILE"]) == "subsidy-ca"
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "subsidy-ca"]
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the CA's certificate, not its key"
    # Every name the console dials is in that service's certificate.
    certificates = {c["metadata"]["name"]: c for c in of_kind(docs, "Certificate")}
    for service, (variable, name, _) in CALLS.items():
        host = env[variable].rsplit(":", 1)[0]
        assert host == name
        assert host in certificates[f"subsidy-{service}-tls"]["spec"]["dnsNames"], service


def test_dev_calls_the_services_in_plaintext():
    env = container_env(rendered("overlays/dev"), deployment(rendered("overlays/dev"), "console"))
    assert "SUBSIDY_CONSOLE_TLS_CA_FILE" not in env


def test_prod_serves_the_console_through_an_ingress_with_tls_from_cert_manager():
    docs = rendered("overlays/prod")
    (ingress,) = of_kind(docs, "Ingress")
    env = container_env(docs, deployment(docs, "console"))
    host = urlsplit(env["SUBSIDY_CONSOLE_PUBLIC_URL"]).hostname
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == [host] and tls["secretName"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == host
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "subsidy-console", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    assert not of_kind(rendered("overlays/dev"), "Ingress"), "dev: port-forward, no public entry"
