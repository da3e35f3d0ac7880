"""The notify service's adapters: Kafka consumer, e-mail/webhook/SMS channels, contacts, SQL notification log."""
