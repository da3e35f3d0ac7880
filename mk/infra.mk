# Local infrastructure: a single-node Kafka (KRaft) broker and a throw-away
# PostgreSQL, both on 127.0.0.1, data under var/ (see
# docs/local-infrastructure.md). Included by the Makefile, which defines VENV.
#
#   make kafka-up      start (fetching the broker jars the first time)
#   make kafka-down    stop; data kept in var/kafka (rm -rf it to start afresh)
#   make postgres-up   start (installing Debian's postgresql first if missing)
#   make postgres-down stop; data kept in var/postgres
#   make infra-up / infra-down / infra-status   both at once
#
# Each *-up prints the address to use (KAFKA_BOOTSTRAP_SERVERS / database
# URL); if KAFKA_BOOTSTRAP_SERVERS or SUBSIDY_TEST_DATABASE_URL is already
# set, *-up starts nothing and prints that instead.

VENV ?= .venv
INFRA_PYTHON ?= $(VENV)/bin/python
INFRA_VAR ?= var
KAFKA_DATA_DIR ?= $(INFRA_VAR)/kafka
POSTGRES_DATA_DIR ?= $(INFRA_VAR)/postgres
# Empty = keep the port from the last start, or pick a free one.
KAFKA_PORT ?=
POSTGRES_PORT ?=

.PHONY: kafka-fetch kafka-up kafka-down kafka-status \
        postgres-install postgres-up postgres-down postgres-status \
        infra-up infra-down infra-status

kafka-fetch:
	$(INFRA_PYTHON) -m subsidy_dev.kafka fetch

kafka-up:
	$(INFRA_PYTHON) -m subsidy_dev.kafka start --data-dir $(KAFKA_DATA_DIR) $(if $(KAFKA_PORT),--port $(KAFKA_PORT))

kafka-down:
	$(INFRA_PYTHON) -m subsidy_dev.kafka stop --data-dir $(KAFKA_DATA_DIR)

kafka-status:
	@$(INFRA_PYTHON) -m subsidy_dev.kafka status --data-dir $(KAFKA_DATA_DIR) || true

postgres-install:
	$(INFRA_PYTHON) -m subsidy_dev.postgres install

postgres-up:
	$(INFRA_PYTHON) -m subsidy_dev.postgres start --data-dir $(POSTGRES_DATA_DIR) $(if $(POSTGRES_PORT),--port $(POSTGRES_PORT))

postgres-down:
	$(INFRA_PYTHON) -m subsidy_dev.postgres stop --data-dir $(POSTGRES_DATA_DIR)

postgres-status:
	@$(INFRA_PYTHON) -m subsidy_dev.postgres status --data-dir $(POSTGRES_DATA_DIR) || true

infra-up: kafka-up postgres-up

infra-down: kafka-down postgres-down

infra-status: kafka-status postgres-status
