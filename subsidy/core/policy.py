"""The policy as dated data: loading and validating ``policy/``.

``policy/policy.yaml`` names the policy, its version and the date it applies
from (the text leaves 2022年**月**日 blank, so it is a setting);
``policy/clauses/<clause>.yaml`` holds one clause item each: the text it
cites, its parameters (each value with the date it applies from and the words
of the clause it comes from), how the ledger limits it, and its schedule.

A malformed policy is refused at start-up with ``PolicyError`` naming the file
and the field. Which clauses exist, and which parameters each needs in which
unit, is declared by the clause modules beside their rules
(``subsidy/core/clauses/``, ``Clause.parameters``), so data and code cannot
drift apart silently: a clause module without its file, or a file without
its module, is refused too.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from subsidy.core import clauses, domain
from subsidy.core.clauses import UNITS

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY_DIR = REPO_ROOT / "policy"

LEDGER_LIMITS = (domain.LimitKind.CUMULATIVE_CAP, domain.LimitKind.ONCE)


class PolicyError(ValueError):
    """A malformed policy file; the message names the file and the field."""

    def __init__(self, path: Path | str, where: str, problem: str):
        super().__init__(f"{path}: {where}: {problem}" if where else f"{path}: {problem}")


# A parameter's value, of the type its unit gives (_check_value): int (fen,
# count, years, percent), tuple[int, ...] (percent_list), frozenset[str] or
# None for ANY (kinds), str (text), tuple[str, ...] (text_list),
# dict[str, int] (fen_table).
UnitValue = int | str | tuple[int, ...] | tuple[str, ...] | frozenset[str] | dict[str, int] | None


@dataclass(frozen=True, slots=True)
class ParameterValue:
    applies_from: dt.date
    value: UnitValue
    cites: str


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    unit: str
    description: str
    values: tuple[ParameterValue, ...]  # sorted by applies_from

    def at(self, on: dt.date) -> ParameterValue | None:
        index = bisect.bisect_right([v.applies_from for v in self.values], on) - 1
        return self.values[index] if index >= 0 else None


@dataclass(frozen=True, slots=True)
class Ledger:
    limit: str | None  # LimitKind, or None for clauses that pay nothing
    scope_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClausePolicy:
    clause: str
    claim: str
    item: str
    title: str
    text: str
    parameters: Mapping[str, Parameter]
    ledger: Ledger
    source: str
    _snapshots: tuple[tuple[dt.date, Mapping[str, Any]], ...] = field(repr=False, default=())
    #: A later policy version may retire the clause (subsidy/core/versions.py):
    #: then the words citing why, and applications of it are INELIGIBLE.
    retired_cites: str | None = None

    def parameters_on(self, on: dt.date) -> Mapping[str, Any] | None:
        """Every parameter's value in force on a date; None before the first.
        Typed as the rules read it (subsidy.core.clauses.Rule): each value is
        the UnitValue its declared unit gives."""
        # A clause has a handful of dated snapshots, sorted by date, so the
        # latest one in force is found by walking back from the newest; this
        # runs once per application (bench/calculator.py).
        for applies_from, values in reversed(self._snapshots):
            if applies_from <= on:
                in_force: Mapping[str, Any] = values
                return in_force
        return None


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: str
    effective_from: dt.date
    scope_text: str
    clauses: Mapping[str, ClausePolicy]
    directory: Path


# ------------------------------------------------------------------ loading


def load_policy(directory: Path | str | None = None) -> Policy:
    """Load and validate the policy; raise PolicyError on the first fault."""
    directory = Path(directory or os.environ.get("SUBSIDY_POLICY_DIR") or DEFAULT_POLICY_DIR)
    index_path = directory / "policy.yaml"
    index = _expect_keys(index_path, "", _read_yaml(index_path), {"name", "version", "effective_from", "scope"}, set())
    name = _text(index_path, "name", index["name"])
    declared_version = _text(index_path, "version", index["version"])
    effective_from = _date(index_path, "effective_from", index["effective_from"])
    scope = _expect_keys(index_path, "scope", index["scope"], {"text"}, set())
    scope_text = _text(index_path, "scope.text", scope["text"])

    clause_dir = directory / "clauses"
    files = sorted(clause_dir.glob("*.yaml"))
    digest = hashlib.sha256(index_path.read_bytes())
    loaded: dict[str, ClausePolicy] = {}
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
        clause = _load_clause(path, effective_from)
        if clause.clause in loaded:
            raise PolicyError(path, "clause", f"{clause.clause} is already defined in {loaded[clause.clause].source}")
        loaded[clause.clause] = clause
    missing = [c for c in clauses.ALL if c.id not in loaded]
    if missing:
        listed = "; ".join(f"clause {c.id} (declared in {c.module}) needs {c.id}.yaml" for c in missing)
        raise PolicyError(clause_dir, "", f"no file for clause(s) {', '.join(c.id for c in missing)}: {listed}")
    return Policy(
        name=name,
        version=f"{declared_version}+{digest.hexdigest()[:8]}",
        effective_from=effective_from,
        scope_text=scope_text,
        clauses=loaded,
        directory=directory,
    )


# The base is chosen at run time: libyaml's CSafeLoader when PyYAML was built
# with it, else the pure-Python SafeLoader. mypy cannot type a base class
# chosen at run time ("Unsupported dynamic base class").
class _DatesAsText(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Leaves dates as text, so an impossible date is refused by _date naming
    its field instead of failing inside the YAML parser."""


_DatesAsText.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _read_yaml(path: Path) -> object:
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_DatesAsText)  # noqa: S506  # nosec B506 - _DatesAsText is a SafeLoader
    except FileNotFoundError:
        raise PolicyError(path, "", "file not found") from None
    except yaml.YAMLError as exc:
        raise PolicyError(path, "", f"not valid YAML: {exc}".replace("\n", " ")) from None


def _expect_keys(path: Path, where: str, obj: object, required: set[str], optional: set[str]) -> Mapping[str, object]:
    """The mapping ``obj`` is, once it has every required key and no other
    than the optional ones (so every key is one of these strings)."""
    if not isinstance(obj, dict):
        raise PolicyError(path, where or "(top level)", "must be a mapping")
    for key in required:
        if key not in obj:
            raise PolicyError(path, f"{where}.{key}".lstrip("."), "is required")
    for key in obj:
        if key not in required | optional:
            raise PolicyError(path, f"{where}.{key}".lstrip("."), "unknown field")
    return obj


def _text(path: Path, where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(path, where, "must be a non-empty string")
    return value.strip()


def _date(path: Path, where: str, value: object) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise PolicyError(path, where, f"must be a date YYYY-MM-DD, got {value!r}")


def _whole(path: Path, where: str, value: object, minimum: int = 0, maximum: int | None = None) -> int:
    if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"{minimum}..{maximum}"
        raise PolicyError(path, where, f"must be a whole number {bounds}, got {value!r}")
    return value


def _check_value(path: Path, where: str, unit: str, value: object) -> UnitValue:
    if unit in ("fen", "count"):
        return _whole(path, where, value)
    if unit == "years":
        return _whole(path, where, value, minimum=1)
    if unit == "percent":
        return _whole(path, where, value, maximum=100)
    if unit == "percent_list":
        if not isinstance(value, list) or not value:
            raise PolicyError(path, where, "must be a non-empty list of percentages")
        shares = [_whole(path, f"{where}[{i}]", v, minimum=1, maximum=100) for i, v in enumerate(value)]
        if sum(shares) != 100:
            raise PolicyError(path, where, f"percentages must add up to 100, got {sum(shares)}")
        return tuple(shares)
    if unit == "kinds":
        if value == "ANY":
            return None
        if not isinstance(value, list) or not value:
            raise PolicyError(path, where, "must be ANY or a non-empty list of firm kinds")
        for i, kind in enumerate(value):
            if kind not in domain.FIRM_KINDS:
                raise PolicyError(path, f"{where}[{i}]", f"unknown firm kind {kind!r}")
        return frozenset(value)
    if unit == "text":
        return _text(path, where, value)
    if unit == "text_list":
        if not isinstance(value, list) or not value:
            raise PolicyError(path, where, "must be a non-empty list of strings")
        return tuple(
            _text(path, f"{where}[{i}]", str(v) if isinstance(v, (int, float)) else v) for i, v in enumerate(value)
        )
    if unit == "fen_table":
        if not isinstance(value, dict) or not value:
            raise PolicyError(path, where, "must be a non-empty mapping of key to fen")
        return {str(k): _whole(path, f"{where}.{k}", v) for k, v in value.items()}
    raise PolicyError(path, where, f"unknown unit {unit!r}")


def _load_parameter(path: Path, name: str, raw: object, unit: str) -> Parameter:
    where = f"parameters.{name}"
    spec = _expect_keys(path, where, raw, {"unit", "values"}, {"description"})
    if spec["unit"] != unit:
        raise PolicyError(path, f"{where}.unit", f"must be {unit!r} ({UNITS[unit]}), got {spec['unit']!r}")
    values_raw = spec["values"]
    if not isinstance(values_raw, list) or not values_raw:
        raise PolicyError(path, f"{where}.values", "must be a non-empty list of dated values")
    values = []
    for i, entry_raw in enumerate(values_raw):
        at = f"{where}.values[{i}]"
        entry = _expect_keys(path, at, entry_raw, {"from", "value", "cites"}, set())
        values.append(
            ParameterValue(
                applies_from=_date(path, f"{at}.from", entry["from"]),
                value=_check_value(path, f"{at}.value", unit, entry["value"]),
                cites=_text(path, f"{at}.cites", entry["cites"]),
            )
        )
    dates = [v.applies_from for v in values]
    if dates != sorted(dates) or len(set(dates)) != len(dates):
        raise PolicyError(path, f"{where}.values", "dates must be strictly increasing")
    return Parameter(name, unit, str(spec.get("description", "")), tuple(values))


def _load_clause(path: Path, effective_from: dt.date) -> ClausePolicy:
    raw = _expect_keys(
        path, "", _read_yaml(path), {"clause", "claim", "item", "title", "text", "parameters", "ledger"}, set()
    )
    clause = _text(path, "clause", str(raw["clause"]))
    declared = clauses.BY_ID.get(clause)
    if declared is None:
        raise PolicyError(
            path,
            "clause",
            f"unknown clause {clause!r}: no module under subsidy/core/clauses/ declares it "
            f"(declared: {', '.join(clauses.IDS)})",
        )
    if raw["claim"] != declared.key:
        raise PolicyError(
            path, "claim", f"clause {clause} is claimed as {declared.key!r} ({declared.module}), got {raw['claim']!r}"
        )
    if path.stem != clause:
        raise PolicyError(path, "clause", f"file must be named {clause}.yaml")
    required = clauses.given(declared.parameters, declared, "parameters")
    params_raw = _expect_keys(path, "parameters", raw["parameters"], set(required), set())
    parameters = {name: _load_parameter(path, name, params_raw[name], unit) for name, unit in required.items()}
    ledger = _load_ledger(path, raw["ledger"], declared, parameters)

    return ClausePolicy(
        clause=clause,
        claim=declared.key,  # the file's claim, which is this (checked above)
        item=_text(path, "item", str(raw["item"])),
        title=_text(path, "title", raw["title"]),
        text=_text(path, "text", raw["text"]),
        parameters=parameters,
        ledger=ledger,
        source=str(path),
        _snapshots=snapshots(parameters, effective_from),
    )


def snapshots(
    parameters: Mapping[str, Parameter], effective_from: dt.date
) -> tuple[tuple[dt.date, Mapping[str, Any]], ...]:
    """One snapshot per date on which any parameter changes, from the policy's
    start: evaluation then looks one date up instead of one per parameter."""
    change_dates = sorted({effective_from} | {v.applies_from for p in parameters.values() for v in p.values})
    found = []
    for day in change_dates:
        if day < effective_from:
            continue
        in_force = [(name, p.at(day)) for name, p in parameters.items()]
        values = {name: v.value for name, v in in_force if v is not None}
        if len(values) < len(in_force):
            continue  # a parameter has no value yet: the clause is not in force
        found.append((day, values))
    return tuple(found)


def _load_ledger(path: Path, raw: object, declared: clauses.Clause, parameters: Mapping[str, Parameter]) -> Ledger:
    spec = _expect_keys(path, "ledger", raw, {"limit"}, {"scope_by"})
    limit = spec["limit"]
    if not declared.pays:
        if limit is not None:
            raise PolicyError(path, "ledger.limit", "this clause sets no amount: must be null")
        return Ledger(None, ())
    if not isinstance(limit, str) or limit not in LEDGER_LIMITS:
        raise PolicyError(path, "ledger.limit", f"must be one of {', '.join(LEDGER_LIMITS)}, got {limit!r}")
    if limit == domain.LimitKind.CUMULATIVE_CAP and "cap_fen" not in parameters:
        raise PolicyError(path, "ledger.limit", "cumulative_cap needs a cap_fen parameter")
    scope_by = spec.get("scope_by") or []
    if not isinstance(scope_by, list):
        raise PolicyError(path, "ledger.scope_by", "must be a list of claim fields")
    allowed = set(clauses.given(declared.claim, declared, "claim").__dataclass_fields__) | set(declared.scope_parts)
    for i, part in enumerate(scope_by):
        if part not in allowed:
            raise PolicyError(path, f"ledger.scope_by[{i}]", f"{part!r} is not a field of the {declared.key} claim")
    return Ledger(limit, tuple(scope_by))
