"""Operators' CLI (``qa-ops``)."""
