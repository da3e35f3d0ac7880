"""Songjiang District's industrial-internet subsidy system, in layers
(docs/architecture.md; import-linter keeps the walls: pyproject.toml [tool.importlinter]):

    subsidy.cli         the ``subsidy`` command line
    subsidy.services    intake, eligibility, payout, notify: never import each other
    subsidy.platform    database, outbox, consumer loop, topics, gRPC, security,
                        registry, metrics, logs, process
    subsidy.contracts   the wire: JSON codec, protobuf codec, CloudEvents, topic names
    subsidy.v1          generated from proto/ (part of the contracts layer)
    subsidy.core        domain values, money, credit codes, the policy, the rules

Developer tooling (the local broker and database, the demo, protogen) is the
separate package ``subsidy_dev``, which nothing here imports.
"""
