"""Fixtures for the unit tests (SQLite only, no server needed)."""

from __future__ import annotations

import peewee as pw
import pytest

from atb.db.manager import DatabaseManager


@pytest.fixture
def manager(sqlite_db: pw.SqliteDatabase) -> DatabaseManager:
    """A DatabaseManager on a fresh SQLite database (`sqlite_db`)."""
    return DatabaseManager(database=sqlite_db, apply_migrations=False)
