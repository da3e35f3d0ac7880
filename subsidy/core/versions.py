"""Policy versions side by side (issue 14, ``../shared/policy/workflow.md``
"Policy versions").

``policy/versions.yaml`` is the register: every version's id, status
(draft, candidate, adopted, retired), the folder holding it, the citations
of the text it encodes, the files it includes by reference (the review
workflow's ``workflow.yaml``, the 免申即享 ``proposals.yaml``: they stay where
they are and are not copied) and, once adopted, the digest of every file it
consists of.

A version is either the *root* (folder ``.``: ``policy.yaml`` and
``clauses/``, loaded by ``subsidy.core.policy.load_policy`` exactly as
before, so its decision ids and digests do not change) or an *overlay* of
another version (its ``base``): the folder's ``version.yaml`` gives its name,
effective date, citations and the clauses it retires, and
``clauses/<clause>.yaml`` lists only the parameters it changes, each with its
whole dated history in this version and the words each value cites. What an
overlay does not name is its base's.

Refused, naming the file and the field (``PolicyError``): YAML that does not
load; an unknown status, base, clause or parameter; a value that changes
while citing the base's words (a changed meaning needs a citation of the new
text); an overlay that changes nothing; two adopted versions covering the
same clause on the same day; and a file of an adopted version changed, added
or removed after its adoption (the digest recorded in the register).

Pure: reads the policy files only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from subsidy.core import clauses as registry
from subsidy.core import domain
from subsidy.core.policy import (
    ClausePolicy,
    Parameter,
    Policy,
    PolicyError,
    _date,
    _expect_keys,
    _load_parameter,
    _read_yaml,
    _text,
    load_policy,
    snapshots,
)

REGISTER = "versions.yaml"
OVERLAY_INDEX = "version.yaml"
STATUSES = ("draft", "candidate", "adopted", "retired")
#: Adopted once: their files may never change (retired ones were adopted before).
FROZEN = ("adopted", "retired")
INCLUDES = ("workflow", "proposals")


@dataclass(frozen=True, slots=True)
class Version:
    """One version, loaded: its policy is evaluated like the root's."""

    id: str
    name: str
    status: str
    base: str | None
    effective_from: dt.date
    effective_until: dt.date | None  # exclusive; None: open-ended
    citations: tuple[str, ...]
    policy: Policy
    #: relative path -> sha256 of the files this version consists of (its own,
    #: not its base's: the base's digest is part of ``digest``).
    files: Mapping[str, str]
    digest: str
    folder: Path
    index_path: Path  # version.yaml of an overlay, policy.yaml of the root
    retired: Mapping[str, str] = field(default_factory=dict)  # clause -> cites
    changed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # clause -> parameter names
    includes: Mapping[str, Path] = field(default_factory=dict)
    fictional: bool = False

    def covers(self, clause: str) -> bool:
        return clause not in self.retired

    def in_force_on(self, day: dt.date) -> bool:
        return self.effective_from <= day and (self.effective_until is None or day < self.effective_until)


@dataclass(frozen=True, slots=True)
class Entry:
    """A version as the register lists it (its files not read yet)."""

    id: str
    status: str
    folder: Path
    citations: tuple[str, ...]
    effective_until: dt.date | None
    recorded: Mapping[str, str] | None  # adopted: relative path -> sha256
    includes: Mapping[str, str]
    where: str  # "versions.<id>"


class Versions:
    """The register and the versions it lists, each loaded when first asked
    for (a candidate's folder need not be present where only the adopted
    version runs)."""

    def __init__(self, root: Path, register_path: Path, entries: Mapping[str, Entry]):
        self.root = root
        self.register_path = register_path
        self.entries = entries
        self._loaded: dict[str, Version] = {}

    def ids(self) -> list[str]:
        return list(self.entries)

    def get(self, version_id: str) -> Version:
        if version_id not in self.entries:
            raise PolicyError(
                self.register_path, "versions", f"no version {version_id!r} (listed: {', '.join(self.entries)})"
            )
        if version_id not in self._loaded:
            self._loaded[version_id] = self._load(self.entries[version_id], ())
        return self._loaded[version_id]

    def as_it_is(self, version_id: str) -> Version:
        """The version loaded from its files as they are now, without the check
        against the digests recorded at adoption (to record a reviewed change)."""
        if version_id not in self.entries:
            self.get(version_id)  # refused, naming the register
        entry = replace(self.entries[version_id], recorded=None)
        return self._load(entry, ())

    def adopted(self) -> list[Version]:
        return [self.get(i) for i, e in self.entries.items() if e.status == "adopted"]

    def in_force(self, clause: str, day: dt.date) -> Version | None:
        """The adopted version deciding an application of ``clause`` submitted on ``day``."""
        for version in self.adopted():
            if version.covers(clause) and version.in_force_on(day):
                return version
        return None

    def verify(self) -> list[Version]:
        """Load every adopted (and retired) version, check its files against
        the recorded digests and the adopted versions' dates against each
        other. Returns the adopted versions."""
        for version_id, entry in self.entries.items():
            if entry.status in FROZEN:
                self.get(version_id)
        adopted = self.adopted()
        check_no_overlap(adopted, self.register_path)
        return adopted

    # ------------------------------------------------------------ loading
    def _load(self, entry: Entry, seen: tuple[str, ...]) -> Version:
        if not entry.folder.is_dir():
            raise PolicyError(self.register_path, f"{entry.where}.folder", f"no folder {entry.folder}")
        if entry.id in seen:
            raise PolicyError(self.register_path, f"{entry.where}.folder", f"bases loop: {' -> '.join(seen)}")
        if (entry.folder / OVERLAY_INDEX).exists():
            version = self._load_overlay(entry, seen + (entry.id,))
        else:
            version = self._load_root(entry)
        if entry.recorded is not None:
            _check_recorded(entry, version, self.register_path)
        return version

    def _load_root(self, entry: Entry) -> Version:
        if not entry.citations:  # an overlay's are in its version.yaml; policy.yaml has no room for them
            raise PolicyError(self.register_path, f"{entry.where}.citations", "is required for a root version")
        policy = load_policy(entry.folder)
        declared = policy.version.split("+", 1)[0]
        if declared != entry.id:
            raise PolicyError(
                entry.folder / "policy.yaml", "version", f"is {declared!r}, but {REGISTER} lists it as {entry.id!r}"
            )
        files = _hashes(entry.folder, ["policy.yaml", *(f"clauses/{p.name}" for p in _clause_files(entry.folder))])
        # The digest load_policy puts in the version (and so in every decision id).
        digest = hashlib.sha256((entry.folder / "policy.yaml").read_bytes())
        for path in _clause_files(entry.folder):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return Version(
            id=entry.id,
            name=policy.name,
            status=entry.status,
            base=None,
            effective_from=policy.effective_from,
            effective_until=entry.effective_until,
            citations=entry.citations,
            policy=policy,
            files=files,
            digest=digest.hexdigest(),
            folder=entry.folder,
            index_path=entry.folder / "policy.yaml",
            includes=self._includes(entry, {}),
        )

    def _includes(self, entry: Entry, inherited: Mapping[str, Path]) -> dict[str, Path]:
        found = dict(inherited)
        for name, relative in entry.includes.items():
            path = (self.root / relative).resolve()
            if not path.is_file():
                raise PolicyError(self.register_path, f"{entry.where}.includes.{name}", f"no file {relative}")
            found[name] = path
        return found

    def _load_overlay(self, entry: Entry, seen: tuple[str, ...]) -> Version:
        index_path = entry.folder / OVERLAY_INDEX
        raw = _expect_keys(
            index_path,
            "",
            _read_yaml(index_path),
            {"id", "name", "base", "effective_from", "citations"},
            {"retire", "fictional"},
        )
        if raw["id"] != entry.id:
            raise PolicyError(index_path, "id", f"is {raw['id']!r}, but {REGISTER} lists the folder as {entry.id!r}")
        base_id = _text(index_path, "base", raw["base"])
        if base_id not in self.entries:
            raise PolicyError(index_path, "base", f"no version {base_id!r} in {REGISTER}")
        if base_id in seen:
            raise PolicyError(index_path, "base", f"bases loop: {' -> '.join((*seen, base_id))}")
        base = self._loaded.get(base_id) or self._load(self.entries[base_id], seen)
        self._loaded.setdefault(base_id, base)
        effective_from = _date(index_path, "effective_from", raw["effective_from"])
        citations = _citations(index_path, "citations", raw["citations"])
        fictional = raw.get("fictional", False)
        if not isinstance(fictional, bool):
            raise PolicyError(index_path, "fictional", f"must be true or false, got {fictional!r}")

        retired: dict[str, str] = dict(base.retired)
        retire_raw = raw.get("retire") or {}
        if not isinstance(retire_raw, dict):
            raise PolicyError(index_path, "retire", "must be a mapping of clause id to {cites: ...}")
        for clause_id, spec in retire_raw.items():
            where = f"retire.{clause_id}"
            if str(clause_id) not in base.policy.clauses:
                raise PolicyError(index_path, where, f"unknown clause {clause_id!r}")
            if str(clause_id) in base.retired:
                raise PolicyError(index_path, where, f"already retired by {base.id}")
            body = _expect_keys(index_path, where, spec, {"cites"}, set())
            retired[str(clause_id)] = _text(index_path, f"{where}.cites", body["cites"])

        # The clauses this version changes: only the parameters it names.
        changed: dict[str, tuple[str, ...]] = {}
        new_clauses: dict[str, ClausePolicy] = {}
        own_files = [OVERLAY_INDEX]
        for path in sorted((entry.folder / "clauses").glob("*.yaml")):
            own_files.append(f"clauses/{path.name}")
            clause_id, parameters = _load_overlay_clause(path, base)
            if clause_id in retired:
                raise PolicyError(
                    path, "clause", f"clause {clause_id} is retired by this version: change nothing in it"
                )
            changed[clause_id] = tuple(sorted(parameters))
            cp = base.policy.clauses[clause_id]
            new_clauses[clause_id] = replace(cp, parameters={**cp.parameters, **parameters}, source=str(path))
        if not changed and not retired.keys() - base.retired.keys() and effective_from == base.effective_from:
            raise PolicyError(index_path, "", f"changes nothing of {base.id}: no clause file, no retire, same date")

        clauses_now: dict[str, ClausePolicy] = {}
        for clause_id, cp in base.policy.clauses.items():
            cp = new_clauses.get(clause_id, cp)
            clauses_now[clause_id] = replace(
                cp,
                _snapshots=snapshots(cp.parameters, effective_from),
                retired_cites=retired.get(clause_id),
            )
        files = _hashes(entry.folder, own_files)
        digest = hashlib.sha256(base.digest.encode())
        for relative in own_files:
            digest.update(relative.encode() + b"\0" + files[relative].encode())
        name = _text(index_path, "name", raw["name"])
        policy = Policy(
            name=name,
            version=f"{entry.id}+{digest.hexdigest()[:8]}",
            effective_from=effective_from,
            scope_text=base.policy.scope_text,
            clauses=clauses_now,
            # The files included by reference (workflow.yaml, proposals.yaml)
            # are read from the policy root, never copied into the overlay.
            directory=base.policy.directory,
        )
        return Version(
            id=entry.id,
            name=name,
            status=entry.status,
            base=base.id,
            effective_from=effective_from,
            effective_until=entry.effective_until,
            citations=citations,
            policy=policy,
            files=files,
            digest=digest.hexdigest(),
            folder=entry.folder,
            index_path=index_path,
            retired=retired,
            changed=changed,
            includes=self._includes(entry, base.includes),
            fictional=fictional,
        )


def _clause_files(folder: Path) -> list[Path]:
    return sorted((folder / "clauses").glob("*.yaml"))


def _hashes(folder: Path, relatives: Iterable[str]) -> dict[str, str]:
    return {r: hashlib.sha256((folder / r).read_bytes()).hexdigest() for r in relatives}


def _citations(path: Path, where: str, raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise PolicyError(path, where, "must be a non-empty list of the texts this version encodes")
    return tuple(_text(path, f"{where}[{i}]", c) for i, c in enumerate(raw))


def _load_overlay_clause(path: Path, base: Version) -> tuple[str, dict[str, Parameter]]:
    raw = _expect_keys(path, "", _read_yaml(path), {"clause", "parameters"}, set())
    clause_id = _text(path, "clause", str(raw["clause"]))
    if path.stem != clause_id:
        raise PolicyError(path, "clause", f"file must be named {clause_id}.yaml")
    if clause_id not in base.policy.clauses:
        raise PolicyError(path, "clause", f"unknown clause {clause_id!r}")
    if clause_id in base.retired:
        raise PolicyError(path, "clause", f"clause {clause_id} was retired by {base.id}")
    declared = registry.BY_ID[clause_id]
    units = registry.given(declared.parameters, declared, "parameters")
    params_raw = raw["parameters"]
    if not isinstance(params_raw, dict) or not params_raw:
        raise PolicyError(path, "parameters", "must name at least one parameter this version changes")
    old = base.policy.clauses[clause_id].parameters
    found: dict[str, Parameter] = {}
    for name, spec in params_raw.items():
        where = f"parameters.{name}"
        if name not in units:
            raise PolicyError(path, where, f"clause {clause_id} has no parameter {name!r} (it has {', '.join(units)})")
        body = _expect_keys(path, where, spec, {"values"}, {"unit", "description"})
        full = {"unit": body.get("unit", units[name]), "values": body["values"]}
        if "description" in body:
            full["description"] = body["description"]
        parameter = _load_parameter(path, str(name), full, units[name])
        if not parameter.description:
            parameter = replace(parameter, description=old[name].description)
        before = old[name]
        if [(v.applies_from, v.value) for v in parameter.values] == [(v.applies_from, v.value) for v in before.values]:
            raise PolicyError(path, f"{where}.values", f"the same values as {base.id}: leave the parameter out")
        base_cites = {v.cites for v in before.values}
        for i, value in enumerate(parameter.values):
            previous = before.at(value.applies_from)
            if previous is not None and previous.value != value.value and value.cites in base_cites:
                raise PolicyError(
                    path,
                    f"{where}.values[{i}].cites",
                    f"the value changes from {previous.value!r} to {value.value!r} but cites the words of "
                    f"{base.id} ({value.cites!r}): cite the text of this version",
                )
        found[str(name)] = parameter
    return clause_id, found


def _check_recorded(entry: Entry, version: Version, register_path: Path) -> None:
    """An adopted version's files are exactly those recorded at adoption."""
    recorded = entry.recorded or {}
    for relative, digest in version.files.items():
        if relative not in recorded:
            raise PolicyError(
                version.folder / relative,
                "",
                f"added after version {entry.id} was adopted ({register_path.name}: {entry.where}.adopted.files "
                "does not list it); an adopted version never changes: make a new version",
            )
        if recorded[relative] != digest:
            raise PolicyError(
                version.folder / relative,
                "",
                f"changed after version {entry.id} was adopted (sha256 {digest[:12]}…, recorded "
                f"{recorded[relative][:12]}… in {register_path.name}: {entry.where}.adopted.files); "
                "an adopted version never changes: make a new version",
            )
    for relative in recorded.keys() - version.files.keys():
        raise PolicyError(
            version.folder / relative,
            "",
            f"removed after version {entry.id} was adopted ({register_path.name}: {entry.where}.adopted.files)",
        )


def check_no_overlap(adopted: Iterable[Version], register_path: Path) -> None:
    """Two adopted versions never decide the same clause on the same day."""
    listed = sorted(adopted, key=lambda v: v.effective_from)
    for i, later in enumerate(listed):
        for earlier in listed[:i]:
            ends = earlier.effective_until
            if ends is not None and ends <= later.effective_from:
                continue
            shared = [c for c in later.policy.clauses if later.covers(c) and earlier.covers(c)]
            if shared:
                raise PolicyError(
                    later.index_path if later.base else register_path,
                    "effective_from",
                    f"{later.id} from {later.effective_from} overlaps adopted version {earlier.id} "
                    f"({earlier.effective_from}..{ends or 'open'}) for clause(s) {', '.join(shared)}: "
                    f"give {earlier.id} an effective_until in {register_path.name} first",
                )


# ------------------------------------------------------------ the register


def load_versions(root: Path | str | None = None) -> Versions:
    """Read ``<root>/versions.yaml`` (not the versions' files: ``get``)."""
    root = Path(root) if root is not None else Path(load_policy_root())
    path = root / REGISTER
    raw = _expect_keys(path, "", _read_yaml(path), {"versions"}, set())
    listed = raw["versions"]
    if not isinstance(listed, dict) or not listed:
        raise PolicyError(path, "versions", "must be a mapping of version id to its entry")
    entries: dict[str, Entry] = {}
    for version_id, spec in listed.items():
        where = f"versions.{version_id}"
        body = _expect_keys(
            path, where, spec, {"status", "folder"}, {"citations", "effective_until", "adopted", "includes"}
        )
        status = body["status"]
        if status not in STATUSES:
            raise PolicyError(path, f"{where}.status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
        folder_text = _text(path, f"{where}.folder", body["folder"])
        # Checked when the version is loaded, not here: a candidate's folder
        # need not be present where only the adopted version runs.
        folder = (root / folder_text).resolve()
        until = body.get("effective_until")
        recorded = None
        if status in FROZEN:
            if "adopted" not in body:
                raise PolicyError(path, f"{where}.adopted", f"is required for a version {status}: its files' digests")
            adopted = _expect_keys(path, f"{where}.adopted", body["adopted"], {"files"}, {"date", "by"})
            files = adopted["files"]
            if not isinstance(files, dict) or not files:
                raise PolicyError(path, f"{where}.adopted.files", "must map each file to its sha256")
            recorded = {str(k): str(v) for k, v in files.items()}
        elif "adopted" in body:
            raise PolicyError(path, f"{where}.adopted", f"a version {status} is not adopted")
        includes_raw = body.get("includes") or {}
        if not isinstance(includes_raw, dict):
            raise PolicyError(path, f"{where}.includes", "must be a mapping")
        for name in includes_raw:
            if name not in INCLUDES:
                raise PolicyError(path, f"{where}.includes.{name}", f"unknown: one of {', '.join(INCLUDES)}")
        entries[str(version_id)] = Entry(
            id=str(version_id),
            status=status,
            folder=folder,
            citations=_citations(path, f"{where}.citations", body["citations"]) if "citations" in body else (),
            effective_until=_date(path, f"{where}.effective_until", until) if until is not None else None,
            recorded=recorded,
            includes={str(k): str(v) for k, v in includes_raw.items()},
            where=where,
        )
    return Versions(root, path, entries)


def load_policy_root() -> Path:
    import os

    from subsidy.core.policy import DEFAULT_POLICY_DIR

    return Path(os.environ.get("SUBSIDY_POLICY_DIR") or DEFAULT_POLICY_DIR)


def has_register(root: Path | str) -> bool:
    return (Path(root) / REGISTER).is_file()


@dataclass(frozen=True, slots=True)
class OpenApplication:
    """An application not yet past its public notice: the clause it claims."""

    application_id: str
    clause: str


def check_adoptable(versions: Versions, version_id: str, open_applications: Iterable[OpenApplication] = ()) -> Version:
    """Whether ``version_id`` may be adopted now; raises PolicyError naming the
    file and field, and changes nothing. Refused: a version that is not a
    candidate, one that fails to load, one whose dates overlap an adopted
    version for a clause both cover, one retiring a clause that open
    applications still claim (they would lose the clause they applied under)."""
    version = versions.get(version_id)
    entry = versions.entries[version_id]
    if entry.status != "candidate":
        raise PolicyError(
            versions.register_path, f"{entry.where}.status", f"is {entry.status}: only a candidate is adopted"
        )
    adopted = versions.verify()
    # Adopting a version ends its base on the new effective date (workflow.md:
    # it applies to applications submitted on or after it); any other adopted
    # version it overlaps is refused.
    kept = []
    for other in adopted:
        if other.id == version.base and other.effective_until is None:
            if other.effective_from >= version.effective_from:
                raise PolicyError(
                    version.index_path,
                    "effective_from",
                    f"{version.effective_from} is not after its base {other.id}'s effective date {other.effective_from}",
                )
            other = replace(other, effective_until=version.effective_from)
        kept.append(other)
    check_no_overlap([*kept, version], versions.register_path)
    claimed: dict[str, list[str]] = {}
    for app in open_applications:
        claimed.setdefault(app.clause, []).append(app.application_id)
    for clause_id in sorted(version.retired):
        base_retired = versions.get(version.base).retired if version.base else {}
        if clause_id in claimed and clause_id not in base_retired:
            ids = sorted(claimed[clause_id])
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            raise PolicyError(
                version.index_path,
                f"retire.{clause_id}",
                f"clause {clause_id} is still claimed by {len(ids)} open application(s) ({shown}): "
                "decide them, or keep the clause",
            )
    return version


# ------------------------------------------------------------ the difference


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two versions' texts, with both citations.

    ``kind``: ``effective_from`` (old/new: one dated entry each, citing the
    versions' citations), ``parameter`` (old/new: the parameter's whole dated
    history in each), ``retired`` or ``restored`` (a clause one version
    decides and the other does not; old/new: the retirement's citation)."""

    kind: str
    clause: str
    parameter: str
    old: tuple[tuple[str, object, str], ...]  # (from or "", value, cites)
    new: tuple[tuple[str, object, str], ...]


def _history(parameter: Parameter) -> tuple[tuple[str, object, str], ...]:
    return tuple((v.applies_from.isoformat(), v.value, v.cites) for v in parameter.values)


def diff(old: Version, new: Version) -> list[Change]:
    """Parameter by parameter, what ``new`` decides differently from ``old``
    (empty for a version against itself), in the contract's clause order."""
    changes: list[Change] = []
    if old.effective_from != new.effective_from:
        changes.append(
            Change(
                "effective_from",
                "",
                "",
                ((old.effective_from.isoformat(), old.effective_from.isoformat(), "; ".join(old.citations)),),
                ((new.effective_from.isoformat(), new.effective_from.isoformat(), "; ".join(new.citations)),),
            )
        )
    order = {c: i for i, c in enumerate(domain.CLAUSES)}
    for clause_id in sorted(old.policy.clauses.keys() & new.policy.clauses.keys(), key=lambda c: (order.get(c, 99), c)):
        was, now = old.policy.clauses[clause_id], new.policy.clauses[clause_id]
        if was.retired_cites != now.retired_cites:
            kind = "retired" if now.retired_cites is not None and was.retired_cites is None else "restored"
            if was.retired_cites is not None and now.retired_cites is not None:
                kind = "retired"
            changes.append(
                Change(
                    kind,
                    clause_id,
                    "",
                    (("", "retired", was.retired_cites),) if was.retired_cites else (),
                    (("", "retired", now.retired_cites),) if now.retired_cites else (),
                )
            )
        for name in was.parameters:
            before, after = _history(was.parameters[name]), _history(now.parameters[name])
            if before != after:
                changes.append(Change("parameter", clause_id, name, before, after))
    return changes
