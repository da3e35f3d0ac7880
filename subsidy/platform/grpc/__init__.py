"""gRPC plumbing shared by every server: handler wrapping for interceptors,
request decoding, rich error details."""
