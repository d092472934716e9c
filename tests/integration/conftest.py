"""Fixtures for the integration tests (PostgreSQL, the CLI end to end)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from helpers import INSERT_LIVE_SESSION_SQL

from atb.db import connection
from atb.testing import execute_sql


@pytest.fixture(autouse=True)
def disconnect_after_each_test() -> Iterator[None]:
    """CLI commands bind the connection proxy and leave it bound; unbind it after every test so
    the next one starts from nothing."""
    yield
    connection.disconnect()


@pytest.fixture
def manager(backend):
    """The manager under test, once on SQLite and once on PostgreSQL (the *_both_backends
    files); a file testing one backend defines its own."""
    return backend


@pytest.fixture
def session_id(manager) -> int:
    """An active paper session, made the manager's current one."""
    return manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "paper", 1000)


@pytest.fixture
def source_url(make_migrated_pg_database: Callable[..., str]) -> str:
    """A migrated database with rows in every table, every column set (what gets backed up)."""
    from test_cli_backup_restore import fill_every_table

    url = make_migrated_pg_database("atb_cli_backup")
    fill_every_table(url)
    return url


@pytest.fixture
def other_url(make_migrated_pg_database: Callable[..., str]) -> str:
    """A migrated database holding different rows: what a restore replaces."""
    url = make_migrated_pg_database("atb_cli_other")
    execute_sql(url, INSERT_LIVE_SESSION_SQL)
    return url


@pytest.fixture(scope="module")
def private_server():
    """A throwaway embedded server the test module may stop and start at will (one per module).

    Its folder is a /tmp folder of its own, not pytest's: every pytest run resets the mode of
    /tmp/pytest-of-<user> to 0700, which would lock the server's system user out of a folder in
    use by another run (as root, PostgreSQL runs as the wheel's unprivileged user)."""
    import shutil
    import tempfile
    from pathlib import Path

    from atb.db import local

    root = Path(tempfile.mkdtemp(prefix="atb_private_server_"))
    try:
        server = local.start(root)
        yield root, server
    finally:
        local.stop(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_database_url(make_pg_database: Callable[..., str]) -> str:
    """The run's PostgreSQL database (atb.testing's), or with ATB_TEST_ADOPTED_DATABASE=1 one
    that `atb db adopt` converted from the earlier layer's schema, emptied afterwards: the
    manager tests then prove every DatabaseManager method works on an adopted schema."""
    import os

    from atb.testing import migrate_to_head

    url = make_pg_database()
    if os.environ.get("ATB_TEST_ADOPTED_DATABASE") != "1":
        return migrate_to_head(url)
    from legacy_data import load_legacy

    from atb.db.admin.adopt import adopt_database
    from atb.testing import settings_for_tests, truncate_all

    load_legacy(url)
    db = connection.build_database(settings_for_tests(url))
    try:
        adopt_database(db)
        with db.connection_context():
            truncate_all(db)
    finally:
        db.close_all()
    return url
