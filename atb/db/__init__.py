"""atb.db: the public face of the persistence layer.

    from atb.db import DatabaseManager
    db = DatabaseManager()            # DATABASE_URL, or the local embedded PostgreSQL in development

Importing this package never connects, reads files or prints; heavier parts load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .connection import bind, connect, database, disconnect
from .errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailable,
    DuplicateError,
    MigrationError,
    NotFound,
    QueryTimeout,
    ValidationError,
)
from .settings import DatabaseSettings, redact_url

if TYPE_CHECKING:
    from .manager import DatabaseManager

_LAZY = {
    "DatabaseManager": "atb.db.manager",
    "apply_pending_migrations": "atb.db.migrate",
    "migration_state": "atb.db.migrate",
}

__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "DatabaseManager",
    "DatabaseSettings",
    "DatabaseUnavailable",
    "DuplicateError",
    "MigrationError",
    "NotFound",
    "QueryTimeout",
    "ValidationError",
    "apply_pending_migrations",
    "bind",
    "connect",
    "database",
    "disconnect",
    "migration_state",
    "redact_url",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atb.db' has no attribute {name!r}")
