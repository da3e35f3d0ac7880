"""Settings from the environment."""

from pathlib import Path

import pytest

from subsidy.services.eligibility.config import ConfigError, Settings


def test_without_environment_the_defaults_are_a_local_broker_and_the_documented_ports():
    s = Settings.from_env({})
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.grpc_address == "127.0.0.1:50052"
    assert s.metrics_port == 9102
    assert s.data_dir == Path("var/eligibility")
    assert s.policy_dir is None
    assert s.app_id == "subsidy-eligibility"
    assert s.topic_replication_factor == 1
    assert s.max_in_flight == 1000


def test_every_setting_is_read_from_its_variable():
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "SUBSIDY_ELIGIBILITY_GRPC_ADDRESS": "0.0.0.0:6000",
            "SUBSIDY_ELIGIBILITY_METRICS_PORT": "0",
            "SUBSIDY_POLICY_DIR": "/srv/policy",
            "SUBSIDY_ELIGIBILITY_DATA_DIR": "/var/lib/eligibility",
            "SUBSIDY_ELIGIBILITY_TOPIC_REPLICATION_FACTOR": "3",
            "SUBSIDY_ELIGIBILITY_MAX_IN_FLIGHT": "64",
        }
    )
    assert s.broker_urls == ["kafka://k1:9092", "kafka://k2:9092"]
    assert (s.grpc_address, s.metrics_port, s.topic_replication_factor) == ("0.0.0.0:6000", 0, 3)
    assert s.policy_dir == Path("/srv/policy") and s.data_dir == Path("/var/lib/eligibility")
    assert s.max_in_flight == 64


@pytest.mark.parametrize(
    "name, value",
    [
        ("SUBSIDY_ELIGIBILITY_METRICS_PORT", "http"),
        ("SUBSIDY_ELIGIBILITY_METRICS_PORT", "70000"),
        ("SUBSIDY_ELIGIBILITY_GRPC_ADDRESS", "50052"),
        ("SUBSIDY_ELIGIBILITY_TOPIC_REPLICATION_FACTOR", "0"),
        ("SUBSIDY_ELIGIBILITY_MAX_IN_FLIGHT", "0"),
        ("SUBSIDY_ELIGIBILITY_MAX_IN_FLIGHT", "many"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_metrics_bind_loopback_by_default_like_the_other_services():
    """Issue 17: the default bound every interface; pods set 0.0.0.0 explicitly
    (deploy/k8s/base/config/eligibility.env, checked by tests/ops/test_k8s.py)."""
    assert Settings().metrics_address == "127.0.0.1"
    assert Settings.from_env({}).metrics_address == "127.0.0.1"
    pod = Settings.from_env({"SUBSIDY_ELIGIBILITY_METRICS_ADDRESS": "0.0.0.0"})
    assert pod.metrics_address == "0.0.0.0"


def test_the_adoption_trail_is_the_shared_topic_unless_a_file_is_asked_for():
    assert Settings.from_env({}).adoption_store == "topic"
    assert Settings.from_env({}).adoption_topic == "subsidy.policy.adoptions.v1"
    assert Settings.from_env({"SUBSIDY_ELIGIBILITY_ADOPTION_TOPIC": "t.x"}).adoption_topic == "t.x"
    assert Settings.from_env({"SUBSIDY_ELIGIBILITY_ADOPTION_STORE": "File"}).adoption_store == "file"
    with pytest.raises(ConfigError, match="SUBSIDY_ELIGIBILITY_ADOPTION_STORE: expected topic or file, got 'disk'"):
        Settings.from_env({"SUBSIDY_ELIGIBILITY_ADOPTION_STORE": "disk"})


@pytest.mark.parametrize(
    "env, level",
    [
        ({}, "INFO"),
        ({"SUBSIDY_LOG_LEVEL": "warning"}, "WARNING"),
        ({"SUBSIDY_LOG_LEVEL": "warning", "SUBSIDY_ELIGIBILITY_LOG_LEVEL": "debug"}, "DEBUG"),
        ({"SUBSIDY_ELIGIBILITY_LOG_LEVEL": "error"}, "ERROR"),
    ],
)
def test_the_log_level_is_its_own_variable_else_the_one_every_service_reads(env, level):
    assert Settings.from_env(env).log_level == level


def test_intake_is_where_adoption_finds_the_open_applications(tmp_path):
    """ADR 0021: AdoptVersion reads intake's ListApplications; plaintext by
    default (dev), TLS verified against a CA file that must exist."""
    default = Settings.from_env({})
    assert (default.intake_address, default.intake_tls_ca_file, default.intake_timeout_seconds) == (
        "127.0.0.1:50051",
        "",
        10.0,
    )
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env(
        {
            "SUBSIDY_ELIGIBILITY_INTAKE_ADDRESS": "subsidy-intake:50051",
            "SUBSIDY_ELIGIBILITY_INTAKE_TLS_CA_FILE": str(ca),
            "SUBSIDY_ELIGIBILITY_INTAKE_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert (settings.intake_address, settings.intake_tls_ca_file, settings.intake_timeout_seconds) == (
        "subsidy-intake:50051",
        str(ca),
        2.5,
    )
    with pytest.raises(ConfigError, match="SUBSIDY_ELIGIBILITY_INTAKE_ADDRESS: must be host:port, got 'intake'"):
        Settings.from_env({"SUBSIDY_ELIGIBILITY_INTAKE_ADDRESS": "intake"})
    with pytest.raises(ConfigError, match="SUBSIDY_ELIGIBILITY_INTAKE_TLS_CA_FILE: no such file"):
        Settings.from_env({"SUBSIDY_ELIGIBILITY_INTAKE_TLS_CA_FILE": str(tmp_path / "missing.crt")})
    with pytest.raises(ConfigError, match="SUBSIDY_ELIGIBILITY_INTAKE_TIMEOUT_SECONDS: must be >= 0.1"):
        Settings.from_env({"SUBSIDY_ELIGIBILITY_INTAKE_TIMEOUT_SECONDS": "0"})
