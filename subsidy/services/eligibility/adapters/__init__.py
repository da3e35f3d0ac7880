"""The eligibility service's adapters: faust agent, PolicyService gRPC API."""
