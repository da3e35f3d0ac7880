"""`subsidy`: the command line of the subsidy system.

    subsidy evaluate FILE|-             one application -> one decision (no history)
    subsidy simulate FILE|- [--summary] JSON lines -> one result per line, with history
    subsidy policy [--dir DIR]          validate the policy data and list its clauses
    subsidy policy versions             the policy versions side by side (policy/versions.yaml)
    subsidy policy diff OLD NEW [--applications FILE] [--format text|jsonl] [--chart OUT.svg|png]
                                        what NEW changes, and what it does to applications and outlay
    subsidy export-tranches --year YYYY one budget year's payout tranches as CSV, for finance
    subsidy migrate --service NAME      bring a service's database to its newest schema
    subsidy dev clock show|advance|speed drive the dev stack's clock (SUBSIDY_DEV_MODE=1 only)

Bad input exits with status 2 and one line on standard error saying what is
wrong and where; nothing is printed on standard output.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

# The clause registry checks every clause when it is first imported, so the
# codec and the policy loader are imported inside the commands: a broken
# clause then reaches main() as ClauseError, not as a traceback at import.
from subsidy.cli import dev_clock
from subsidy.core.domain import ClauseError

EXIT_BAD_INPUT = 2
EXIT_BAD_POLICY = 3
EXIT_MIGRATION_FAILED = 1


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
    from subsidy.contracts import json_lines

    try:
        return json_lines.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{where}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise CommandError(f"{where}: not JSON: nested too deeply") from None


def _dump(obj: Any) -> str:
    from subsidy.contracts import json_lines

    return json_lines.dumps(obj)


def cmd_evaluate(args: argparse.Namespace) -> str:
    from subsidy.contracts.calculator import evaluate_application
    from subsidy.contracts.codec import BadInput

    policy = _policy(args)
    name = "<stdin>" if args.file == "-" else args.file
    obj = _json(_read(args.file), name)
    try:
        return _dump(evaluate_application(obj, policy)) + "\n"
    except BadInput as exc:
        raise CommandError(f"{name}: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> str:
    from subsidy.contracts.calculator import Simulation
    from subsidy.contracts.codec import BadInput

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
    # The review and notice settings beside the clauses (policy/workflow.yaml), validated the same way.
    from subsidy.core.workflow.settings import FILE_NAME, WorkflowSettingsError, load_workflow

    try:
        workflow = load_workflow(policy.directory / FILE_NAME)
    except WorkflowSettingsError as exc:
        raise CommandError(f"workflow settings refused: {exc}", EXIT_BAD_POLICY) from None
    lines += ["", f"workflow settings ({FILE_NAME})"]
    for name, values in workflow.settings.items():
        for dated in values:
            shown = list(dated.value) if isinstance(dated.value, tuple) else dated.value
            lines.append(f"    {name} = {shown} from {dated.applies_from} ({dated.cites})")
    return "\n".join(lines) + "\n"


def _versions(args: argparse.Namespace):
    from subsidy.core.policy import PolicyError
    from subsidy.core.versions import load_policy_root, load_versions

    try:
        return load_versions(args.policy_dir or load_policy_root())
    except PolicyError as exc:
        raise CommandError(f"policy refused: {exc}", EXIT_BAD_POLICY) from None


def _version(versions, version_id: str):
    from subsidy.core.policy import PolicyError

    try:
        return versions.get(version_id)
    except PolicyError as exc:
        raise CommandError(f"policy refused: {exc}", EXIT_BAD_POLICY) from None


def cmd_policy_versions(args: argparse.Namespace) -> str:
    from subsidy.core.policy import PolicyError

    versions = _versions(args)
    if args.digests:
        # The files' digests as they are now, for the register's adopted.files
        # (recording a reviewed change of an adopted version's files).
        from subsidy.core.policy import PolicyError as Refused

        if args.digests not in versions.entries:
            _version(versions, args.digests)  # refused naming the register
        try:
            version = versions.as_it_is(args.digests)
        except Refused as exc:
            raise CommandError(f"policy refused: {exc}", EXIT_BAD_POLICY) from None
        return "      files:\n" + "".join(f"        {name}: {sha}\n" for name, sha in sorted(version.files.items()))
    try:
        versions.verify()
    except PolicyError as exc:
        raise CommandError(f"policy refused: {exc}", EXIT_BAD_POLICY) from None
    lines = []
    for version_id in versions.ids():
        version = _version(versions, version_id)
        until = f" until {version.effective_until}" if version.effective_until else ""
        flags = ", FICTIONAL" if version.fictional else ""
        base = f", overlay of {version.base}" if version.base else ""
        lines.append(f"{version.id:<28} {version.status:<10} from {version.effective_from}{until}{base}{flags}")
        lines.append(f"    {version.policy.version}  {version.name}")
        for clause_id, names in version.changed.items():
            lines.append(f"    changes {clause_id}: {', '.join(names)}")
        for clause_id in version.retired:
            lines.append(f"    retires {clause_id}")
        for citation in version.citations:
            lines.append(f"    cites {citation}")
    return "\n".join(lines) + "\n"


def cmd_policy_diff(args: argparse.Namespace) -> str:
    from pathlib import Path

    from subsidy.cli import policy_diff
    from subsidy.contracts.calculator import Comparison
    from subsidy.contracts.codec import BadInput
    from subsidy.core.versions import diff

    versions = _versions(args)
    old, new = _version(versions, args.old), _version(versions, args.new)
    changes = diff(old, new)
    comparison = None
    if args.applications:
        comparison = Comparison(old.policy, new.policy)
        name = "<stdin>" if args.applications == "-" else args.applications
        # Everything is compared before anything is printed or drawn.
        for number, line in enumerate(_read(args.applications).splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{name}: line {number}"
            obj = _json(line, where)
            try:
                comparison.add(obj)
            except BadInput as exc:
                raise CommandError(f"{where}: {exc}") from None
    if args.chart:
        from subsidy.cli.chart import ChartError, outlay_chart

        if comparison is None:
            raise CommandError("--chart: needs --applications (the chart is the outlay per budget year)")
        try:
            outlay_chart(
                Path(args.chart),
                comparison.by_year(),
                old.id,
                new.id + ("（虚构）" if new.fictional else ""),
                f"区财政支出 by budget year: {old.id} vs {new.id}",
            )
        except ChartError as exc:
            raise CommandError(str(exc)) from None
    if args.format == "jsonl":
        return policy_diff.jsonl(old, new, changes, comparison)
    return policy_diff.text(old, new, changes, comparison)


def cmd_export_tranches(args: argparse.Namespace) -> str:
    import io
    import os

    from subsidy.services.payout.adapters.export import ExportError, tranches_of_year, write_csv

    url = args.database_url or os.environ.get("SUBSIDY_PAYOUT_DATABASE_URL") or "sqlite:///var/payout.db"
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not os.path.exists(url[len("sqlite:///") :]):
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


def _migration_histories() -> dict:
    """The services that keep a store, each with its own migration history."""
    from subsidy.services.intake.adapters.migrations import HISTORY as intake
    from subsidy.services.notify.adapters.migrations import HISTORY as notify
    from subsidy.services.operations.adapters.migrations import HISTORY as operations
    from subsidy.services.payout.adapters.migrations import HISTORY as payout
    from subsidy.services.registry_sync.adapters.migrations import HISTORY as registry_sync
    from subsidy.services.review.adapters.migrations import HISTORY as review

    return {
        "intake": intake,
        "payout": payout,
        "notify": notify,
        "review": review,
        "registry_sync": registry_sync,
        "operations": operations,
    }


def _service_database_url(service: str) -> str:
    """The URL the service itself would use (its SUBSIDY_<NAME>_DATABASE_URL or
    ..._FILE, else its default): the migration Job shares the service's
    Secret and never carries the password on its command line."""
    from subsidy.services.intake.config import Settings as IntakeSettings
    from subsidy.services.notify.config import Settings as NotifySettings
    from subsidy.services.operations.config import Settings as OperationsSettings
    from subsidy.services.payout.config import Settings as PayoutSettings
    from subsidy.services.registry_sync.config import Settings as RegistrySyncSettings
    from subsidy.services.review.config import Settings as ReviewSettings

    settings = {
        "intake": IntakeSettings,
        "payout": PayoutSettings,
        "notify": NotifySettings,
        "review": ReviewSettings,
        "registry_sync": RegistrySyncSettings,
        "operations": OperationsSettings,
    }[service]
    return settings.from_env().database_url


def cmd_migrate(args: argparse.Namespace) -> str:
    """Print as it goes (a production Job's log shows each step, and a wait
    for another migration's lock, when it happens); nothing left to return."""
    from subsidy.platform import migrations
    from subsidy.platform.db import Database
    from subsidy.platform.security.secrets import SecretError, redact_url

    def say(line: str) -> None:
        print(line, flush=True)

    service = args.service
    history = _migration_histories()[service]
    try:
        url = args.database_url or _service_database_url(service)
    except SecretError as exc:
        raise CommandError(str(exc)) from None
    try:
        db = Database(url, store=f"{service}-migrate")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    shown = url if url.startswith("sqlite:") else redact_url(url)  # a path has no password to hide
    say(f"{service}: migrating {shown} to schema version {history.head()}")
    try:
        outcome = migrations.upgrade(db, history, wait_s=args.wait, lock_wait_s=args.lock_timeout, say=say)
    except migrations.MigrationError as exc:
        raise CommandError(str(exc), EXIT_MIGRATION_FAILED) from None
    finally:
        db.close()
    for line in outcome.lines():
        say(line)
    return ""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def _year(text: str) -> int:
    if len(text) != 4 or not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a year YYYY: {text!r}")
    return int(text)


def _policy(args: argparse.Namespace):
    from subsidy.core.policy import PolicyError, load_policy

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
    p.add_argument(
        "--format", choices=("jsonl", "table"), default="jsonl", help="jsonl (the contract) or a table for people"
    )
    p.set_defaults(run=cmd_simulate)
    p = sub.add_parser("policy", help="validate the policy data and list clauses and parameters")
    p.set_defaults(run=cmd_policy)
    policy_sub = p.add_subparsers(dest="policy_command", required=False)
    q = policy_sub.add_parser("versions", help="the policy versions side by side (policy/versions.yaml)")
    q.add_argument(
        "--digests",
        metavar="VERSION",
        help="print the sha256 of each file of VERSION as it is now, as policy/versions.yaml records them",
    )
    q.set_defaults(run=cmd_policy_versions)
    q = policy_sub.add_parser(
        "diff",
        help="what version NEW changes from OLD, parameter by parameter with both citations",
        description="Parameter by parameter with both citations; with --applications, each application's "
        "outcome and amount under both versions and the outlay per budget year (caps and tranches "
        "included, as `subsidy simulate`). docs/policy-versions.md",
    )
    q.add_argument("old", metavar="OLD", help="a version id of policy/versions.yaml")
    q.add_argument("new", metavar="NEW", help="a version id of policy/versions.yaml")
    q.add_argument("--applications", metavar="FILE|-", help="JSON lines of applications, as for simulate")
    q.add_argument("--format", choices=("text", "jsonl"), default="text", help="text for people or JSON lines")
    q.add_argument("--chart", metavar="OUT.svg|OUT.png", help="draw the outlay per budget year under both versions")
    q.set_defaults(run=cmd_policy_diff)
    p = sub.add_parser("export-tranches", help="one budget year's payout tranches as CSV, for the finance bureau")
    p.add_argument("--year", type=_year, required=True, help="budget year YYYY")
    p.add_argument(
        "--database-url", help="payout ledger (default: $SUBSIDY_PAYOUT_DATABASE_URL or sqlite:///var/payout.db)"
    )
    p.add_argument("--output", metavar="FILE|-", default="-", help="where to write the CSV (default: standard output)")
    p.set_defaults(run=cmd_export_tranches)
    p = sub.add_parser(
        "migrate",
        help="bring a service's database to its newest schema (production runs it before a rollout)",
        description="Apply the service's pending schema migrations in one transaction and print each one "
        "(docs/operations.md#schema-migrations). Safe to run twice or twice at once: a second run "
        "waits for the first and finds nothing to do. Exit status 1 when a migration fails "
        "(nothing is changed then), 2 on bad arguments.",
    )
    p.add_argument(
        "--service",
        required=True,
        choices=("intake", "payout", "notify", "review", "registry_sync", "operations"),
        help="whose database and migration history",
    )
    p.add_argument(
        "--database-url",
        help="the service's database (default: what the service itself reads, "
        "SUBSIDY_<SERVICE>_DATABASE_URL or ..._FILE)",
    )
    p.add_argument(
        "--wait",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="keep trying this long while the database cannot be reached (default 60)",
    )
    p.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="wait this long for another migration of the same service to finish (default 600)",
    )
    p.set_defaults(run=cmd_migrate)
    dev_clock.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output = args.run(args)
    except CommandError as exc:
        print(f"subsidy {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except dev_clock.DevClockRefused as exc:
        print(f"subsidy dev clock: error: {exc}", file=sys.stderr)
        return 2
    except ClauseError as exc:
        print(f"subsidy {args.command}: error: clause data refused: {exc}", file=sys.stderr)
        return EXIT_BAD_POLICY
    sys.stdout.write(output)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
