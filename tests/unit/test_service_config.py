"""subsidy.platform.config: how intake, payout and notify read their
settings (one reader instead of a copy in each config.py)."""

from __future__ import annotations

import pytest

from subsidy.platform.config import Env
from subsidy.platform.security.secrets import SecretError
from subsidy.services.intake.config import Settings as IntakeSettings
from subsidy.services.notify.config import Settings as NotifySettings
from subsidy.services.payout.config import Settings as PayoutSettings
from subsidy.services.review.config import Settings as ReviewSettings


def test_blank_means_the_default_but_a_raw_setting_may_be_set_to_empty():
    e = Env({"A": "  ", "B": " x ", "M": ""})
    assert e.text("A", "d") == "d" and e.text("B", "d") == "x" and e.text("UNSET", "d") == "d"
    assert e.raw("M", "127.0.0.1:9") == "" and e.raw("UNSET", "127.0.0.1:9") == "127.0.0.1:9"


def test_numbers_fall_back_to_the_default_and_a_bad_one_fails_naming_the_value():
    e = Env({"N": " 2.5 ", "W": "7", "BAD": "soon"})
    assert e.number("N", 1.0) == 2.5 and e.whole("W", 1) == 7 and e.number("UNSET", 1.5) == 1.5
    with pytest.raises(ValueError, match="soon"):
        e.number("BAD", 1.0)


def test_a_secret_comes_from_its_file_first(tmp_path):
    path = tmp_path / "url"
    path.write_text("postgresql://u:pw@db/x\n")
    assert Env({"S": "env", "S_FILE": str(path)}).secret("S") == "postgresql://u:pw@db/x"
    with pytest.raises(SecretError, match="S_FILE"):
        Env({"S_FILE": str(tmp_path / "missing")}).secret("S")


@pytest.mark.parametrize(
    "settings, name",
    [(IntakeSettings, "INTAKE"), (PayoutSettings, "PAYOUT"), (NotifySettings, "NOTIFY"), (ReviewSettings, "REVIEW")],
)
def test_every_service_reads_the_common_settings_under_its_own_prefix(settings, name):
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
        f"SUBSIDY_{name}_GRPC_ADDRESS": "0.0.0.0:1",
        f"SUBSIDY_{name}_DATABASE_URL": "sqlite:///x.db",
        f"SUBSIDY_{name}_METRICS_ADDRESS": "",
        f"SUBSIDY_{name}_GRACE_SECONDS": "2",
        f"SUBSIDY_{name}_HEALTH_INTERVAL_SECONDS": "0.5",
        f"SUBSIDY_{name}_STALL_SECONDS": "9",
        "SUBSIDY_LOG_LEVEL": "debug",
    }
    s = settings.from_env(env)
    assert (
        s.kafka_bootstrap,
        s.grpc_address,
        s.database_url,
        s.metrics_address,
        s.grace_s,
        s.health_interval_s,
        s.stall_s,
        s.log_level,
    ) == ("k:9092", "0.0.0.0:1", "sqlite:///x.db", "", 2.0, 0.5, 9.0, "DEBUG")
    assert settings.from_env({}) == settings()


def test_the_services_own_settings_are_read_too():
    payout = PayoutSettings.from_env(
        {
            "SUBSIDY_PAYOUT_TODAY": " 2026-03-01 ",
            "SUBSIDY_PAYOUT_METRICS_REFRESH_SECONDS": "3",
            "SUBSIDY_PAYOUT_KAFKA_SESSION_TIMEOUT_MS": "6000",
        }
    )
    assert (payout.today, payout.metrics_refresh_s, payout.session_timeout_ms) == ("2026-03-01", 3.0, 6000)
    intake = IntakeSettings.from_env({"SUBSIDY_REGISTRY_ATTEMPTS": "5", "SUBSIDY_INTAKE_METRICS_REFRESH_SECONDS": "1"})
    assert (intake.registry_attempts, intake.metrics_refresh_s) == (5, 1.0)
    notify = NotifySettings.from_env({"SUBSIDY_NOTIFY_ATTEMPTS": "0", "SUBSIDY_NOTIFY_MAIL_DIR": " var/m "})
    assert (notify.attempts, notify.mail_dir) == (1, "var/m")
