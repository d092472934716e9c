"""`atb db verify` against a real PostgreSQL: healthy, damaged, unmigrated, unreachable.

Driven through click's CliRunner and, for the exit-code contract, as a real subprocess.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from helpers import atb_db, atb_subprocess

from atb.db import connection
from atb.db.migrate import available_migrations
from atb.testing import execute_sql, settings_for_tests, url_with_database


@pytest.fixture
def migrated_url(make_migrated_pg_database: Callable[..., str]) -> str:
    return make_migrated_pg_database("atb_cli_verify")


def verify(*args: str) -> Result:
    """`atb db verify *args`."""
    return atb_db("verify", *args)


def test_a_healthy_schema_verifies_with_exit_0(migrated_url: str) -> None:
    result = verify("--url", migrated_url)
    assert result.exit_code == 0, result.output
    assert "ok: the database matches the models" in result.output
    assert "migrations: at head" in result.output
    assert "tables: 23 present" in result.output


def test_a_healthy_schema_verifies_as_a_subprocess(migrated_url: str) -> None:
    proc = atb_subprocess("db", "verify", "--url", migrated_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: the database matches the models" in proc.stdout


def test_a_damaged_schema_exits_1_naming_each_problem(migrated_url: str) -> None:
    execute_sql(
        migrated_url,
        "ALTER TABLE trades DROP COLUMN exit_reason",
        "ALTER TABLE positions ALTER COLUMN size TYPE text",
        "DROP TABLE market_sessions",
        "ALTER TABLE orders ALTER COLUMN symbol DROP NOT NULL",
        "ALTER TABLE orders DROP CONSTRAINT orders_status_check",
        "ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('OPEN', 'X'))",
        "ALTER TABLE positions DROP CONSTRAINT positions_side_check",
        "DROP INDEX orders_session_id_status",
        "ALTER TABLE trades DROP CONSTRAINT trades_session_id_fkey",
    )
    result = verify("--url", migrated_url)
    assert result.exit_code == 1
    out = result.output
    assert "trades.exit_reason: column is missing (expected character varying(100))" in out
    assert "positions.size: type expected numeric(18,8), found text" in out
    assert "market_sessions: table is missing" in out
    assert "orders.symbol: expected NOT NULL, found NULL allowed" in out
    assert "orders.status: CHECK expected values {CANCELLED, FAILED, FILLED, OPEN," in out
    assert "found {OPEN, X}" in out
    assert "positions.side: CHECK constraint is missing" in out
    assert "orders(session_id, status): index is missing" in out
    assert "trades.session_id: foreign key is missing" in out
    assert "8 problem(s)" in out
    assert "Traceback" not in out


def test_a_damaged_schema_exits_1_as_a_subprocess(migrated_url: str) -> None:
    execute_sql(migrated_url, "ALTER TABLE trades DROP COLUMN exit_reason")
    proc = atb_subprocess("db", "verify", "--url", migrated_url)
    assert proc.returncode == 1
    assert "trades.exit_reason: column is missing" in proc.stdout


def test_json_output_has_stable_keys(migrated_url: str) -> None:
    execute_sql(migrated_url, "ALTER TABLE positions ALTER COLUMN size TYPE text")
    result = verify("--url", migrated_url, "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert set(data) == {
        "ok",
        "problems",
        "server_version",
        "latency_ms",
        "pending_migrations",
        "unknown_migrations",
        "applied_migrations",
        "migrated_now",
        "tables",
        "database",
    }
    assert data["ok"] is False
    assert data["problems"] == [
        {
            "kind": "type",
            "where": "positions.size",
            "message": "type expected numeric(18,8), found text",
            "expected": "numeric(18,8)",
            "found": "text",
        }
    ]
    assert data["tables"]["trades"] == {"rows": 0, "estimated": False}
    assert data["pending_migrations"] == []
    assert data["applied_migrations"] == list(available_migrations())  # what the database holds
    assert data["migrated_now"] == []  # what this run applied
    assert data["latency_ms"] >= 0


def test_json_tells_what_this_run_applied_apart_from_what_is_applied(
    make_pg_database: Callable[..., str],
) -> None:
    empty = make_pg_database("atb_cli_verify")
    first = json.loads(verify("--url", empty, "--json", "--apply-migrations").stdout)
    assert first["ok"] is True
    assert first["migrated_now"] == first["applied_migrations"] == list(available_migrations())
    second = json.loads(verify("--url", empty, "--json", "--apply-migrations").stdout)
    assert second["migrated_now"] == []
    assert second["applied_migrations"] == list(available_migrations())


def test_json_on_an_unreachable_database_is_still_json(pg_server_url: str) -> None:
    missing = url_with_database(pg_server_url, "atb_no_such_database")
    result = verify("--url", missing, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert "atb_no_such_database" in data["error"]
    assert "atb_no_such_database" in data["database"]
    assert result.stderr.startswith("Error: ")


def test_json_on_an_unreachable_server_masks_the_password() -> None:
    result = verify("--url", "postgresql://atb:s3cret-pw@127.0.0.1:1/atb", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data == {
        "ok": False,
        "error": data["error"],
        "database": "postgresql://atb:***@127.0.0.1:1/atb",
    }
    assert "s3cret-pw" not in result.output


def test_row_counts_are_exact_for_small_tables_and_estimated_for_large_ones(
    migrated_url: str,
) -> None:
    from atb.db.admin.verify import verify_database

    execute_sql(
        migrated_url,
        "INSERT INTO market_sessions (name) SELECT 'm' || g FROM generate_series(1, 50) g",
        "ANALYZE market_sessions",
    )
    db = connection.build_database(settings_for_tests(migrated_url))
    try:
        exact = verify_database(db)
        estimated = verify_database(db, large_table_rows=10)
    finally:
        db.close_all()
    assert exact.tables["market_sessions"].rows == 50
    assert exact.tables["market_sessions"].estimated is False
    assert estimated.tables["market_sessions"].estimated is True
    assert estimated.tables["market_sessions"].rows == 50  # reltuples after ANALYZE
    assert estimated.tables["trades"].estimated is False  # never analysed: counted


def test_pending_migrations_are_a_problem_and_nothing_is_modified(
    make_pg_database: Callable[..., str],
) -> None:
    empty = make_pg_database("atb_cli_verify")
    result = verify("--url", empty)
    assert result.exit_code == 1
    assert "migrations: 001_initial is not applied" in result.output
    assert "trades: table is missing" in result.output
    again = verify("--url", empty)  # still nothing there: verify did not migrate
    assert "migrations: 001_initial is not applied" in again.output


def test_apply_migrations_brings_an_empty_database_to_head(
    make_pg_database: Callable[..., str],
) -> None:
    empty = make_pg_database("atb_cli_verify")
    result = verify("--url", empty, "--apply-migrations")
    assert result.exit_code == 0, result.output
    assert "applied 001_initial" in result.output


def test_an_unreachable_database_is_one_line_and_exit_1(pg_server_url: str) -> None:
    missing = url_with_database(pg_server_url, "atb_no_such_database")
    result = verify("--url", missing)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "atb_no_such_database" in result.output
    assert "Traceback" not in result.output
