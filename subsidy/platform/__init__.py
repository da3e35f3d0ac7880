"""What every service stands on: database and outbox, the Kafka consumer
loop, topic creation, the gRPC plumbing, security, the registry port with its
adapters, metrics, logs and the process runner. Knows no service."""
