"""Migrations on real PostgreSQL: whole schema, idempotence, the advisory lock, the CLI."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from atb.cli import cli
from atb.db import connection
from atb.db.migrate import (
    HISTORY_TABLE,
    apply_pending_migrations,
    available_migrations,
    make_router,
    migration_state,
)
from atb.db.models import ALL_MODELS
from atb.testing import settings_for_tests

APP_TABLES = {model._meta.table_name for model in ALL_MODELS}


@pytest.fixture
def empty_db(make_pg_database):
    url = make_pg_database()
    db = connection.connect(settings=settings_for_tests(url))
    yield url, db
    connection.disconnect()


def history_rows(db):
    return [r[0] for r in db.execute_sql(f'SELECT name FROM "{HISTORY_TABLE}" ORDER BY id')]


def test_migrations_create_every_table_on_an_empty_database(empty_db):
    _, db = empty_db
    applied = apply_pending_migrations()
    assert applied == list(available_migrations())
    assert APP_TABLES <= set(db.get_tables())
    assert history_rows(db) == applied


def test_applying_twice_applies_nothing_the_second_time(empty_db):
    _, db = empty_db
    apply_pending_migrations()
    assert apply_pending_migrations() == []
    assert len(history_rows(db)) == len(available_migrations())


def test_status_is_read_only_on_an_empty_database(empty_db):
    _, db = empty_db
    state = migration_state()
    assert state.applied == () and state.pending == available_migrations()
    assert HISTORY_TABLE not in db.get_tables()


def test_rolling_back_every_migration_removes_every_table(empty_db):
    _, db = empty_db
    apply_pending_migrations()
    router = make_router(db)
    for _ in available_migrations():  # newest first, down to the initial one
        router.rollback()
    assert not (APP_TABLES & set(db.get_tables()))
    assert history_rows(db) == []


def test_two_processes_migrating_at_once_apply_each_migration_exactly_once(empty_db):
    url, db = empty_db
    env = {**os.environ, "ATB_ENV": "development"}
    code = (
        "import sys; from atb.db import connection; from atb.db.migrate import apply_pending_migrations;"
        "from atb.testing import settings_for_tests;"
        "connection.connect(settings=settings_for_tests(sys.argv[1]));"
        "print(len(apply_pending_migrations()))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    counts = sorted(int(out.strip()) for out, _ in outputs)
    assert counts == [0, len(available_migrations())]
    assert history_rows(db) == list(available_migrations())


def test_cli_status_exits_1_while_migrations_are_pending_and_0_at_head(empty_db):
    url, _ = empty_db
    runner = CliRunner()
    pending = runner.invoke(cli, ["db", "status", "--url", url])
    assert pending.exit_code == 1, pending.output
    assert "[ ] 001_initial" in pending.output

    plan = runner.invoke(cli, ["db", "migrate", "--plan", "--url", url])
    assert plan.exit_code == 0 and "would apply 001_initial" in plan.output

    migrated = runner.invoke(cli, ["db", "migrate", "--url", url])
    assert migrated.exit_code == 0 and "applied 001_initial" in migrated.output

    done = runner.invoke(cli, ["db", "status", "--url", url])
    assert done.exit_code == 0, done.output
    assert "[x] 001_initial" in done.output


def test_cli_migrate_as_a_subprocess_with_the_console_script(empty_db):
    url, _ = empty_db
    result = subprocess.run(
        [sys.executable, "-m", "atb", "db", "migrate", "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "applied 001_initial" in result.stdout


def test_cli_reports_an_unreachable_server_in_one_line_without_the_password():
    url = "postgresql://atb:hunter2@127.0.0.1:1/nowhere"
    result = CliRunner().invoke(cli, ["db", "status", "--url", url])
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output
    assert "cannot reach" in result.output


def test_cli_refuses_sqlite_and_unknown_schemes_with_exit_1():
    runner = CliRunner()
    sqlite = runner.invoke(cli, ["db", "status", "--url", "sqlite:///x.db"])
    assert sqlite.exit_code == 1 and "unit tests" in sqlite.output
    mysql = runner.invoke(cli, ["db", "status", "--url", "mysql://u:pw@h/d"])
    assert mysql.exit_code == 1 and "postgresql://" in mysql.output and ":pw@" not in mysql.output


def test_a_manager_started_on_an_empty_database_brings_it_to_head(make_pg_database):
    from atb.db import DatabaseManager

    url = make_pg_database()
    manager = DatabaseManager(url)
    try:
        state = migration_state()
        assert state.pending == () and state.applied == available_migrations()
        assert manager.test_connection() is True
    finally:
        manager.close()
        connection.disconnect()


def test_a_manager_leaves_a_partly_migrated_database_alone_by_default(empty_db, caplog):
    from atb.db import DatabaseManager

    url, db = empty_db
    apply_pending_migrations()
    db.execute_sql(f'DELETE FROM "{HISTORY_TABLE}"')  # pretend every migration is new
    with caplog.at_level("WARNING", logger="atb.db.migrate"):
        DatabaseManager(url)
    assert "pending" in caplog.text
    assert history_rows(db) == []
