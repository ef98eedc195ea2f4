"""The outbox relay: publishes committed ``qa.outbox`` rows to RabbitMQ (``qa-relay``)."""
