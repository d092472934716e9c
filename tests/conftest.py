"""Fixtures for every test directory. The database fixtures themselves (`sqlite_db`, `pg_db`,
`make_pg_database`, ...) come from the atb pytest plugin, atb.testing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atb.db.manager import DatabaseManager
from atb.testing import mark_postgres_fixtures

# This project's own fixtures that start embedded servers: their tests are `postgres` tests too.
mark_postgres_fixtures("private_server", "scratch_server")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> DatabaseManager:
    """A DatabaseManager on each backend in turn: a fresh SQLite database (`sqlite_db`), then the
    run's PostgreSQL database (`pg_db`). The PostgreSQL variant carries the `postgres` mark."""
    database = request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")
    return DatabaseManager(database=database, apply_migrations=False)


@pytest.fixture
def statements(manager: DatabaseManager, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement the manager's database runs while the test body runs (a test's own
    `manager` fixture decides which database that is)."""
    seen: list[str] = []
    original = manager.database.execute_sql

    def counting(sql, params=None):
        seen.append(sql)
        return original(sql, params)

    monkeypatch.setattr(manager.database, "execute_sql", counting)
    yield seen
