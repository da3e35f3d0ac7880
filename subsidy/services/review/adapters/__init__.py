"""The review service's adapters: grpc.py, kafka.py, store.py, relay.py, scheduler.py, document.py."""
