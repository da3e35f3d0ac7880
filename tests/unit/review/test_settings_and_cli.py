"""The review service's settings from the environment, its clock and start-up
refusals, and ``subsidy dev clock`` (refused unless SUBSIDY_DEV_MODE=1)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from subsidy.cli import main
from subsidy.platform.clock import DevClock, DevClockError, FixedClock, clock_from_env
from subsidy.services.review.config import Settings


def test_settings_from_the_environment():
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
            "SUBSIDY_REVIEW_GRPC_ADDRESS": "0.0.0.0:1",
            "SUBSIDY_REVIEW_DATABASE_URL": "sqlite:///x.db",
            "SUBSIDY_REVIEW_METRICS_ADDRESS": "",
            "SUBSIDY_REVIEW_GROUP": "g1",
            "SUBSIDY_REVIEW_PAYOUTS_GROUP": "g2",
            "SUBSIDY_REVIEW_APPLICATIONS_GROUP": "g3",
            "SUBSIDY_REVIEW_SCHEDULER_INTERVAL_SECONDS": "0.5",
            "SUBSIDY_REVIEW_NOTICE_FONT": "/f.ttf",
            "SUBSIDY_REVIEW_WORKFLOW_FILE": "/w.yaml",
            "SUBSIDY_LOG_LEVEL": "debug",
        }
    )
    assert (s.kafka_bootstrap, s.grpc_address, s.database_url, s.metrics_address) == (
        "k:9092",
        "0.0.0.0:1",
        "sqlite:///x.db",
        "",
    )
    assert (s.decisions_group, s.payouts_group, s.applications_group) == ("g1", "g2", "g3")
    assert (s.scheduler_interval_s, s.notice_font, s.workflow_file, s.log_level) == (0.5, "/f.ttf", "/w.yaml", "DEBUG")
    d = Settings.from_env({})
    assert (d.grpc_address, d.database_url, d.decisions_group) == (
        "127.0.0.1:50055",
        "sqlite:///var/review.db",
        "subsidy-review",
    )


def test_the_clock_is_the_dev_clock_only_in_dev_mode(tmp_path):
    assert clock_from_env(
        {"SUBSIDY_REVIEW_TODAY": "2025-01-24"}, fixed_today_variable="SUBSIDY_REVIEW_TODAY"
    ) == FixedClock(dt.date(2025, 1, 24))
    with pytest.raises(DevClockError, match="SUBSIDY_DEV_MODE"):
        clock_from_env(
            {"SUBSIDY_DEV_CLOCK_FILE": str(tmp_path / "c.json")}, fixed_today_variable="SUBSIDY_REVIEW_TODAY"
        )


def run(capsys, monkeypatch, *args, dev=True, file=None):
    monkeypatch.setenv("SUBSIDY_DEV_MODE", "1" if dev else "0")
    if file is not None:
        monkeypatch.setenv("SUBSIDY_DEV_CLOCK_FILE", str(file))
    code = main(["dev", "clock", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dev_clock_is_refused_outside_dev_mode(capsys, monkeypatch, tmp_path):
    code, out, err = run(capsys, monkeypatch, "start", dev=False, file=tmp_path / "c.json")
    assert code == 2 and out == "" and "SUBSIDY_DEV_MODE" in err
    assert not (tmp_path / "c.json").exists()


def test_dev_clock_start_advance_speed_show(capsys, monkeypatch, tmp_path):
    path = tmp_path / "c.json"
    code, out, _ = run(capsys, monkeypatch, "start", "--at", "2025-09-26", file=path)
    assert code == 0 and json.loads(out)["today"] == "2025-09-26"
    code, out, _ = run(capsys, monkeypatch, "advance", "--days", "2", file=path)
    assert json.loads(out)["today"] == "2025-09-28" and DevClock(path).today() == dt.date(2025, 9, 28)
    before = DevClock(path).now()
    code, out, _ = run(capsys, monkeypatch, "speed", "86400", file=path)
    assert code == 0 and json.loads(out)["speed"] == 86400
    assert DevClock(path).now() >= before  # changing the speed never moves time back
    code, out, err = run(capsys, monkeypatch, "advance", "--days", "-1", file=path)
    assert code == 2 and "forward" in err
    code, out, err = run(capsys, monkeypatch, "speed", "0", file=path)
    assert code == 2 and "speed" in err
    code, out, err = run(capsys, monkeypatch, "show", file=tmp_path / "missing.json")
    assert code == 2 and "SUBSIDY_DEV_CLOCK_FILE" in err


def test_dev_clock_without_a_file_names_the_variable(capsys, monkeypatch):
    monkeypatch.delenv("SUBSIDY_DEV_CLOCK_FILE", raising=False)
    code, _, err = run(capsys, monkeypatch, "show")
    assert code == 2 and "SUBSIDY_DEV_CLOCK_FILE" in err


def test_the_service_refuses_to_start_without_a_cjk_font_or_with_bad_settings(tmp_path):
    from subsidy.core.workflow.settings import WorkflowSettingsError
    from subsidy.services.review.adapters.document import FontMissing
    from subsidy.services.review.bootstrap import ReviewApp

    url = f"sqlite:///{tmp_path / 'review.db'}"
    with pytest.raises(FontMissing, match="SUBSIDY_REVIEW_NOTICE_FONT"):
        ReviewApp(Settings(database_url=url, notice_font=str(tmp_path / "none.ttf")), FixedClock(dt.date(2025, 1, 2)))
    bad = tmp_path / "workflow.yaml"
    bad.write_text("settings: {}\n", encoding="utf-8")
    with pytest.raises(WorkflowSettingsError, match="four_eyes_threshold_fen: is required"):
        ReviewApp(Settings(database_url=url, workflow_file=str(bad)), FixedClock(dt.date(2025, 1, 2)))


def test_subsidy_policy_lists_and_validates_the_workflow_settings(capsys, tmp_path, monkeypatch):
    import shutil

    from subsidy.core.policy import DEFAULT_POLICY_DIR

    assert main(["policy"]) == 0
    out = capsys.readouterr().out
    assert "workflow settings (workflow.yaml)" in out
    assert "notice_period_working_days = 5 from 2022-01-01" in out
    shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policy")
    (tmp_path / "policy" / "workflow.yaml").write_text("settings: {}\n", encoding="utf-8")
    monkeypatch.setenv("SUBSIDY_POLICY_DIR", str(tmp_path / "policy"))
    assert main(["policy"]) == 3
    assert "settings.four_eyes_threshold_fen: is required" in capsys.readouterr().err
