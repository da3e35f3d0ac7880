"""`subsidy`: the command line of the subsidy system.

    subsidy evaluate FILE|-             one application -> one decision (no history)
    subsidy simulate FILE|- [--summary] JSON lines -> one result per line, with history
    subsidy policy [--dir DIR]          validate the policy data and list its clauses
    subsidy export-tranches --year YYYY one budget year's payout tranches as CSV, for finance

Bad input exits with status 2 and one line on standard error saying what is
wrong and where; nothing is printed on standard output.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from subsidy.contracts.codec import BadInput
from subsidy.core.policy import PolicyError, load_policy

EXIT_BAD_INPUT = 2
EXIT_BAD_POLICY = 3


class CommandError(Exception):
    def __init__(self, message: str, status: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.status = status


def _open(path: str) -> TextIO:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{path}: cannot read: {exc.strerror}") from None


def _read(path: str) -> str:
    handle = _open(path)
    try:
        return handle.read()
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    finally:
        if handle is not sys.stdin:
            handle.close()


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{where}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise CommandError(f"{where}: not JSON: nested too deeply") from None


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def cmd_evaluate(args: argparse.Namespace) -> str:
    from subsidy.contracts.calculator import evaluate_application

    policy = _policy(args)
    name = "<stdin>" if args.file == "-" else args.file
    obj = _json(_read(args.file), name)
    try:
        return _dump(evaluate_application(obj, policy)) + "\n"
    except BadInput as exc:
        raise CommandError(f"{name}: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> str:
    from subsidy.contracts.calculator import Simulation

    policy = _policy(args)
    name = "<stdin>" if args.file == "-" else args.file
    simulation = Simulation(policy)
    out = []
    rows = []
    # Everything is decided before anything is printed, so bad input on any
    # line leaves standard output empty.
    for number, text in enumerate(_read(args.file).splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{name}: line {number}"
        obj = _json(text, where)
        try:
            decision = simulation.decide(obj)
        except BadInput as exc:
            raise CommandError(f"{where}: {exc}") from None
        line = simulation.apply(decision)
        out.append(_dump(line))
        rows.append((obj.get("firm", {}).get("name", ""), line))
    if args.format == "table":
        from subsidy.cli.report import table

        return table(rows, simulation.summary()["summary"] if args.summary else None)
    if args.summary:
        out.append(_dump(simulation.summary()))
    return "".join(line + "\n" for line in out)


def cmd_policy(args: argparse.Namespace) -> str:
    policy = _policy(args)
    lines = [f"{policy.name}", f"version {policy.version}, applies from {policy.effective_from}", ""]
    from subsidy.core.domain import CLAUSES

    for clause in (policy.clauses[c] for c in CLAUSES):
        limit = clause.ledger.limit or "no amount"
        lines.append(f"{clause.clause:<15} {clause.claim:<26} {limit:<15} {clause.title}")
        for parameter in clause.parameters.values():
            for value in parameter.values:
                shown = sorted(value.value) if isinstance(value.value, frozenset) else value.value
                lines.append(f"    {parameter.name} = {shown!s} from {value.applies_from} ({value.cites})")
    return "\n".join(lines) + "\n"


def cmd_export_tranches(args: argparse.Namespace) -> str:
    import io
    import os

    from subsidy.services.payout.adapters.export import ExportError, tranches_of_year, write_csv

    url = args.database_url or os.environ.get("SUBSIDY_PAYOUT_DATABASE_URL") or "sqlite:///var/payout.db"
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not os.path.exists(url[len("sqlite:///"):]):
        raise CommandError(f"no payout ledger at {url}")
    try:
        tranches = tranches_of_year(url, args.year)
    except ExportError as exc:
        raise CommandError(str(exc)) from None
    buffer = io.StringIO()
    write_csv(tranches, buffer)
    if args.output in (None, "-"):
        return buffer.getvalue()
    try:
        with open(args.output, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
    except OSError as exc:
        raise CommandError(f"{args.output}: cannot write: {exc.strerror}") from None
    return ""


def _year(text: str) -> int:
    if len(text) != 4 or not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a year YYYY: {text!r}")
    return int(text)


def _policy(args: argparse.Namespace):
    try:
        return load_policy(args.policy_dir)
    except PolicyError as exc:
        raise CommandError(f"policy refused: {exc}", EXIT_BAD_POLICY) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="subsidy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy-dir", help="policy data directory (default: $SUBSIDY_POLICY_DIR or ./policy)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("evaluate", help="one application -> one decision, clause rules only")
    p.add_argument("file", metavar="FILE|-")
    p.set_defaults(run=cmd_evaluate)
    p = sub.add_parser("simulate", help="JSON lines -> results with caps, one-time awards and tranches")
    p.add_argument("file", metavar="FILE|-")
    p.add_argument("--summary", action="store_true", help="add the outlay per budget year as a last line")
    p.add_argument("--format", choices=("jsonl", "table"), default="jsonl", help="jsonl (the contract) or a table for people")
    p.set_defaults(run=cmd_simulate)
    p = sub.add_parser("policy", help="validate the policy data and list clauses and parameters")
    p.set_defaults(run=cmd_policy)
    p = sub.add_parser("export-tranches", help="one budget year's payout tranches as CSV, for the finance bureau")
    p.add_argument("--year", type=_year, required=True, help="budget year YYYY")
    p.add_argument("--database-url", help="payout ledger (default: $SUBSIDY_PAYOUT_DATABASE_URL or sqlite:///var/payout.db)")
    p.add_argument("--output", metavar="FILE|-", default="-", help="where to write the CSV (default: standard output)")
    p.set_defaults(run=cmd_export_tranches)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output = args.run(args)
    except CommandError as exc:
        print(f"subsidy {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    sys.stdout.write(output)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
