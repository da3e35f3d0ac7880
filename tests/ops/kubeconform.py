"""kubeconform (github.com/yannh/kubeconform), an independent strict validator
of the rendered manifests, built with `go install` on first use and cached
like subsidy_dev.tools' kustomize (``$SUBSIDY_CACHE_DIR``/tools).

Offline: the Kubernetes schemas are the ones kubernetes-validate ships, made
standalone (kubeconform cannot resolve their ``/api/_definitions.json``
references), and the custom resources' are deploy/k8s/crd-schemas/ as JSON.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from subsidy_dev.tools import ToolUnavailable, go_tool

MODULE = "github.com/yannh/kubeconform/cmd/kubeconform"
VERSION = "v0.7.0"


#: What ``binary`` raises when it cannot be built (a machine without Go).
Unavailable = ToolUnavailable


def binary() -> Path:
    return go_tool("kubeconform", MODULE, VERSION)


def _rewrite(node, prefix: str):
    if isinstance(node, dict):
        return {
            k: (v.replace(prefix, "#", 1) if k == "$ref" and isinstance(v, str) else _rewrite(v, prefix))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, prefix) for v in node]
    return node


def core_schemas(version: str, kinds: set[tuple[str, str]], out: Path) -> None:
    """Standalone strict schemas of ``kinds`` ({(kind, apiVersion)}) for
    Kubernetes ``version``, as kubeconform names them, under ``out``."""
    import kubernetes_validate

    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    target = out / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    for kind, api_version in kinds:
        group, _, ver = api_version.rpartition("/")
        suffix = f"-{group.split('.')[0]}-{ver}" if group else f"-{ver}"
        name = f"{kind.lower()}{suffix}.json"
        schema = json.loads((source / name).read_text())
        schema = _rewrite(schema, "/api/_definitions.json#")
        schema["$defs"] = _rewrite(definitions, "/api/_definitions.json#")
        schema.pop("$id", None)
        (target / name).write_text(json.dumps(schema))


def closed(schema):
    """kubeconform's -strict closes only the schemas it generates names for, not
    a CRD's: as the API server's strict field validation does, every object
    schema with properties rejects other fields unless it preserves unknown
    fields."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if (
        isinstance(out.get("properties"), dict)
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas(source: Path, out: Path) -> None:
    """deploy/k8s/crd-schemas/<group>_<version>_<kind>.yaml, closed, as
    <group>_<kind>_<version>.json (kubeconform's naming)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.yaml"):
        group, version, kind = path.stem.split("_")
        (out / f"{group}_{kind}_{version}.json").write_text(json.dumps(closed(yaml.safe_load(path.read_text()))))


def is_core(api_version: str) -> bool:
    """Kubernetes' own groups (v1, apps/v1, networking.k8s.io/v1...), not a CRD's."""
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def validate(manifests: str, version: str, work: Path, crd_source: Path) -> subprocess.CompletedProcess:
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    kinds = {(d["kind"], d["apiVersion"]) for d in docs if is_core(d["apiVersion"])}
    core_schemas(version, kinds, work / "core")
    crd_schemas(crd_source, work / "crd")
    (work / "all.yaml").write_text(manifests)
    return subprocess.run(
        [
            str(binary()),
            "-strict",
            "-summary",
            "-kubernetes-version",
            version,
            "-schema-location",
            str(work / "core")
            + "/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json",
            "-schema-location",
            str(work / "crd") + "/{{.Group}}_{{.ResourceKind}}_{{.ResourceAPIVersion}}.json",
            str(work / "all.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
