"""Shared core of the Q&A outbox service: settings, schema, envelope, topology, errors."""
