"""The pool gives every connection back, survives restarts in get_session, and cleanup spares
connections in use."""

import threading
import time

import pytest
from helpers import make_session

from atb.db import DatabaseManager, connection, local
from atb.db.models import TradingSession
from atb.testing import settings_for_tests


def test_constructing_a_manager_on_a_migrated_database_returns_its_connection(pg_database_url):
    manager = DatabaseManager(pg_database_url)
    try:
        assert manager.get_connection_stats()["pool_in_use"] == 0
        assert connection.bound_database().is_closed()
    finally:
        connection.disconnect()


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


def test_callers_beyond_the_pool_size_wait_in_line_instead_of_failing(pg_database_url):
    """16 threads on a pool of 4: nobody errors, and checkout attempts rarely find the pool full
    (peewee's own loop failed thousands of times; a queue only loses the odd race)."""
    db = connection.connect(settings=settings_for_tests(pg_database_url, pool_size=4))
    full, calls, errors = [0], [0], []
    original = db._connect

    def counting_connect():
        calls[0] += 1
        try:
            return original()
        except Exception:
            full[0] += 1
            raise

    db._connect = counting_connect
    rounds = 15

    def worker():
        try:
            for _ in range(rounds):
                connection.run(lambda: db.execute_sql("SELECT pg_sleep(0.005)"), transaction=False)
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    try:
        _run_in_threads(worker, 16)
        assert errors == []
        assert calls[0] >= 16 * rounds
        assert full[0] <= calls[0] // 10
        assert len(db._in_use) == 0
    finally:
        connection.disconnect()


def test_a_freed_connection_wakes_one_waiter_not_all_of_them(pg_database_url, monkeypatch):
    """12 threads take turns on a pool of 1: each checkout wakes about one sleeping waiter.
    A shared notify_all woke every waiter on every return (~6 per checkout here) and burnt
    ~3 ms of CPU per checkout with 64 threads on 16 connections (scripts/bench_manager.py)."""
    db = connection.connect(settings=settings_for_tests(pg_database_url, pool_size=1))
    wakeups = [0]

    class CountingCondition(threading.Condition):
        def wait(self, timeout=None):
            try:
                return super().wait(timeout)
            finally:
                if self._lock is db._pool_lock:  # a pool waiter, not some other Condition
                    wakeups[0] += 1

    monkeypatch.setattr(threading, "Condition", CountingCondition)  # conditions made from now
    db._pool_available = CountingCondition(db._pool_lock)  # and peewee's shared one
    threads_count, rounds, errors = 12, 3, []

    def worker():
        try:
            for _ in range(rounds):
                with connection.borrowed(db):
                    db.execute_sql("SELECT pg_sleep(0.01)")
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    try:
        _run_in_threads(worker, threads_count)
        assert errors == []
        checkouts = threads_count * rounds
        assert wakeups[0] <= 2 * checkouts, (wakeups[0], checkouts)
        assert len(db._in_use) == 0 and db._reserved == 0 and not db._waiters
    finally:
        connection.disconnect()


def test_a_full_pool_still_fails_after_the_configured_wait(pg_database_url):
    db = connection.connect(
        settings=settings_for_tests(pg_database_url, pool_size=1, pool_timeout=1)
    )
    held, release = threading.Event(), threading.Event()

    def holder():
        with connection.borrowed(db):
            db.execute_sql("SELECT 1")
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with pytest.raises(connection.DatabaseUnavailable, match="within 1s"):
            connection.run(lambda: db.execute_sql("SELECT 1"), transaction=False)
        assert time.monotonic() - started >= 0.9
    finally:
        release.set()
        thread.join(10)
        connection.disconnect()


def _run_in_threads(worker, count):
    """Run `worker` in `count` threads at once and wait for all of them."""
    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
