"""The pooled PostgreSQL connection: exact values, DB-enforced enums, recovery, bounded waits."""

import datetime as dt
import threading
from decimal import Decimal

import peewee as pw
import psycopg2
import pytest
from helpers import make_session

from atb.db import connection, local
from atb.db.errors import ConfigurationError, DatabaseError, DatabaseUnavailable
from atb.db.migrate import apply_pending_migrations
from atb.db.models import TradingSession
from atb.testing import settings_for_tests


def test_a_decimal_with_eighteen_digits_round_trips_exactly(pg_db):
    value = Decimal("9999999999.99999999")
    row = make_session(initial_balance=value, final_balance=Decimal("-0.00000001"))
    again = TradingSession.get_by_id(row.id)
    assert again.initial_balance == value
    assert again.final_balance == Decimal("-0.00000001")
    assert isinstance(again.initial_balance, Decimal)


def test_a_raw_insert_of_a_bad_enum_value_is_rejected_by_the_database(pg_db):
    with pytest.raises(pw.IntegrityError, match="check"):
        with pg_db.atomic():
            pg_db.execute_sql(
                "INSERT INTO trading_sessions (start_time, mode, initial_balance, strategy_name,"
                " symbol, timeframe) VALUES (now(), 'GARBAGE', 1, 's', 'X', '1h')"
            )
    assert TradingSession.select().count() == 0


def test_a_raw_insert_gets_server_defaults(pg_db):
    pg_db.execute_sql(
        "INSERT INTO trading_sessions (start_time, mode, initial_balance, strategy_name,"
        " symbol, timeframe) VALUES (now(), 'PAPER', 1, 's', 'X', '1h')"
    )
    row = TradingSession.get()
    assert row.is_active is True
    assert row.exchange == "binance"
    assert row.total_trades == 0
    assert row.created_at.tzinfo is not None


def test_aware_datetimes_are_stored_in_utc_and_read_back_aware(pg_db):
    paris = dt.timezone(dt.timedelta(hours=2))
    row = make_session(start_time=dt.datetime(2026, 6, 1, 14, 0, tzinfo=paris))
    again = TradingSession.get_by_id(row.id)
    assert again.start_time == dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert again.start_time.utcoffset() == dt.timedelta(0)


def test_session_settings_reach_the_server(pg_db):
    timeout = pg_db.execute_sql("SHOW statement_timeout").fetchone()[0]
    app = pg_db.execute_sql("SHOW application_name").fetchone()[0]
    assert timeout == "10s"
    assert app == "atb"


def test_a_connection_killed_in_use_is_replaced_without_the_caller_noticing(pg_db, pg_server_url):
    connection.run(lambda: make_session())
    # Keep the calling thread's connection open, then kill its backend from outside.
    pg_db.connect(reuse_if_open=True)
    pid = pg_db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    admin = psycopg2.connect(**settings_for_tests(pg_server_url).connect_params())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()

    # A read is idempotent: retried even if the poll missed the goodbye (over TCP it may still
    # be on its way) and the statement was sent on the dead connection.
    count = connection.run(
        lambda: TradingSession.select().count(), transaction=False, idempotent=True
    )
    assert count == 1


def test_pool_exhaustion_fails_within_the_wait_timeout(pg_database_url):
    db = connection.connect(
        settings=settings_for_tests(pg_database_url, pool_size=1, pool_timeout=1)
    )
    holding, release = threading.Event(), threading.Event()

    def hold():
        db.connect()
        holding.set()
        release.wait(10)
        db.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        with pytest.raises(DatabaseUnavailable, match="pooled connection"):
            connection.run(lambda: db.execute_sql("SELECT 1").fetchone())
    finally:
        release.set()
        thread.join()
        connection.disconnect()


def test_statement_timeout_is_a_database_error_not_a_hang(pg_database_url):
    connection.connect(settings=settings_for_tests(pg_database_url, statement_timeout_ms=200))
    try:
        with pytest.raises(DatabaseError, match="statement timeout"):
            connection.run(lambda: connection.bound_database().execute_sql("SELECT pg_sleep(5)"))
    finally:
        connection.disconnect()


def test_nothing_bound_is_a_clear_error():
    connection.disconnect()
    with pytest.raises(ConfigurationError, match="connect"):
        connection.run(lambda: None)


def test_the_pool_recovers_after_a_server_restart(private_server):
    root, server = private_server
    connection.connect(settings=settings_for_tests(server.url))
    try:
        apply_pending_migrations()
        connection.run(lambda: make_session())

        local.stop(root)
        with pytest.raises(DatabaseUnavailable) as outage:
            connection.run(lambda: TradingSession.select().count(), transaction=False)
        assert "password" not in str(outage.value).lower()

        local.start(root)
        count = connection.run(lambda: TradingSession.select().count(), transaction=False)
        assert count == 1
        connection.run(lambda: make_session())
        assert connection.run(lambda: TradingSession.select().count(), transaction=False) == 2
    finally:
        connection.disconnect()
        local.start(root)


def test_idle_pooled_connections_survive_a_restart_too(private_server):
    root, server = private_server
    db = connection.connect(settings=settings_for_tests(server.url))
    try:
        connection.ping()  # leaves one idle connection in the pool
        local.stop(root)
        local.start(root)
        assert connection.ping() >= 0
        assert len(db._connections) + len(db._in_use) <= 1
    finally:
        connection.disconnect()
