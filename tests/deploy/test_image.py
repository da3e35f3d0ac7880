"""The runtime image (deploy/image/build.sh, `make image`), smoke-tested with
podman on this machine (`make image-smoke`; not part of `make test`: it
needs the image built, root and podman).

- its posture: uid 10001, a read-only root filesystem, no compiler, no pip,
  no grpcio-tools, exactly the locked distributions;
- every service of the image (each ``subsidy/services/<name>/__main__.py``)
  in a container of its own, run as prod's rendered Deployment runs it
  (``kustomize build deploy/k8s/overlays/prod``): its command, its
  environment from its ConfigMaps, its securityContext (read-only root,
  uid/gid 10001, all capabilities dropped, no privilege escalation), its
  emptyDirs as the only writable paths, its ConfigMap volumes written from
  the rendered ConfigMaps, its Secret volumes filled by the test (a test CA
  and server certificate: gRPC TLS; a JWKS: JWT authentication), and the
  schema made first by prod's migration Jobs, run the same way. What this
  machine cannot give is replaced, and only that (``NOT_HERE``,
  ``local_env``): the Kafka broker and PostgreSQL are the local ones
  (PLAINTEXT Kafka, PostgreSQL without TLS), the data platform is its test
  double, and every listening address is on loopback;
- each one answers SERVING on its health port for liveness and readiness
  (the names of its probes), and its metrics (and the console's pages)
  answer over HTTP;
- one application end to end: submitted to intake's SubmitApplication over
  TLS with a firm's token, decided by eligibility, granted in payout's
  ledger (read through payout's GetLedger), its GrantRecorded on
  subsidy.payouts.v1; and no container created a topic (topic creation is
  off in prod: the KafkaTopics make them).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("IMAGE", "songjiang-subsidy:dev")
LOCK = ROOT / "deploy" / "image" / "requirements.lock"

pytestmark = pytest.mark.skipif(
    os.environ.get("SUBSIDY_IMAGE_SMOKE") != "1", reason="the image smoke test runs with `make image-smoke`"
)

# What a Deployment's securityContext and volumes give the container. podman's
# --read-only alone would also mount tmpfs on /run, /tmp and /var/tmp; a pod
# gets no writable path but its volumes.
LOCKED_DOWN = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--user",
    "10001:10001",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--tmpfs",
    "/tmp:rw,size=64m,mode=1777",
)


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "image" / "containers.conf")}
    result = subprocess.run(
        ["podman", "--runtime", "runc", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def run_python(code: str, *extra: str) -> subprocess.CompletedProcess:
    return podman("run", "--rm", *LOCKED_DOWN, *extra, IMAGE, "python", "-c", code, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_services() -> list[str]:
    """The services of the commit the image was built from (build.sh writes it,
    not the working tree's): every subsidy/services/<name> with a __main__.py."""
    revision = run_python("print(open('/opt/subsidy/lib/subsidy/REVISION').read().strip())").stdout.strip()
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", revision, "subsidy/services"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.split()  # fmt: skip
    return sorted({f.split("/")[2] for f in files if f.endswith("/__main__.py")})


def test_the_image_runs_as_10001_read_only_without_build_tools():
    inspect = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    assert inspect["Config"]["User"] == "10001:10001"
    assert len(inspect["RootFS"]["Layers"]) == 1

    posture = run_python(
        "import os, shutil, importlib.util as u;"
        "print(os.getuid(), os.getgid());"
        "print([t for t in ('gcc','cc','c++','make','ld','as','pip','pip3','git','curl','wget') if shutil.which(t)]);"
        "print([m for m in ('grpc_tools','pip','setuptools','pytest') if u.find_spec(m)])"
    )
    assert posture.returncode == 0, posture.stderr
    assert posture.stdout.split("\n")[:3] == ["10001 10001", "[]", "[]"]

    for path in ("/opt/subsidy/lib/subsidy/x", "/etc/x", "/usr/x", "/run/x", "/var/tmp/x"):
        write = run_python(f"open({path!r}, 'w')")
        assert write.returncode != 0 and "Read-only file system" in write.stderr, path
    assert run_python("open('/tmp/x', 'w').write('ok')").returncode == 0


def test_the_image_holds_exactly_the_locked_distributions():
    locked = dict(re.findall(r"^([a-z0-9-]+)==(\S+) --hash=sha256:[0-9a-f]{64}$", LOCK.read_text(), re.M))
    assert locked and "grpcio-tools" not in locked
    listed = run_python(
        "import importlib.metadata as m, re;"
        "print('\\n'.join(sorted(re.sub(r'[-_.]+','-',d.metadata['Name']).lower()+'=='+d.version"
        " for d in m.distributions(path=['/opt/subsidy/lib']))))"
    )
    assert listed.returncode == 0, listed.stderr
    assert dict(line.split("==") for line in listed.stdout.split()) == locked


def test_every_service_imports_in_the_image():
    services = image_services()
    assert {"intake", "eligibility", "payout", "notify"} <= set(services)
    code = ";".join(f"import subsidy.services.{s}.bootstrap" for s in services) + ";import subsidy.cli"
    if "review" in services:  # review refuses to start without a CJK font for the notice PDF
        code += ";from subsidy.services.review.adapters import document;document.find_font()"
    code += ";print('ok')"
    result = run_python(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ------------------------------------------------------------------ every service, as prod runs it

# Prod's settings this machine cannot honour, dropped (and nothing else):
# the local broker has a PLAINTEXT listener only (no SASL_SSL, no ACLs), the
# local PostgreSQL no TLS. tests/ops/test_k8s_security.py checks them on the
# rendered YAML instead.
NOT_HERE = {
    "SUBSIDY_KAFKA_SECURITY_PROTOCOL": "the local broker: PLAINTEXT only",
    "SUBSIDY_KAFKA_SASL_MECHANISM": "the local broker: no SASL",
    "SUBSIDY_KAFKA_SASL_USERNAME": "the local broker: no SASL",
    "SUBSIDY_KAFKA_SASL_PASSWORD": "the local broker: no SASL",
    "SUBSIDY_KAFKA_SSL_CAFILE": "the local broker: no TLS",
    "PGSSLMODE": "the local PostgreSQL: no TLS",
    "PGSSLROOTCERT": "the local PostgreSQL: no TLS",
}
#: The data platform (intake's and notify's registry, registry-sync's feed): its test double here.
PLATFORM_URLS = ("SUBSIDY_REGISTRY_URL", "SUBSIDY_REGISTRY_SYNC_FEED_URL")
#: A Service of the namespace (the console's targets): subsidy-<name>[-headless]:<port>.
IN_CLUSTER = re.compile(r"^subsidy-([a-z-]+?)(?:-headless)?:(\d+)$")


def container_of(template: dict) -> tuple[dict, dict]:
    pod = template["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def local_ports(container: dict) -> dict[int, int]:
    """Every port the container declares (gRPC, health, metrics, HTTP): a free local port for each."""
    return {p["containerPort"]: free_port() for p in container.get("ports", [])}


def local_env(
    rendered_env: dict[str, str],
    ports: dict[int, int],
    *,
    all_ports: dict[str, dict[int, int]],
    kafka: str,
    database: str,
    platform: str,
) -> dict[str, str]:
    """The rendered environment with only what cannot be had here replaced:
    loopback instead of 0.0.0.0 (each declared port a free local one), the local
    broker, database and data platform, the other containers for Service names."""
    env = {}
    for name, value in rendered_env.items():
        if name in NOT_HERE:
            continue
        if name == "KAFKA_BOOTSTRAP_SERVERS":
            value = kafka
        elif name.endswith("_DATABASE_URL"):
            value = database
        elif name in PLATFORM_URLS:
            value = platform
        elif value.startswith("0.0.0.0:"):
            port = int(value.rsplit(":", 1)[1])
            assert port in ports, f"{name}={value}: a port its Deployment does not declare ({sorted(ports)})"
            value = f"127.0.0.1:{ports[port]}"
        elif value == "0.0.0.0":
            value = "127.0.0.1"
        elif name.endswith("_METRICS_PORT"):  # eligibility: address and port apart
            value = str(ports[int(value)])
        elif match := IN_CLUSTER.match(value):
            target = match.group(1).replace("-", "_")
            assert target in all_ports, f"{name}={value}: no such service here ({sorted(all_ports)})"
            value = f"127.0.0.1:{all_ports[target][int(match.group(2))]}"
        assert not value.startswith("<from"), f"{name} comes from a Secret the test does not know"
        env[name] = value
    return env


def volume_files(docs: list[dict], volume: dict, secret_files: dict[str, bytes]) -> dict[str, bytes]:
    """{path: content} of a configMap, secret or projected volume: ConfigMaps as
    rendered, Secrets' keys from ``secret_files``."""
    from tests.ops.test_k8s import named

    sources = volume["projected"]["sources"] if "projected" in volume else [volume]
    files: dict[str, bytes] = {}
    for source in sources:
        if "configMap" in source:
            config_map = named(docs, "ConfigMap", source["configMap"]["name"])
            data = {k: v.encode() for k, v in (config_map.get("data") or {}).items()}
            data |= {k: base64.b64decode(v) for k, v in (config_map.get("binaryData") or {}).items()}
            items = source["configMap"].get("items")
        elif "secret" in source:
            items = source["secret"].get("items")
            assert items, f"Secret {source['secret']['secretName']}: the test fills Secrets by their items"
            unknown = {i["key"] for i in items} - set(secret_files)
            assert not unknown, f"Secret {source['secret']['secretName']}: no test content for {sorted(unknown)}"
            data = secret_files
        else:
            raise AssertionError(f"a volume source the test cannot make: {source}")
        if items:
            files |= {item["path"]: data[item["key"]] for item in items}
        else:
            files |= data
    return files


def podman_flags(docs: list[dict], pod: dict, container: dict, work: Path, secret_files: dict[str, bytes]) -> list[str]:
    """`podman run` flags giving the container what its pod spec gives it: the
    securityContext, emptyDirs as tmpfs (the only writable paths), ConfigMap and
    Secret volumes as read-only bind mounts of files written under ``work``."""
    pod_context, context = pod.get("securityContext", {}), container.get("securityContext", {})
    uid = context.get("runAsUser", pod_context.get("runAsUser"))
    gid = context.get("runAsGroup", pod_context.get("runAsGroup"))
    assert uid and gid and context.get("readOnlyRootFilesystem"), "a non-root, read-only container"
    flags = ["--read-only", "--read-only-tmpfs=false", "--user", f"{uid}:{gid}"]
    if "fsGroup" in pod_context:
        flags += ["--group-add", str(pod_context["fsGroup"])]
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    for capability in context.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", capability]
    assert not context.get("capabilities", {}).get("add"), "no capability added"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume, path = volumes[mount["name"]], mount["mountPath"]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit", "64Mi").removesuffix("i").lower()
            flags += ["--tmpfs", f"{path}:rw,size={size},mode=1777"]
            continue
        assert mount.get("readOnly"), f"{path}: ConfigMap and Secret volumes are mounted read-only"
        source = work / f"{container['name']}-{uuid.uuid4().hex[:6]}-{mount['name']}"
        for relative, content in volume_files(docs, volume, secret_files).items():
            target = source / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o644)  # a Secret volume's default mode
        for directory in (source, *source.rglob("*")):
            if directory.is_dir():
                directory.chmod(0o755)
        flags += ["-v", f"{source}:{path}:ro"]
    return flags


def health(port: int, name: str) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
        except grpc.RpcError as exc:
            return exc.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except OSError:
        return 0


def wait_for(what: str, check: Callable[[], object], timeout: float, logs: Callable[[], str]) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{logs()}")


def topic_names(bootstrap: str) -> set[str]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="image-smoke")
    try:
        return {t for t in admin.list_topics() if not t.startswith("__")}  # the broker's own
    finally:
        admin.close()


def grant_recorded(bootstrap: str, event_id: str, timeout: float) -> object | None:
    """The GrantRecorded of ``event_id`` read back from subsidy.payouts.v1, or None."""
    from kafka import KafkaConsumer

    from subsidy.contracts import topics
    from subsidy.v1 import payout_pb2

    consumer = KafkaConsumer(
        topics.PAYOUTS.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout * 1000),
    )
    try:
        for record in consumer:
            event = payout_pb2.PayoutEvent.FromString(record.value)
            if event.event_id == event_id and event.WhichOneof("event") == "grant_recorded":
                return event.grant_recorded
    finally:
        consumer.close()
    return None


def test_every_service_runs_as_prod_deploys_it_and_one_application_goes_end_to_end(
    kafka_bootstrap, postgres_url, tmp_path
):
    import grpc
    import psycopg

    from subsidy.contracts import codec
    from subsidy.platform import topics as platform_topics
    from subsidy.v1 import intake_pb2, intake_pb2_grpc, payout_pb2, payout_pb2_grpc
    from subsidy_dev.platform_fake import FakeDataPlatform
    from tests.ops.test_k8s import container_env, dns, named, of_kind, rendered
    from tests.security.pki import CA, Signer

    services = image_services()
    assert {"intake", "eligibility", "payout", "notify", "review", "operations", "console", "registry_sync"} <= set(
        services
    ), services
    docs = rendered("overlays/prod")
    deployments = {s: named(docs, "Deployment", f"subsidy-{dns(s)}") for s in services}
    migrations = [j for j in of_kind(docs, "Job") if j["metadata"]["name"].endswith("-migrate")]
    assert migrations, "prod's migration Jobs"

    # What prod's Secrets hold, made here: a CA and the services' certificate
    # (cert-manager's), the identity provider's keys (subsidy-jwks), the
    # console's session secret, the data platform's feed token.
    ca, signer = CA("Image Smoke CA"), Signer("ec")
    server = ca.issue("localhost", server=True, sans=("localhost", "127.0.0.1"))
    feed_token = secrets.token_urlsafe(24)
    secret_files = {
        "tls.crt": server.cert,
        "tls.key": server.key,
        "ca.crt": ca.pem,
        "jwks.json": json.dumps({"keys": [signer.jwk()]}).encode(),
        "token": feed_token.encode(),
        "session-secret": secrets.token_urlsafe(48).encode(),
        "oidc-client-secret": b"the identity provider is not called here",
    }

    # The KafkaTopics' part: the contract's topics exist before anything starts.
    platform_topics.ensure_all(kafka_bootstrap)
    topics_before = topic_names(kafka_bootstrap)
    run = uuid.uuid4().hex[:8]
    database = f"image_smoke_{run}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    database_url = re.sub(r"/[^/?]+(\?|$)", f"/{database}\\1", postgres_url, count=1)
    ports = {s: local_ports(container_of(d)[1]) for s, d in deployments.items()}

    def address(service: str, port_name: str) -> str:
        """The local address of a port the Deployment names (grpc, health, metrics, http)."""
        (port,) = [p["containerPort"] for p in container_of(deployments[service])[1]["ports"] if p["name"] == port_name]
        return f"127.0.0.1:{ports[service][port]}"

    names = {s: f"subsidy-smoke-{dns(s)}-{run}" for s in services}
    platform = FakeDataPlatform.from_file(ROOT / "demo" / "registry.json", token=feed_token)
    platform_url = platform.start()
    environments = {
        s: local_env(
            container_env(docs, d),
            ports[s],
            all_ports=ports,
            kafka=kafka_bootstrap,
            database=database_url,
            platform=platform_url,
        )
        for s, d in deployments.items()
    }

    def env_flags(env: dict[str, str]) -> list[str]:
        return [flag for k, v in sorted(env.items()) for flag in ("-e", f"{k}={v}")]

    def logs() -> str:
        out = []
        for service, name in names.items():
            result = podman("logs", "--tail", "60", name, check=False)
            out.append(f"--- {service} ({name})\n{(result.stdout + result.stderr)[-4000:]}")
        return "\n".join(out)

    try:
        # The schema first, as prod's migration Jobs make it before a rollout.
        for job in migrations:
            pod, container = container_of(job)
            flags = podman_flags(docs, pod, container, tmp_path, secret_files)
            env = local_env(
                container_env(docs, job), {}, all_ports=ports, kafka=kafka_bootstrap, database=database_url,
                platform=platform_url,
            )  # fmt: skip
            migrate = podman(
                "run", "--rm", "--network", "host", *flags, *env_flags(env), IMAGE, *container["command"],
                check=False, timeout=300,
            )  # fmt: skip
            assert migrate.returncode == 0, f"{job['metadata']['name']}:\n{migrate.stdout}{migrate.stderr}"

        for service, template in deployments.items():
            pod, container = container_of(template)
            flags = podman_flags(docs, pod, container, tmp_path, secret_files)
            podman(
                "run", "-d", "--name", names[service], "--network", "host", *flags, *env_flags(environments[service]),
                IMAGE, *container["command"],
            )  # fmt: skip

        for service, template in deployments.items():
            _, container = container_of(template)
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                grpc_probe = container[probe]["grpc"]
                port, name = ports[service][grpc_probe["port"]], grpc_probe["service"]
                wait_for(
                    f"{service}: {probe} ({name}) SERVING", lambda p=port, n=name: health(p, n) == "SERVING", 240, logs
                )
            declared = {p["name"] for p in container["ports"]}
            if "metrics" in declared:
                url = f"http://{address(service, 'metrics')}/metrics"
                wait_for(f"{service}: {url} answers", lambda u=url: http_status(u) == 200, 60, logs)
            if "http" in declared:  # the console's pages
                url = f"http://{address(service, 'http')}/signin"
                wait_for(f"{service}: {url} answers", lambda u=url: http_status(u) == 200, 60, logs)

        # A firm submits a small award (36 000 yuan: applied at once, below the
        # four-eyes threshold) to intake, over TLS, with its own token.
        lines = [json.loads(x) for x in (ROOT / "demo" / "applications.jsonl").read_text().splitlines() if x]
        (line,) = [x for x in lines if x["application_id"] == "SJ-2023-0003"]
        application_id = f"SMOKE-{run}"
        line["application_id"] = application_id
        firm = line["firm"]["credit_code"]
        token = signer.token(
            "ENTERPRISE",
            firm,
            lifetime=900,
            audience=environments["intake"]["SUBSIDY_AUTH_AUDIENCE"],
            issuer=environments["intake"]["SUBSIDY_AUTH_ISSUER"],
        )
        metadata = (("authorization", f"Bearer {token}"),)
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.pem)
        with grpc.secure_channel(address("intake", "grpc"), credentials) as channel:
            reply = intake_pb2_grpc.IntakeServiceStub(channel).SubmitApplication(
                intake_pb2.SubmitApplicationRequest(
                    application=codec.application_to_proto(codec.parse_application(line))
                ),
                metadata=metadata,
                timeout=30,
            )
        assert not reply.duplicate
        # Intake scopes the id to the firm (<credit code>:<application id>): the id everywhere after.
        scoped = reply.receipt.application_id
        assert scoped.endswith(application_id), scoped

        def the_grant() -> object | None:
            with grpc.secure_channel(address("payout", "grpc"), credentials) as channel:
                ledger = payout_pb2_grpc.PayoutServiceStub(channel).GetLedger(
                    payout_pb2.GetLedgerRequest(credit_code=firm), metadata=metadata, timeout=10
                )
            return next((g for g in ledger.grants if g.application_id == scoped), None)

        grant = wait_for(f"{scoped}: a grant in payout's ledger", the_grant, 240, logs)
        assert grant.outcome == "ELIGIBLE" and grant.granted_fen == grant.max_award_fen > 0, grant

        recorded = grant_recorded(kafka_bootstrap, f"grant:{scoped}", 60)
        assert recorded is not None, f"no GrantRecorded of {scoped} on subsidy.payouts.v1\n{logs()}"
        assert (recorded.application_id, recorded.credit_code, recorded.granted_fen) == (
            scoped,
            firm,
            grant.granted_fen,
        )

        # Notify read the event from Kafka and wrote the firm's e-mail into its
        # emptyDir (no SMTP configured: .eml files, the only writable path it has).
        def notified() -> str | None:
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT notification_id FROM notify_log WHERE event_id = %s AND channel = 'email'",
                    (f"grant:{scoped}",),
                ).fetchone()
            return row[0] if row else None

        notification = wait_for(f"grant:{scoped}: notify's e-mail", notified, 120, logs)
        mail_dir = environments["notify"]["SUBSIDY_NOTIFY_MAIL_DIR"]
        listed = podman("exec", names["notify"], "python", "-c", f"import os; print(os.listdir({mail_dir!r}))")
        assert f"{notification}.eml" in listed.stdout, listed.stdout

        # Topic creation is off in prod (the KafkaTopics make them): no container made one.
        assert topic_names(kafka_bootstrap) == topics_before
        for service, name in names.items():
            state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.strip()
            assert state == "running 0", f"{service}: {state}\n{logs()}"
    finally:
        for name in names.values():
            podman("rm", "-f", "-t", "5", name, check=False)
        platform.stop()
