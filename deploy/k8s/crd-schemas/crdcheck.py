"""The vendored CRD schema subsets against the operators' published CRDs of
the pinned versions (issue 16, item 7). See README.md.

``upstream-pins.yml`` pins, per vendored file, the operator version and where
its published CRD comes from, with the sha256 of that CRD file and of the
*normalised* schema taken from it (the ``openAPIV3Schema`` of the served
version, descriptions removed, as sorted compact JSON). The normalised
schemas are kept in ``upstream/<file>.json.gz``.

Offline (tests/ops/test_crd_schemas.py, every ``make test``):

- each ``upstream/*.json.gz`` hashes to the pinned ``schema_sha256``;
- each vendored subset is a true subset of it (``subset_errors``): every
  field it declares exists upstream, every constraint it states (type,
  enum, pattern, bounds, required, …) is upstream's exactly, and no
  constraint upstream puts on a declared field is dropped.

Online (``python deploy/k8s/crd-schemas/crdcheck.py fetch``, ``make
crd-verify``): download each pinned CRD again — Go modules through the Go
module proxy (the operators' own repositories, at the release tag), Strimzi
from a git clone of its repository at the release tag (``--strimzi-repo``;
Strimzi is not a Go module and publishes its CRDs in GitHub releases only)
— check its sha256 against ``crd_sha256`` and write the normalised schema
(``--write`` refreshes the pins after a version bump).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "upstream-pins.yml"
UPSTREAM_DIR = HERE / "upstream"
GOPROXY = "https://proxy.golang.org"

# Keys that carry no constraint a validator applies here: a subset may leave
# them out (descriptions, defaults, Kubernetes list/map merge hints, CEL rules
# only an API server evaluates, formats jsonschema does not check by default).
MAY_DROP = {
    "description",
    "default",
    "format",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
    "example",
}
# Keys whose value is a schema (or schemas) to descend into.
SCHEMA_KEYS = {"items", "additionalProperties", "not"}
SCHEMA_LISTS = {"anyOf", "oneOf", "allOf"}


def strip(node: Any) -> Any:
    """The schema without descriptions (recursively); a FIELD named
    ``description`` (a key of ``properties``) stays."""
    if isinstance(node, dict):
        return {
            k: ({name: strip(s) for name, s in v.items()} if k == "properties" and isinstance(v, dict) else strip(v))
            for k, v in node.items()
            if k != "description"
        }
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def normalised(crd: dict[str, Any], version: str) -> bytes:
    """The served ``version``'s openAPIV3Schema of a CRD document, descriptions removed, as sorted compact JSON."""
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema = strip(v["schema"]["openAPIV3Schema"])
            return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    raise KeyError(f"{crd['metadata']['name']}: no version {version}")


def subset_errors(vendored: Any, upstream: Any, path: str = "") -> list[str]:
    """Why ``vendored`` is not a subset of ``upstream`` (empty: it is)."""
    where = path or "/"
    if not isinstance(vendored, dict) or not isinstance(upstream, dict):
        return [] if vendored == upstream else [f"{where}: {vendored!r} is not upstream's {upstream!r}"]
    errors: list[str] = []
    for key, value in vendored.items():
        if key == "description":
            continue
        if key not in upstream:
            errors.append(f"{where}: {key} is not upstream")
        elif key == "properties":
            for name, schema in value.items():
                if name not in upstream["properties"]:
                    errors.append(f"{path}/{name}: no such field upstream")
                else:
                    errors += subset_errors(schema, upstream["properties"][name], f"{path}/{name}")
        elif key in SCHEMA_KEYS and isinstance(value, dict):
            errors += subset_errors(value, upstream[key], f"{path}/{key}")
        elif key in SCHEMA_LISTS:
            if len(value) != len(upstream[key]):
                errors.append(f"{where}: {key} has {len(value)} branches, upstream {len(upstream[key])}")
            else:
                for i, (mine, theirs) in enumerate(zip(value, upstream[key], strict=True)):
                    errors += subset_errors(mine, theirs, f"{path}/{key}[{i}]")
        elif strip(value) != strip(upstream[key]):
            errors.append(f"{where}: {key} is {value!r}, upstream {strip(upstream[key])!r}")
    for key in upstream:
        if key not in vendored and key not in MAY_DROP and key != "properties":
            errors.append(f"{where}: upstream's {key} {strip(upstream[key])!r} is dropped")
    return errors


def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def stored_upstream(file: str) -> bytes:
    return gzip.decompress((UPSTREAM_DIR / f"{file}.json.gz").read_bytes())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vendored(file: str) -> Any:
    return yaml.safe_load((HERE / file).read_text())


def check_offline() -> list[str]:
    """The offline checks of the module doc, over every vendored file; the problems found."""
    problems = []
    pins = manifest()["schemas"]
    files = sorted(p.name for p in HERE.glob("*.yaml"))
    if sorted(pins) != files:
        problems.append(f"upstream-pins.yml pins {sorted(pins)}, the directory has {files}")
    for file, pin in sorted(pins.items()):
        data = stored_upstream(file)
        if sha256(data) != pin["schema_sha256"]:
            problems.append(f"{file}: upstream/{file}.json.gz does not hash to schema_sha256")
            continue
        problems += [f"{file}: {e}" for e in subset_errors(vendored(file), json.loads(data))]
    return problems


# ------------------------------------------------------------------ fetching (online)


def _cache(cache: Path, name: str, fetch: Any) -> bytes:
    path = cache / name
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fetch())
    return path.read_bytes()


def published_crd(pin: dict[str, Any], cache: Path, strimzi_repo: Path | None) -> bytes:
    """The published CRD file a pin names, as bytes."""
    source = pin["source"]
    if source["kind"] == "goproxy":
        module, version = source["module"], source["version"]
        url = f"{GOPROXY}/{module}/@v/{version}.zip"

        def download() -> bytes:
            with urllib.request.urlopen(url, timeout=300) as response:  # noqa: S310 - a fixed https URL
                return response.read()

        archive = _cache(cache, f"{module.replace('/', '_')}@{version}.zip", download)
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            return z.read(f"{module}@{version}/{source['path']}")
    if source["kind"] == "git":
        if strimzi_repo is None:
            raise SystemExit(f"{source['repository']}: pass --strimzi-repo, a git clone of it with tag {source['tag']}")
        git = shutil.which("git") or "git"
        return subprocess.run(  # noqa: S603 - git with the pinned tag and path of upstream-pins.yml
            [git, "-C", str(strimzi_repo), "show", f"{source['tag']}:{source['path']}"],
            check=True,
            capture_output=True,
        ).stdout
    raise ValueError(f"unknown source kind {source['kind']!r}")


def fetch(cache: Path, strimzi_repo: Path | None, write: bool) -> list[str]:
    problems = []
    doc = manifest()
    for file, pin in sorted(doc["schemas"].items()):
        if pin["source"]["kind"] == "git" and strimzi_repo is None and not write:
            print(f"{file}: not fetched (no --strimzi-repo)", file=sys.stderr)  # noqa: T201 - a command-line tool
            continue
        raw = published_crd(pin, cache, strimzi_repo)
        schema = normalised(yaml.safe_load(raw), pin["crd_version"])
        if write:
            pin["crd_sha256"], pin["schema_sha256"] = sha256(raw), sha256(schema)
            UPSTREAM_DIR.mkdir(exist_ok=True)
            (UPSTREAM_DIR / f"{file}.json.gz").write_bytes(gzip.compress(schema, mtime=0))
        else:
            if sha256(raw) != pin["crd_sha256"]:
                problems.append(f"{file}: the published CRD's sha256 is {sha256(raw)}, pinned {pin['crd_sha256']}")
            if sha256(schema) != pin["schema_sha256"]:
                problems.append(f"{file}: its normalised schema differs from the pinned one")
    if write:
        MANIFEST.write_text(
            MANIFEST.read_text().split("\nschemas:\n")[0]
            + "\n"
            + yaml.safe_dump({"schemas": doc["schemas"]}, sort_keys=True, width=200)
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="the offline checks")
    f = sub.add_parser("fetch", help="download the pinned CRDs and check (or --write) the pins")
    f.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "subsidy" / "crds")
    f.add_argument("--strimzi-repo", type=Path, default=None)
    f.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    problems = check_offline() if args.command == "check" else fetch(args.cache, args.strimzi_repo, args.write)
    for problem in problems:
        print(problem, file=sys.stderr)  # noqa: T201 - a command-line tool
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
