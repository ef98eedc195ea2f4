"""Alembic migrations (packaged so ``qa-ops db upgrade`` finds them when installed)."""
