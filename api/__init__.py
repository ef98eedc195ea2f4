"""The HTTP API: writes questions and answers with their outbox events; reads the feed."""
