"""The operators' web console: overview, dead letters, event lookup (server-rendered)."""
