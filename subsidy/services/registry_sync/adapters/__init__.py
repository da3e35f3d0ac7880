"""registry-sync's adapters: the feed over HTTP, the store, the relay."""
