"""Durable, shared storage: ``store`` (SQLite, states, the commit protocol), ``segments`` (the
immutable vector files) and ``locking`` (the cross-process write lock)."""
