"""The pool gives every connection back, survives restarts in get_session, and cleanup spares
connections in use."""

import threading
import time

import pytest
from helpers import make_session

from atb.db import DatabaseManager, connection, local
from atb.db.models import TradingSession
from atb.testing import settings_for_tests

pytestmark = pytest.mark.postgres


def test_constructing_a_manager_on_a_migrated_database_returns_its_connection(pg_database_url):
    manager = DatabaseManager(pg_database_url)
    try:
        assert manager.get_connection_stats()["pool_in_use"] == 0
        assert connection.bound_database().is_closed()
    finally:
        connection.disconnect()


@pytest.fixture(scope="module")
def private_server(tmp_path_factory):
    """A throwaway embedded server this module may stop and start at will."""
    root = tmp_path_factory.mktemp("pool_restart")
    server = local.start(root)
    yield root, server
    local.stop(root)


def test_get_session_works_on_the_first_try_after_a_restart(private_server):
    root, server = private_server
    manager = DatabaseManager(server.url, apply_migrations=True)
    try:
        with manager.get_session() as db:
            db.execute_sql("SELECT 1")
        local.stop(root)
        local.start(root)
        for _ in range(3):
            with manager.get_session() as db:
                assert db.execute_sql("SELECT 1").fetchone() == (1,)
        assert manager.get_connection_stats()["pool_in_use"] == 0
    finally:
        connection.disconnect()
        local.start(root)


def test_cleanup_spares_a_connection_another_thread_is_using(pg_database_url):
    db = connection.connect(settings=settings_for_tests(pg_database_url, pool_max_age=1))
    manager = DatabaseManager(database=db, apply_migrations=False)
    inside, cleaned, outcome = threading.Event(), threading.Event(), []

    def writer():
        try:
            with manager.get_session():
                make_session()
                inside.set()
                cleaned.wait(10)
                make_session()
            outcome.append("committed")
        except Exception as exc:  # reported below
            outcome.append(repr(exc))

    thread = threading.Thread(target=writer)
    try:
        thread.start()
        assert inside.wait(10)
        time.sleep(1.5)  # the writer's connection is now older than pool_max_age
        manager.cleanup_connection_pool()
        cleaned.set()
        thread.join(10)
        assert outcome == ["committed"]
        assert connection.run(lambda: TradingSession.select().count(), transaction=False) == 2
    finally:
        cleaned.set()
        thread.join(10)
        with connection.borrowed(db):
            TradingSession.delete().execute()
        connection.disconnect()
