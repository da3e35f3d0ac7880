"""The services (intake, eligibility, payout, notify, review, registry_sync,
operations, console). Each has the same skeleton:

    __main__.py   ``python -m subsidy.services.<name>``
    bootstrap.py  the composition root: settings in, adapters wired, run
    config.py     settings from the environment
    model.py      the service's own values and errors
    ports.py      what the use cases need from the outside (Protocols)
    handlers.py   the use cases, over the ports; no Kafka, gRPC or SQL
    metrics.py    the service's Prometheus metrics
    adapters/     grpc.py, kafka.py, store.py and the service's other adapters

No service imports another (import-linter); what they share is in
subsidy.platform, subsidy.contracts and subsidy.core.
"""
