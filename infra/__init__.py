"""Shared infrastructure: errors, settings, Kafka clients, the embedded broker, topic names and admin."""
