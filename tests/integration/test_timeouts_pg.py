"""Statement and lock timeouts raise QueryTimeout (a DatabaseError) naming the configured limit."""

import pytest

from atb.db import DatabaseError, QueryTimeout, connection
from atb.testing import settings_for_tests


def _sql(statement: str):
    return lambda: connection.bound_database().execute_sql(statement)


def test_a_statement_timeout_is_a_query_timeout_naming_the_limit(pg_database_url):
    connection.connect(settings=settings_for_tests(pg_database_url, statement_timeout_ms=200))
    try:
        with pytest.raises(QueryTimeout, match="200 ms") as info:
            connection.run(_sql("SELECT pg_sleep(5)"))
        assert isinstance(info.value, DatabaseError)
        assert "ATB_DB_STATEMENT_TIMEOUT_MS" in str(info.value)
    finally:
        connection.disconnect()


def test_a_lock_timeout_is_a_query_timeout_naming_the_limit(pg_database_url):
    import psycopg2

    holder = psycopg2.connect(pg_database_url)
    try:
        holder.cursor().execute("LOCK TABLE trading_sessions IN ACCESS EXCLUSIVE MODE")
        connection.connect(settings=settings_for_tests(pg_database_url, lock_timeout_ms=150))
        with pytest.raises(QueryTimeout, match="150 ms") as info:
            connection.run(_sql("SELECT count(*) FROM trading_sessions"))
        assert "lock" in str(info.value)
    finally:
        holder.rollback()
        holder.close()
        connection.disconnect()


def test_an_ordinary_error_is_not_a_timeout(pg_database_url):
    connection.connect(settings=settings_for_tests(pg_database_url))
    try:
        with pytest.raises(DatabaseError) as info:
            connection.run(_sql("SELECT no_such_column FROM trading_sessions"))
        assert not isinstance(info.value, QueryTimeout)
    finally:
        connection.disconnect()
