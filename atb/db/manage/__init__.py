"""The bodies of DatabaseManager's methods, one module per domain (the manager is their thin face)."""
