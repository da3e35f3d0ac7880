"""deploy/k8s/crd-schemas against the operators' published CRDs of the
pinned versions (issue 16, item 7): deploy/k8s/crd-schemas/crdcheck.py.

Offline: every vendored subset is pinned (upstream-pins.yml), the stored
normalised upstream schema hashes to its pin, and the subset is a true
subset of it; the checker does catch a changed enum, an invented field and
a dropped constraint. Online (the Go module proxy, as `go install` uses for
kustomize): the CRDs published in the operators' Go modules at the pinned
tags hash to their pins and give the stored schemas. Strimzi's CRDs are not
in any registry this test can reach (GitHub releases only): their pins were
taken from the repository at the release tag and are re-checked with
`crdcheck.py fetch --strimzi-repo <clone>`, not here.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "k8s" / "crd-schemas"))
import crdcheck  # noqa: E402


def test_every_vendored_subset_is_pinned_and_a_subset_of_its_published_crd():
    assert crdcheck.check_offline() == []
    pins = crdcheck.manifest()["schemas"]
    for file, pin in pins.items():
        group_version_kind = file.removesuffix(".yaml").split("_")
        assert pin["crd_version"] == group_version_kind[1], file
        assert len(pin["crd_sha256"]) == 64 and len(pin["schema_sha256"]) == 64, file


def upstream(file: str) -> dict:
    return json.loads(crdcheck.stored_upstream(file))


def test_the_checker_catches_a_changed_enum_an_invented_field_and_a_dropped_constraint():
    file = "kafka.strimzi.io_v1beta2_kafkatopic.yaml"
    theirs = upstream(file)
    mine = crdcheck.vendored(file)
    assert crdcheck.subset_errors(mine, theirs) == []

    changed = copy.deepcopy(mine)
    changed["properties"]["spec"]["properties"]["replicas"]["maximum"] = 99
    assert crdcheck.subset_errors(changed, theirs) == ["/spec/replicas: maximum is 99, upstream 32767"]
    invented = copy.deepcopy(mine)
    invented["properties"]["spec"]["properties"]["partitionz"] = {"type": "integer"}
    assert crdcheck.subset_errors(invented, theirs) == ["/spec/partitionz: no such field upstream"]
    dropped = copy.deepcopy(mine)
    del dropped["properties"]["spec"]["properties"]["partitions"]["minimum"]
    assert crdcheck.subset_errors(dropped, theirs) == ["/spec/partitions: upstream's minimum 1 is dropped"]
    # A field named "description" is a field, not a description to strip.
    assert "description" in upstream("postgresql.cnpg.io_v1_cluster.yaml")["properties"]["spec"]["properties"]


def test_the_stored_schema_is_what_a_tampered_file_would_not_hash_to():
    file = "keda.sh_v1alpha1_scaledobject.yaml"
    data = crdcheck.stored_upstream(file)
    assert crdcheck.sha256(data) == crdcheck.manifest()["schemas"][file]["schema_sha256"]
    assert crdcheck.sha256(data.replace(b'"maxReplicaCount"', b'"maxReplicaCounts"')) != crdcheck.sha256(data)


GOPROXY_PINS = sorted(f for f, p in crdcheck.manifest()["schemas"].items() if p["source"]["kind"] == "goproxy")


@pytest.mark.parametrize("file", GOPROXY_PINS)
def test_the_pins_are_the_crds_published_at_the_pinned_tags(file):
    pin = crdcheck.manifest()["schemas"][file]
    cache = Path.home() / ".cache" / "subsidy" / "crds"
    raw = crdcheck.published_crd(pin, cache, None)
    assert crdcheck.sha256(raw) == pin["crd_sha256"], f"{file}: {pin['operator']} {pin['source']['path']}"
    assert crdcheck.normalised(yaml.safe_load(raw), pin["crd_version"]) == crdcheck.stored_upstream(file)
