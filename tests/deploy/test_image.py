"""The runtime image (deploy/image/build.sh, `make image`), smoke-tested with
podman on this machine (`make image-smoke`; not part of `make test`: it
needs the image built, root and podman).

- its posture: uid 10001, a read-only root filesystem, no compiler, no pip,
  no grpcio-tools, exactly the locked distributions;
- one application end to end through two containers of the image, run as the
  Deployments run them (read-only, non-root, all capabilities dropped, /tmp
  the only writable path, the policy mounted read-only): eligibility and
  payout against the local Kafka broker and PostgreSQL; each one's health
  port answers SERVING for liveness and readiness; an Application produced
  to subsidy.applications.v1 becomes a grant in payout's ledger whose outbox
  events reach Kafka.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("IMAGE", "songjiang-subsidy:dev")
LOCK = ROOT / "deploy" / "image" / "requirements.lock"

pytestmark = pytest.mark.skipif(
    os.environ.get("SUBSIDY_IMAGE_SMOKE") != "1", reason="the image smoke test runs with `make image-smoke`"
)

# What a Deployment's securityContext and volumes give the container.
LOCKED_DOWN = (
    "--read-only",
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

    for path in ("/opt/subsidy/lib/subsidy/x", "/etc/x", "/usr/x"):
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
    # The services of the commit the image was built from (build.sh writes it), not the working tree's.
    revision = run_python("print(open('/opt/subsidy/lib/subsidy/REVISION').read().strip())").stdout.strip()
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", revision, "subsidy/services"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.split()  # fmt: skip
    services = sorted({f.split("/")[2] for f in files if f.endswith("/bootstrap.py")})
    assert {"intake", "eligibility", "payout", "notify"} <= set(services)
    code = ";".join(f"import subsidy.services.{s}.bootstrap" for s in services) + ";import subsidy.cli"
    if "review" in services:  # review refuses to start without a CJK font for the notice PDF
        code += ";from subsidy.services.review.adapters import document;document.find_font()"
    code += ";print('ok')"
    result = run_python(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def health(port: int, name: str) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
        except grpc.RpcError as exc:
            return exc.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def wait_for(what: str, check, timeout: float, logs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"{what} within {timeout:.0f} s\n{logs()}")


def test_one_application_end_to_end_through_the_image(kafka_bootstrap, postgres_url, tmp_path):
    import psycopg
    from kafka import KafkaProducer

    from subsidy.contracts import codec, topics
    from subsidy.platform import topics as platform_topics

    platform_topics.ensure_all(kafka_bootstrap)
    run = uuid.uuid4().hex[:8]
    database = f"image_smoke_{run}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    payout_db = re.sub(r"/[^/?]+(\?|$)", f"/{database}\\1", postgres_url, count=1)

    base = ("--network", "host", *LOCKED_DOWN, "-e", f"KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap}")
    migrate = podman(
        "run", "--rm", *base, IMAGE, "python", "-m", "subsidy.cli", "migrate", "--service", "payout",
        "--database-url", payout_db, check=False, timeout=180,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    ports = {name: (free_port(), free_port()) for name in ("eligibility", "payout")}
    env = {
        "eligibility": {
            "SUBSIDY_ELIGIBILITY_GRPC_ADDRESS": f"127.0.0.1:{ports['eligibility'][0]}",
            "SUBSIDY_ELIGIBILITY_METRICS_PORT": "0",
            "SUBSIDY_ELIGIBILITY_DATA_DIR": "/tmp/eligibility",
            "SUBSIDY_HEALTH_ADDRESS": f"127.0.0.1:{ports['eligibility'][1]}",
        },
        "payout": {
            "SUBSIDY_PAYOUT_GRPC_ADDRESS": f"127.0.0.1:{ports['payout'][0]}",
            "SUBSIDY_PAYOUT_METRICS_ADDRESS": "",
            "SUBSIDY_PAYOUT_DATABASE_URL": payout_db,
            "SUBSIDY_PAYOUT_GROUP": f"smoke-{run}",
            "SUBSIDY_PAYOUT_PAYMENTS_GROUP": f"smoke-{run}-payments",
            "SUBSIDY_PAYOUT_NOTICES_GROUP": f"smoke-{run}-notices",
            "SUBSIDY_HEALTH_ADDRESS": f"127.0.0.1:{ports['payout'][1]}",
        },
    }
    readiness = {"eligibility": "subsidy.v1.PolicyService", "payout": "subsidy.v1.PayoutService"}
    names = {service: f"subsidy-smoke-{service}-{run}" for service in env}

    def logs() -> str:
        return "\n".join(
            f"--- {n}\n" + podman("logs", "--tail", "40", n, check=False).stderr[-3000:] for n in names.values()
        )

    try:
        for service, variables in env.items():
            flags = [f for k, v in variables.items() for f in ("-e", f"{k}={v}")]
            podman(
                "run", "-d", "--name", names[service], *base, *flags,
                "-v", f"{ROOT / 'policy'}:/etc/subsidy/policy:ro",
                IMAGE, "python", "-m", f"subsidy.services.{service}",
            )  # fmt: skip
        for service, (_, health_port) in ports.items():
            wait_for(f"{service} alive", lambda p=health_port: health(p, "subsidy.liveness") == "SERVING", 120, logs)
            wait_for(
                f"{service} ready", lambda p=health_port, s=service: health(p, readiness[s]) == "SERVING", 180, logs
            )

        # A small award (36 000 yuan): applied at once, below the four-eyes review threshold.
        lines = [json.loads(x) for x in (ROOT / "demo" / "applications.jsonl").read_text().splitlines() if x]
        (line,) = [x for x in lines if x["application_id"] == "SJ-2023-0003"]
        application_id = f"SMOKE-{run}"
        line["application_id"] = application_id
        message = codec.application_to_proto(codec.parse_application(line))
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        producer.send(
            topics.APPLICATIONS.name, key=line["firm"]["credit_code"].encode(), value=message.SerializeToString()
        ).get(30)
        producer.close()

        def decided() -> bool:
            with psycopg.connect(payout_db) as conn:
                return bool(
                    conn.execute("SELECT 1 FROM payout_inbox WHERE application_id = %s", (application_id,)).fetchone()
                )

        wait_for("the application decided and the decision in payout's inbox", decided, 180, logs)
        with psycopg.connect(payout_db) as conn:
            (result,) = conn.execute(
                "SELECT result FROM payout_inbox WHERE application_id = %s", (application_id,)
            ).fetchone()
        assert result == "applied", result

        def granted_and_published() -> bool:
            with psycopg.connect(payout_db) as conn:
                grants = conn.execute(
                    "SELECT count(*) FROM payout_grants WHERE application_id = %s", (application_id,)
                ).fetchone()[0]
                published = conn.execute(
                    "SELECT count(*) FROM payout_outbox WHERE published_at IS NOT NULL"
                ).fetchone()[0]
            return grants == 1 and published >= 1

        wait_for("the application decided, granted and its events published", granted_and_published, 180, logs)
    finally:
        for name in names.values():
            podman("rm", "-f", "-t", "5", name, check=False)
