# The two commands a newcomer needs: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PROTOS := $(shell find proto -name '*.proto')
GENERATED := subsidy/v1/.generated

.PHONY: run calculate test test-faults fuzz unit lint proto proto-release venv bench bench-scaling clean clean-runs help system-packages
.DEFAULT_GOAL := help

help:
	@echo "make run    - start Kafka and the four services; submit the demo applications; show decisions, ledger, notifications"
	@echo "             (make run ARGS=--exit stops after the demo)"
	@echo "make calculate - the calculator alone over the demo applications (no Kafka)"
	@echo "make test   - set up .venv, generate protobuf code, run the whole suite (fault injection included)"
	@echo "make lint   - ruff (lint and format), mypy (strict on subsidy/core), import-linter's layer contracts"
	@echo "make test-faults - the fault-injection suite alone (ARGS='--fault-seeds 1-20' or --soak)"
	@echo "make fuzz   - the coverage-guided fuzzer, FUZZ_SECONDS (120) per target; crashes become tests/fuzz/corpus inputs"
	@echo "make bench  - pipeline, intake and calculator throughput, each beside its baseline (ARGS=--quick)"
	@echo "make bench-scaling - 1 and 2 replicas of eligibility, payout and intake's proposal pass: partitions, rates (ARGS=--quick)"
	@echo "make proto  - regenerate subsidy/v1 from proto/"

venv: $(INSTALLED)
$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

proto: $(GENERATED)
$(GENERATED): $(INSTALLED) $(PROTOS) subsidy_dev/protogen.py
	$(PY) -m subsidy_dev.protogen
	touch $@

# The notice PDF's CJK font and pdftotext (mk/system-packages.sh).
system-packages:
	@bash mk/system-packages.sh

run: $(GENERATED) system-packages
	$(PY) -m subsidy_dev.stack demo $(ARGS)

calculate: $(GENERATED)
	$(VENV)/bin/subsidy simulate demo/applications.jsonl --summary --format table

# Everything, the seeded fault injection (default seeds) included.
test: lint system-packages
	$(PY) -m pytest

LINTED := subsidy subsidy_dev tests bench
lint: $(GENERATED)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy subsidy/core
	$(VENV)/bin/lint-imports --no-logo

test-faults: $(GENERATED)
	$(PY) -m pytest tests/faults $(ARGS)

# The coverage-guided fuzzer (Atheris) over every decoder and gRPC request,
# FUZZ_SECONDS per target (make test runs it for 3 s each).
FUZZ_SECONDS ?= 120
fuzz: $(GENERATED)
	SUBSIDY_FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest tests/fuzz/test_coverage_guided.py -v $(ARGS)

unit: $(GENERATED)
	$(PY) -m pytest tests/unit tests/property tests/test_policy_cases.py -q

bench: $(GENERATED)
	$(PY) bench/run.py $(ARGS)

bench-scaling: $(GENERATED)
	$(PY) bench/scaling.py $(ARGS)

proto-release: $(INSTALLED)
	cd proto && ../$(VENV)/bin/buf build -o ../contracts/subsidy-v1-release.binpb

# End what interrupted runs left behind (subsidy_dev/run_groups.py); make run and
# every pytest session do this at start.
clean-runs: $(INSTALLED)
	$(PY) -m subsidy_dev.run_groups

clean:
	rm -rf $(VENV) subsidy/v1 .pytest_cache .hypothesis var

-include mk/*.mk
