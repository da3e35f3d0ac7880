"""The workflow's numbers as dated policy data: ``policy/workflow.yaml``.

Each setting has a unit and a history of values, each with the date it
applies from and its source (the same dated-values style as the clause
parameters, docs/policy-data.md). ``load_workflow`` refuses a malformed file
with ``WorkflowSettingsError`` naming the file and the field;
``WorkflowSettings.on(day)`` gives the values in force on a day.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from subsidy.core.policy import DEFAULT_POLICY_DIR

FILE_NAME = "workflow.yaml"

#: name -> unit; the file must give exactly these.
SETTINGS: Mapping[str, str] = {
    "four_eyes_threshold_fen": "fen",
    "manual_award_limit_fen": "fen",
    "manual_award_tranche_shares_percent": "percent_list",
    "review_deadline_working_days": "working_days",
    "notice_period_working_days": "working_days",
    "hold_grace_days": "days",
    "proposal_window_days": "days",
}


class WorkflowSettingsError(ValueError):
    """A malformed workflow settings file; the message names the file and the field."""

    def __init__(self, path: Path | str, where: str, problem: str):
        super().__init__(f"{path}: {where}: {problem}" if where else f"{path}: {problem}")


@dataclass(frozen=True, slots=True)
class Workflow:
    """The settings in force on one day."""

    four_eyes_threshold_fen: int
    manual_award_limit_fen: int
    manual_award_tranche_shares_percent: tuple[int, ...]
    review_deadline_working_days: int
    notice_period_working_days: int
    hold_grace_days: int
    proposal_window_days: int


@dataclass(frozen=True, slots=True)
class DatedValue:
    applies_from: dt.date
    value: int | tuple[int, ...]
    cites: str


@dataclass(frozen=True, slots=True)
class WorkflowSettings:
    settings: Mapping[str, tuple[DatedValue, ...]]  # each sorted by applies_from
    source: str

    def value(self, name: str, on: dt.date) -> DatedValue:
        values = self.settings[name]
        index = bisect.bisect_right([v.applies_from for v in values], on) - 1
        if index < 0:
            raise WorkflowSettingsError(self.source, f"settings.{name}", f"no value in force on {on.isoformat()}")
        return values[index]

    def on(self, day: dt.date) -> Workflow:
        v = {name: self.value(name, day).value for name in SETTINGS}
        shares = v["manual_award_tranche_shares_percent"]
        assert isinstance(shares, tuple)
        return Workflow(
            four_eyes_threshold_fen=_int(v["four_eyes_threshold_fen"]),
            manual_award_limit_fen=_int(v["manual_award_limit_fen"]),
            manual_award_tranche_shares_percent=shares,
            review_deadline_working_days=_int(v["review_deadline_working_days"]),
            notice_period_working_days=_int(v["notice_period_working_days"]),
            hold_grace_days=_int(v["hold_grace_days"]),
            proposal_window_days=_int(v["proposal_window_days"]),
        )


def _int(value: int | tuple[int, ...]) -> int:
    assert isinstance(value, int)
    return value


def default_path() -> Path:
    return Path(os.environ.get("SUBSIDY_POLICY_DIR") or DEFAULT_POLICY_DIR) / FILE_NAME


def load_workflow(path: Path | str | None = None) -> WorkflowSettings:
    """Load and validate ``policy/workflow.yaml`` (default: in SUBSIDY_POLICY_DIR
    or the checkout's policy/); raise WorkflowSettingsError on the first fault."""
    path = Path(path) if path else default_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkflowSettingsError(path, "", "file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise WorkflowSettingsError(path, "", f"cannot read: {exc}".replace("\n", " ")) from None
    return parse_workflow(data, str(path))


def parse_workflow(data: object, source: str) -> WorkflowSettings:
    if not isinstance(data, dict) or set(data) != {"settings"}:
        raise WorkflowSettingsError(source, "(top level)", "must be a mapping with the one key 'settings'")
    settings = data["settings"]
    if not isinstance(settings, dict):
        raise WorkflowSettingsError(source, "settings", "must be a mapping")
    for name in SETTINGS:
        if name not in settings:
            raise WorkflowSettingsError(source, f"settings.{name}", "is required")
    parsed: dict[str, tuple[DatedValue, ...]] = {}
    for name, spec in settings.items():
        where = f"settings.{name}"
        if name not in SETTINGS:
            raise WorkflowSettingsError(source, where, f"unknown setting (known: {', '.join(SETTINGS)})")
        if not isinstance(spec, dict):
            raise WorkflowSettingsError(source, where, "must be a mapping")
        extra = set(spec) - {"unit", "description", "values"}
        if extra:
            raise WorkflowSettingsError(source, f"{where}.{sorted(extra)[0]}", "unknown field")
        if spec.get("unit") != SETTINGS[name]:
            raise WorkflowSettingsError(
                source, f"{where}.unit", f"must be {SETTINGS[name]!r}, got {spec.get('unit')!r}"
            )
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise WorkflowSettingsError(source, f"{where}.values", "must be a non-empty list")
        dated = [_dated(source, f"{where}.values[{i}]", SETTINGS[name], v) for i, v in enumerate(values)]
        days = [d.applies_from for d in dated]
        if len(set(days)) != len(days):
            raise WorkflowSettingsError(source, f"{where}.values", "two values apply from the same date")
        parsed[name] = tuple(sorted(dated, key=lambda d: d.applies_from))
    return WorkflowSettings(parsed, source)


def _dated(source: str, where: str, unit: str, raw: object) -> DatedValue:
    if not isinstance(raw, dict) or set(raw) != {"from", "value", "cites"}:
        raise WorkflowSettingsError(source, where, "must be a mapping of exactly from, value and cites")
    day = raw["from"]
    if isinstance(day, str):
        with contextlib.suppress(ValueError):
            day = dt.date.fromisoformat(day)
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise WorkflowSettingsError(source, f"{where}.from", f"must be a date YYYY-MM-DD, got {raw['from']!r}")
    cites = raw["cites"]
    if not isinstance(cites, str) or not cites.strip():
        raise WorkflowSettingsError(source, f"{where}.cites", "must name the value's source")
    return DatedValue(day, _unit_value(source, f"{where}.value", unit, raw["value"]), cites.strip())


def _unit_value(source: str, where: str, unit: str, value: object) -> int | tuple[int, ...]:
    if unit == "percent_list":
        if (
            not isinstance(value, list)
            or not value
            or any(type(v) is not int or not 0 < v <= 100 for v in value)
            or sum(value) != 100
        ):
            raise WorkflowSettingsError(
                source, where, f"must be whole percentages (1-100) adding up to 100, got {value!r}"
            )
        return tuple(value)
    if type(value) is not int:
        raise WorkflowSettingsError(source, where, f"must be a whole number of {unit}, got {value!r}")
    minimum = 1 if unit in ("working_days", "days") else 0
    if value < minimum:
        raise WorkflowSettingsError(source, where, f"must be at least {minimum}, got {value}")
    return value
