"""The intake service's adapters: gRPC API, outbox relay, status projection, SQL store, 名录 files."""
