"""The payout service's adapters: decision and payment consumers, outbox relay, gRPC API, SQL store, scheduler, finance CSV export."""
