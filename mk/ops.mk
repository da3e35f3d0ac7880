# Operations: render the Kubernetes manifests, check them and the alerts.
# Included by the Makefile (VENV, PY). See docs/operations.md.
#
#   make k8s-render OVERLAY=prod   print the manifests (kustomize build, default options)
#   make k8s-sync                  copy policy/ and demo/registry.json into deploy/k8s
#   make k8s-test                  render and validate every overlay offline
#   make alerts-test               promtool check rules + test rules
#   make ops-test                  both
#   make restore-drill             the PostgreSQL restore drill (not in make test)
#   make image                     build the runtime image here (debootstrap + podman, root; deploy/image)
#   make image-lock                re-lock the image's dependencies with hashes
#   make image-smoke               the image's smoke test (podman, local Kafka and PostgreSQL)
#   make crd-verify [STRIMZI_REPO=<clone at the tag>]
#                                  the vendored CRD schemas against the published CRDs of the pinned versions

OVERLAY ?= dev
IMAGE ?= songjiang-subsidy:dev

.PHONY: k8s-render k8s-sync k8s-test alerts-test ops-test image

k8s-render: $(INSTALLED)
	@"$$($(PY) -m subsidy_dev.tools kustomize)" build deploy/k8s/overlays/$(OVERLAY)

# The manifests ship copies of policy/ (kustomize's default load restrictor
# refuses files outside deploy/k8s); tests/ops/test_k8s.py fails when they drift.
k8s-sync:
	$(PY) deploy/k8s/sync-files.py

k8s-test: $(GENERATED)
	$(PY) -m pytest tests/ops/test_k8s.py tests/ops/test_k8s_security.py tests/ops/test_k8s_scaling.py tests/ops/test_crd_schemas.py tests/ops/test_secure_by_default.py tests/ops/test_image_lock.py -q

# deploy/k8s/crd-schemas/crdcheck.py: offline subset check, then the pinned
# CRDs fetched again (Go module proxy; Strimzi from STRIMZI_REPO, a clone at its tag).
STRIMZI_REPO ?=
.PHONY: crd-verify
crd-verify: $(INSTALLED)
	$(PY) deploy/k8s/crd-schemas/crdcheck.py check
	$(PY) deploy/k8s/crd-schemas/crdcheck.py fetch $(if $(STRIMZI_REPO),--strimzi-repo $(STRIMZI_REPO),)

alerts-test: $(INSTALLED)
	$(PY) -m pytest tests/ops/test_alerts.py -q

ops-test: $(GENERATED)
	$(PY) -m pytest tests/ops/test_k8s.py tests/ops/test_k8s_security.py tests/ops/test_k8s_scaling.py tests/ops/test_crd_schemas.py tests/ops/test_grpc_balancing.py tests/ops/test_secure_by_default.py tests/ops/test_image_lock.py tests/ops/test_alerts.py -q

# No Docker engine: a Debian base from Debian's packages (debootstrap), the
# locked wheels, one layer imported with podman (deploy/image/build.sh).
image: $(INSTALLED)
	IMAGE=$(IMAGE) PY=$(PY) deploy/image/build.sh

image-lock: $(INSTALLED)
	$(PY) deploy/image/lock.py

.PHONY: image-lock image-smoke
image-smoke: $(GENERATED)
	SUBSIDY_IMAGE_SMOKE=1 IMAGE=$(IMAGE) $(PY) -m pytest tests/deploy/test_image.py -q -p no:cacheprovider

# The restore drill on a local PostgreSQL (deploy/backup/restore_drill.py,
# docs/operations.md#restore-drill): base backup + WAL archive, the database
# lost, point-in-time restore, ledger and outbox checked. Not in `make test`
# (a PostgreSQL cluster of its own; needs Debian's postgresql package).
.PHONY: restore-drill
restore-drill: $(GENERATED)
	SUBSIDY_RESTORE_DRILL=1 $(PY) -m pytest tests/deploy/test_restore_drill.py -q -p no:cacheprovider
