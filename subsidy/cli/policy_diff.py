"""`subsidy policy diff OLD NEW`: what a policy version changes, parameter by
parameter with both citations, and with ``--applications FILE`` what it does
to those applications and to each budget year's outlay, through the
calculator (caps, one-time awards and tranches included: two in-memory
ledgers, ``subsidy.contracts.calculator.Comparison``).

Outputs: plain text for people (amounts in 元), JSON lines for machines
(amounts in fen; one record per change, application, budget year and the
total, each with a ``kind``), and a chart of the outlay per budget year
under both versions (``--chart out.svg|png``, matplotlib, ``subsidy/cli/chart.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from subsidy.cli.report import OUTCOME_NAMES, _render, yuan_column
from subsidy.core.versions import Change, Version


def _shown(value: object) -> object:
    if value is None:
        return "ANY"
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def change_record(change: Change) -> dict[str, Any]:
    def entries(side: tuple[tuple[str, object, str], ...]) -> list[dict[str, Any]]:
        return [{"from": f, "value": _shown(v), "cites": c} for f, v, c in side]

    record: dict[str, Any] = {"kind": change.kind}
    if change.clause:
        record["clause"] = change.clause
    if change.parameter:
        record["parameter"] = change.parameter
    record["old"] = entries(change.old)
    record["new"] = entries(change.new)
    return record


def records(old: Version, new: Version, changes: list[Change], comparison: Any | None) -> Iterable[dict[str, Any]]:
    """Every JSON line, in order: the two versions, the changes, then (with
    applications) each application, each budget year and the total."""
    for side, version in (("old", old), ("new", new)):
        yield {
            "kind": "version",
            "side": side,
            "id": version.id,
            "policy_version": version.policy.version,
            "status": version.status,
            "effective_from": version.effective_from.isoformat(),
            "fictional": version.fictional,
            "citations": list(version.citations),
        }
    for change in changes:
        yield change_record(change)
    if comparison is None:
        return
    for row in comparison.rows:
        yield {"kind": "application", **row}
    for firm in comparison.by_firm():
        yield {"kind": "firm", **firm}
    years = comparison.by_year()
    for year in years:
        yield {"kind": "budget_year", **year}
    yield {
        "kind": "total",
        "applications": len(comparison.rows),
        "differing": sum(1 for r in comparison.rows if r["differs"]),
        "old_fen": sum(y["old_fen"] for y in years),
        "new_fen": sum(y["new_fen"] for y in years),
        "difference_fen": sum(y["difference_fen"] for y in years),
    }


def jsonl(old: Version, new: Version, changes: list[Change], comparison: Any | None) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records(old, new, changes, comparison))


def _value(entries: tuple[tuple[str, object, str], ...]) -> list[str]:
    if not entries:
        return ["(none)"]
    return [f"{_shown(v)!s} from {f} ({c})" if f else f"{_shown(v)!s} ({c})" for f, v, c in entries]


def _version_line(side: str, version: Version) -> str:
    flags = [version.status] + (["FICTIONAL"] if version.fictional else [])
    return f"{side}: {version.id} ({version.policy.version}; {', '.join(flags)}; from {version.effective_from})"


def text(old: Version, new: Version, changes: list[Change], comparison: Any | None) -> str:
    lines = [_version_line("old", old), _version_line("new", new), ""]
    if not changes:
        lines.append("no difference in the policy data")
    else:
        lines.append(f"{len(changes)} difference(s) in the policy data:")
    for change in changes:
        if change.kind == "effective_from":
            title = "effective date (施行日期)"
        elif change.kind == "parameter":
            title = f"clause {change.clause}: {change.parameter}"
        else:
            title = f"clause {change.clause}: {change.kind} ({'废止' if change.kind == 'retired' else '恢复'})"
        lines.append(f"  {title}")
        if change.kind == "effective_from":
            lines.append(f"    old: {change.old[0][0]} ({change.old[0][2]})")
            lines.append(f"    new: {change.new[0][0]} ({change.new[0][2]})")
            continue
        for side, entries in (("old", change.old), ("new", change.new)):
            shown = _value(entries)
            lines.append(f"    {side}: {shown[0]}")
            lines += [f"         {more}" for more in shown[1:]]
    if comparison is None:
        return "\n".join(lines) + "\n"
    rows = comparison.rows
    differing = [r for r in rows if r["differs"]]
    lines += ["", f"applications: {len(rows)}, decided differently: {len(differing)}"]
    if differing:
        header = ["application", "firm", "clause", "old outcome", "old 元", "new outcome", "new 元", "difference 元"]
        table_rows = [
            [
                r["application_id"],
                r["firm"],
                r["clause"],
                f"{r['old']['outcome']} {OUTCOME_NAMES[r['old']['outcome']]}",
                yuan_column(r["old"]["granted_fen"]),
                f"{r['new']['outcome']} {OUTCOME_NAMES[r['new']['outcome']]}",
                yuan_column(r["new"]["granted_fen"]),
                _signed(r["difference_fen"]),
            ]
            for r in differing
        ]
        lines += _render(header, table_rows, right={4, 6, 7})
    movers = [f for f in comparison.by_firm() if f["difference_fen"]]
    if movers:
        lines += ["", f"firms that gain or lose: {len(movers)}"]
        firm_rows = [
            [
                f["credit_code"],
                f["firm"],
                yuan_column(f["old_fen"]),
                yuan_column(f["new_fen"]),
                _signed(f["difference_fen"]),
            ]
            for f in movers
        ]
        lines += _render(["credit code", "firm", "old 元", "new 元", "difference 元"], firm_rows, right={2, 3, 4})
    years = comparison.by_year()
    lines += ["", "District outlay per budget year (区财政支出):"]
    year_rows = [
        [str(y["year"]), yuan_column(y["old_fen"]), yuan_column(y["new_fen"]), _signed(y["difference_fen"])]
        for y in years
    ]
    year_rows.append(
        [
            "total 合计",
            yuan_column(sum(y["old_fen"] for y in years)),
            yuan_column(sum(y["new_fen"] for y in years)),
            _signed(sum(y["difference_fen"] for y in years)),
        ]
    )
    lines += _render(["budget year", f"{old.id} 元", f"{new.id} 元", "difference 元"], year_rows, right={1, 2, 3})
    return "\n".join(lines) + "\n"


def _signed(fen: int) -> str:
    return ("+" if fen > 0 else "") + yuan_column(fen)
