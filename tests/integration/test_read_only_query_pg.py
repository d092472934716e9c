"""execute_query(read_only=True) on PostgreSQL: one statement, no transaction control, and no
session state left on a pooled connection."""

import pytest

from atb.db import DatabaseManager, ValidationError, connection
from atb.testing import settings_for_tests


@pytest.fixture
def manager(pg_database_url):
    db = connection.connect(settings=settings_for_tests(pg_database_url, pool_size=1))
    yield DatabaseManager(database=db, apply_migrations=False)
    connection.disconnect()


def test_a_second_statement_is_refused_before_anything_runs(manager):
    with pytest.raises(ValidationError, match="exactly one statement"):
        manager.execute_query("SELECT 1; CREATE TABLE atb_ro_probe (x int)")
    rows = manager.execute_query("SELECT to_regclass('atb_ro_probe') AS t")
    assert rows == [{"t": None}]


@pytest.mark.parametrize(
    "sql", ["COMMIT", "SET TRANSACTION READ WRITE", "SET transaction_read_only = off"]
)
def test_transaction_control_is_refused(manager, sql):
    with pytest.raises(ValidationError):
        manager.execute_query(sql)


def test_session_settings_do_not_reach_the_next_caller(manager):
    before = manager.execute_query("SHOW search_path")[0]["search_path"]
    manager.execute_query("SELECT set_config('search_path', 'pg_catalog', false)")
    assert manager.execute_query("SHOW search_path")[0]["search_path"] == before


def test_advisory_locks_do_not_outlive_the_query(manager):
    manager.execute_query("SELECT pg_advisory_lock(424242)")
    rows = manager.execute_query(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242"
    )
    assert rows == [{"n": 0}]


def test_a_plain_select_still_works_and_keeps_the_connection(manager):
    assert manager.execute_query("SELECT ';' AS s, $$x;y$$ AS d") == [{"s": ";", "d": "x;y"}]
    assert manager.get_connection_stats()["pool_idle"] == 1


def test_settings_changed_by_a_function_the_scanner_cannot_see_are_undone(manager):
    manager.execute_query(
        "CREATE OR REPLACE FUNCTION atb_ro_sneaky() RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM set_config('search_path', 'pg_catalog', false); "
        "PERFORM set_config('statement_timeout', '1', false); "
        "PERFORM set_config('DateStyle', 'SQL, DMY', false); RETURN 1; END $$",
        read_only=False,
    )
    before = manager.execute_query(
        "SELECT current_setting('search_path') AS p, current_setting('DateStyle') AS d"
    )
    try:
        assert manager.execute_query("SELECT atb_ro_sneaky() AS x") == [{"x": 1}]
        after = manager.execute_query(
            "SELECT current_setting('search_path') AS p, current_setting('DateStyle') AS d, "
            "pg_sleep(0.01) IS NULL AS slept"
        )
        assert [{"p": after[0]["p"], "d": after[0]["d"]}] == before
        assert manager.get_connection_stats()["pool_idle"] == 1  # same connection, kept
    finally:
        manager.execute_query("DROP FUNCTION atb_ro_sneaky()", read_only=False)
