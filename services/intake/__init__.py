"""The intake service: the gRPC API where applications arrive (validation,
registry facts, the 名录, an outbox to `subsidy.applications.v1`) and where
their status is read back (a projection of `subsidy.decisions.v1`).

    handlers.py   the use cases (pure core over ports.py)
    model.py      values and errors
    store.py      SQLite / PostgreSQL adapter (subsidy.db)
    registry.py   FileRegistry, HttpRegistry
    directory.py  the annual 名录 (policy/directory/<year>.yaml)
    relay.py      outbox -> Kafka (kafka-python, own thread)
    projection.py subsidy.decisions.v1 -> application status (own thread)
    server.py     grpc.aio servicer, health, reflection
    bootstrap.py  composition root; `python -m services.intake`

See docs/intake.md.
"""
