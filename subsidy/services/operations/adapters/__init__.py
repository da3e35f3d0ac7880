"""operations' adapters: the store, the DLQ consumers, the outbox relay, the gRPC edge."""
