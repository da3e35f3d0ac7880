"""CONTRIBUTING.md's worked example, done as it says, on a copy of the
repository: a new clause is the proto field, one module, its parameter file
and its cases, and nothing else.

The copy holds the files of the working tree that git knows or would add
(`git ls-files --cached --others --exclude-standard`). The blocks of the
worked example (```lang path=<file> how=new|append|oneof) are applied to it,
the protobuf code is regenerated there (subsidy_dev/protogen.py), and fresh
Python processes in the copy evaluate an application of the new clause
through the codec (JSON and protobuf) and the rules, and run its policy
cases. The files changed must be exactly the ones the guide lists. Then each
part is left out in turn and the copy must refuse to load, naming the clause
and the part.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "CONTRIBUTING.md"
MODULE = "subsidy.core.clauses.security_protection"
NAMED = f"clause 16 ({MODULE})"

_BLOCK = re.compile(r"^```\w+ path=(\S+) how=(new|append|oneof)\n(.*?)^```$", re.M | re.S)
_LISTED = re.compile(r"<!-- files changed by the example -->\n(.*?)<!-- /files changed by the example -->", re.S)
# Build output and caches, not sources: never compared.
_NOT_SOURCE = ("__pycache__", ".pytest_cache", ".hypothesis")

APPLICATION = {
    "application_id": "T-16-001",
    "submitted_on": "2024-05-06",
    "firm": {
        "credit_code": "91310117MA1GAQ164B",
        "kinds": ["INDUSTRIAL"],
        "registered_in_district": True,
        "tax_registered_in_district": True,
        "independent_legal_person": True,
    },
    "security_protection": {"assessment_passed": True, "spend_fen": 40000000},
}

# In a fresh process in the copy: the application through the JSON codec, to
# protobuf bytes and back through the protobuf codec, then the rules; the
# decision through protobuf and back. Prints what the test checks.
ROUND_TRIP = """
import json, sys
import subsidy
from subsidy.contracts import codec
from subsidy.core.eligibility import evaluate
from subsidy.core.policy import load_policy
from subsidy.v1 import application_pb2

app = codec.parse_application(json.loads(sys.stdin.read()))
wire = codec.application_to_proto(app).SerializeToString(deterministic=True)
again = codec.application_from_proto(application_pb2.Application.FromString(wire))
decision = evaluate(again, load_policy())
assert codec.decision_from_proto(codec.decision_to_proto(decision)) == decision
print(json.dumps({
    "package": subsidy.__file__,
    "same_claim": again == app,
    "oneof": application_pb2.Application.FromString(wire).WhichOneof("claim"),
    "decision": codec.decision_to_json(decision),
}, ensure_ascii=False))
"""


def _blocks() -> list[tuple[str, str, str]]:
    blocks = _BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    assert blocks, "CONTRIBUTING.md has no worked-example blocks (```lang path=... how=...)"
    return blocks


def _listed() -> set[str]:
    found = _LISTED.search(GUIDE.read_text(encoding="utf-8"))
    assert found, "CONTRIBUTING.md does not list the files the example changes"
    return set(re.findall(r"^- `([^`]+)`$", found.group(1), re.M))


def _source_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file()
        and not any(part in _NOT_SOURCE for part in p.relative_to(root).parts)
        and not p.relative_to(root).as_posix().startswith("subsidy/v1/")
    }


def _apply(root: Path, path: str, how: str, text: str) -> None:
    target = root / path
    if how == "new":
        assert not target.exists(), f"{path} exists already"
        target.write_text(text, encoding="utf-8")
        return
    current = target.read_text(encoding="utf-8")
    if how == "append":
        target.write_text(current + text, encoding="utf-8")
        return
    # how == "oneof": before the brace that closes `oneof claim {`.
    start = current.index("oneof claim {")
    close = re.compile(r"^\s*}\s*$", re.M).search(current, start)
    assert close, f"{path}: `oneof claim` is not closed"
    target.write_text(current[: close.start()] + text + current[close.start() :], encoding="utf-8")


def _env() -> dict[str, str]:
    # The copy's own policy/ and code, nothing from this checkout's settings.
    env = {k: v for k, v in os.environ.items() if k not in ("SUBSIDY_POLICY_DIR", "PYTHONPATH")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # The copy has no .venv: its tests find buf beside this interpreter.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run(root: Path, *args: str, stdin: str | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=root, input=stdin, capture_output=True, text=True, timeout=timeout, env=_env()
    )


def _protogen(root: Path) -> None:
    result = _run(root, "-m", "subsidy_dev.protogen")
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The copy with the example applied and its protobuf code generated;
    the files the example changed; the copy's files before it."""
    root = tmp_path_factory.mktemp("scratch") / "repo"
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted in the working tree is listed but gone
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    before = _source_files(root)
    for path, how, text in _blocks():
        _apply(root, path, how, text)
    after = _source_files(root)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    _protogen(root)
    return root, changed, before


def test_the_example_changes_exactly_the_files_the_guide_lists(scratch):
    _, changed, _ = scratch
    listed = _listed()
    assert listed == {path for path, _, _ in _blocks()}, "the list and the blocks name different files"
    assert changed == listed


def test_the_new_clause_is_decided_through_the_codec_and_the_rules_in_a_fresh_process(scratch):
    root, _, _ = scratch
    result = _run(root, "-m", "subsidy.cli", "evaluate", "-", stdin=json.dumps(APPLICATION))
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert (decision["clause"], decision["outcome"], decision["max_award_fen"]) == ("16", "ELIGIBLE", 12000000)
    assert decision["reasons"] == [
        {
            "code": "AWARD_BASIS",
            "clause": "16",
            "message": "依据第16条“支持工业互联网安全防护（示例）”：安全防护支出400,000元×30%=120,000元（上限200,000元）",
        }
    ]
    assert decision["entitlements"] == [
        {"scope": "16", "limit": "LIMIT_KIND_CUMULATIVE_CAP", "amount_fen": 12000000, "cap_fen": 20000000}
    ]

    result = _run(root, "-c", ROUND_TRIP, stdin=json.dumps(APPLICATION))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert Path(seen["package"]).is_relative_to(root), "the fresh process must run the copy's code"
    assert seen["same_claim"] and seen["oneof"] == "security_protection"
    assert seen["decision"] == decision

    listed = _run(root, "-m", "subsidy.cli", "policy")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^16 +security_protection +cumulative_cap +支持工业互联网安全防护（示例）$", listed.stdout, re.M)


def test_the_new_clauses_cases_and_the_contract_checks_pass_in_the_copy(scratch):
    root, _, _ = scratch
    result = _run(
        root,
        "-m",
        "pytest",
        "tests/test_policy_cases.py",
        "tests/unit/test_contract.py",
        "tests/unit/test_clauses.py",
        "-v",
        "-p",
        "no:cacheprovider",
        "-k",
        "clause_16 or test_contract or test_clauses",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = set(re.findall(r"^(.+?) PASSED", result.stdout, re.M))
    # The three cases of the example, the contract checks (buf lint, buf
    # breaking against contracts/, generated code not stale, proto <-> claims)
    # and the clause registry's tests.
    cases = {p for p in passed if "clause_16_security_protection" in p}
    assert len(cases) == 3, result.stdout
    for check in (
        "tests/unit/test_contract.py::test_buf_lint_passes",
        "tests/unit/test_contract.py::test_proto_is_not_breaking_against_the_released_contract",
        "tests/unit/test_contract.py::test_generated_protobuf_code_is_not_stale",
        "tests/unit/test_contract.py::test_each_claim_has_the_same_fields_in_proto_and_domain[security_protection]",
        # The registry's own test derives the clauses: a new one needs no edit of it.
        "tests/unit/test_clauses.py::test_every_clause_of_the_policy_text_is_one_module",
    ):
        assert check in passed, f"{check} did not pass in the copy:\n{result.stdout}"


def _without(scratch, tmp_path: Path, part: str) -> Path:
    """A copy of the scratch repository with one part of the clause left out."""
    root, _, before = scratch
    copy = tmp_path / "repo"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    if part == "the parameter file":
        (copy / "policy/clauses/16.yaml").unlink()
    elif part == "the cases":
        (copy / "tests/policy_cases/clause_16_security_protection.yaml").unlink()
    elif part == "the module":
        (copy / "subsidy/core/clauses/security_protection.py").unlink()
    elif part == "the rule":
        module = copy / "subsidy/core/clauses/security_protection.py"
        text = module.read_text(encoding="utf-8")
        assert "    rule=rule,\n" in text
        module.write_text(text.replace("    rule=rule,\n", ""), encoding="utf-8")
    elif part == "the proto field":
        proto = "proto/subsidy/v1/application.proto"
        (copy / proto).write_bytes(before[proto])
        _protogen(copy)
    return copy


EVALUATE = ("-m", "subsidy.cli", "evaluate", "-")
CASES = ("-m", "pytest", "tests/test_policy_cases.py", "-q", "-p", "no:cacheprovider")


@pytest.mark.parametrize(
    "part,command,message",
    [
        (
            "the parameter file",
            EVALUATE,
            f"no file for clause(s) 16: clause 16 (declared in {MODULE}) needs 16.yaml",
        ),
        (
            "the proto field",
            EVALUATE,
            f"{NAMED}: claim not in proto: the Application.claim oneof in proto/subsidy/v1/application.proto "
            "has no message field 'security_protection'; add `SecurityProtectionClaim security_protection = 27;`",
        ),
        (
            "the module",
            EVALUATE,
            "Application.claim field(s) security_protection have no clause module under subsidy/core/clauses/",
        ),
        ("the rule", EVALUATE, f"{NAMED}: rule: missing"),
        ("the cases", CASES, f"{NAMED}: no policy cases: add policy_cases/clause_<number>_<name>.yaml"),
    ],
    ids=["no parameter file", "no proto field", "no module", "no rule", "no cases"],
)
def test_leaving_out_a_part_fails_at_load_naming_the_clause_and_the_part(scratch, tmp_path, part, command, message):
    copy = _without(scratch, tmp_path, part)
    result = _run(copy, *command, stdin=json.dumps(APPLICATION))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, result.stdout + result.stderr
    assert "ELIGIBLE" not in result.stdout
    if command == EVALUATE:
        # The command line says it in one line, as it does for a bad policy file.
        assert result.returncode == 3, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
