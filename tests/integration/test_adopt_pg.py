"""`atb db adopt` and the guard against building over the earlier SQLAlchemy layer's schema, on
real PostgreSQL, with the earlier layer's schema built from tests/fixtures/legacy_schema.sql and
filled by tests/legacy_data.py (10,618 rows in 22 tables plus the alembic_version stamp).

One test per reproduction of issue 9: the guard (status, migrate, verify, DatabaseManager refuse
and write nothing), `--plan` changes nothing, adopt keeps every row exactly (timestamps as UTC
instants with the server's TimeZone in New York, floats as PostgreSQL casts them), a failing adopt
and a killed or interrupted adopt leave the database exactly as it was."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path

import psycopg2
import pytest
from helpers import CLEAN_ENV, atb_db, atb_subprocess
from legacy_data import fingerprint, load_legacy, snapshot

from atb.db import connection
from atb.db.admin.adopt import ADOPTED_COMMENT, ForeignSchemaError
from atb.db.errors import MigrationError
from atb.db.manager import DatabaseManager
from atb.db.migrate import available_migrations
from atb.db.settings import parse_url
from atb.testing import execute_sql, settings_for_tests

pytestmark = pytest.mark.postgres
UTC = dt.UTC
REVISION = "0002_strategy_management"


@pytest.fixture
def legacy_url(make_pg_database: Callable[..., str]) -> str:
    """A database as the earlier layer left it, with the server's TimeZone in New York."""
    url = make_pg_database("atb_legacy")
    load_legacy(url)
    name = parse_url(url).database
    execute_sql(url, f"ALTER DATABASE \"{name}\" SET TimeZone = 'America/New_York'")
    return url


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def _adopt(url: str, *args: str, tmp_path: Path | None = None):
    backup = ["--no-backup"] if tmp_path is None else ["--backup-dir", str(tmp_path)]
    return atb_db("adopt", "--url", url, "--yes", *backup, *args)


# --- 1. never build over a foreign schema -----------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("status", "--json"),
        ("migrate",),
        ("migrate", "--plan"),
        ("migrate", "--fake"),
        ("verify",),
        ("verify", "--apply-migrations"),
    ],
)
def test_commands_refuse_a_legacy_database_and_write_nothing(legacy_url, command) -> None:
    before = fingerprint(legacy_url)

    result = atb_db(*command, "--url", legacy_url)

    assert result.exit_code == 1, result.output
    errors = _error_lines(result.output)
    assert len(errors) == 1, result.output
    assert "earlier SQLAlchemy layer's schema" in errors[0]
    assert f"Alembic revision {REVISION}" in errors[0]
    assert "atb db adopt" in errors[0]
    assert "Traceback" not in result.output
    assert fingerprint(legacy_url) == before
    assert "migratehistory" not in before and "migratehistory" not in fingerprint(legacy_url)


def test_database_manager_refuses_a_legacy_database_and_writes_nothing(legacy_url) -> None:
    before = fingerprint(legacy_url)
    for apply in (None, True):
        with pytest.raises(ForeignSchemaError, match="atb db adopt") as caught:
            DatabaseManager(legacy_url, apply_migrations=apply)
        assert REVISION in str(caught.value)
        connection.disconnect()
    assert fingerprint(legacy_url) == before


def test_atb_tables_without_history_or_alembic_are_refused(make_pg_database) -> None:
    url = make_pg_database("atb_legacy_plain")
    load_legacy(url)
    execute_sql(url, "DROP TABLE alembic_version")
    result = atb_db("migrate", "--url", url)
    assert result.exit_code == 1
    assert "22 of atb's tables" in result.output and "atb db adopt" in result.output


def test_a_database_migrated_over_by_mistake_is_refused_and_adoptable(legacy_url) -> None:
    """What the earlier `atb db migrate` did (peewee-migrate's Router run directly, as before the
    guard): CREATE TABLE IF NOT EXISTS skipped every table, atb's indexes were added beside the
    earlier layer's, 001 was recorded. The Alembic stamp still gives it away; adopt repairs it."""
    from atb.db.migrate import make_router

    db = connection.build_database(settings_for_tests(legacy_url))
    try:
        with db.connection_context():
            assert make_router(db).run("001_initial") == ["001_initial"]
    finally:
        db.close_all()
    before = snapshot(legacy_url)
    result = atb_db("verify", "--url", legacy_url)
    assert result.exit_code == 1
    assert "recorded over it without converting it" in result.output

    assert _adopt(legacy_url).exit_code == 0
    assert atb_db("verify", "--url", legacy_url).exit_code == 0
    assert snapshot(legacy_url) == before
    duplicates = execute_sql(
        legacy_url,
        "SELECT count(*) FROM (SELECT indrelid, indkey::text, indisunique FROM pg_index "
        "JOIN pg_class c ON c.oid = indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
    )
    assert duplicates == [(0,)]


def test_an_atb_database_is_not_foreign(make_migrated_pg_database) -> None:
    url = make_migrated_pg_database("atb_native")
    assert atb_db("status", "--url", url).exit_code == 0
    result = atb_db("adopt", "--url", url, "--plan")
    assert result.exit_code == 1
    assert "nothing to adopt" in result.output


# --- 2. --plan changes nothing ----------------------------------------------------------------


def test_plan_lists_every_change_and_changes_nothing(legacy_url) -> None:
    before = fingerprint(legacy_url)
    started = time.perf_counter()

    result = atb_db("adopt", "--plan", "--url", legacy_url)

    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Alembic revision {REVISION}" in out
    assert "account_balances.total_balance: type double precision -> numeric(18,8)" in out
    assert "trades.exit_time: type timestamp without time zone -> timestamp with time zone" in out
    assert "orders.average_fill_price: column added: numeric(18,8)" in out
    assert "orders.status: 357 row(s) 'EXPIRED' -> 'CANCELLED' (known spelling)" in out
    assert "CHECK constraints added" in out and "trades.side: CHECK" in out
    assert "index ix_account_history_timestamp dropped (duplicates atb's)" in out
    assert "renamed trades_symbol" in out
    assert "ON DELETE CASCADE" in out
    assert "server default CURRENT_TIMESTAMP" in out
    assert "alembic_version: kept" in out
    assert "plan only, nothing was changed" in out
    assert elapsed < 5
    assert fingerprint(legacy_url) == before

    data = json.loads(atb_db("adopt", "--plan", "--json", "--url", legacy_url).output)
    assert data["ok"] is True and data["alembic_revision"] == REVISION
    assert {c["kind"] for c in data["changes"]} >= {"type", "check", "index_drop", "foreign_key"}
    assert fingerprint(legacy_url) == before


# --- 3. adopt keeps every row -----------------------------------------------------------------


def test_adopt_keeps_every_row_and_reaches_head(legacy_url, tmp_path: Path) -> None:
    before = snapshot(legacy_url)
    assert sum(len(rows) for rows in before.values()) == 10_618

    result = _adopt(legacy_url, tmp_path=tmp_path)

    assert result.exit_code == 0, result.output
    assert "backup written:" in result.output and "verify: ok" in result.output
    backups = sorted(tmp_path.glob("*-before-adopt-*.dump"))
    assert len(backups) == 1 and backups[0].with_name(backups[0].name + ".sha256").exists()
    after = snapshot(legacy_url)
    assert after.keys() == before.keys()
    for table in before:
        assert len(after[table]) == len(before[table]), table
        assert after[table] == before[table], table
    # spot checks of the declared conversions
    balances = execute_sql(
        legacy_url, "SELECT total_balance FROM account_balances ORDER BY id LIMIT 5"
    )
    assert [row[0] for row in balances] == [
        D("1E-8") * 0,
        D("12345.67890123"),
        D("-0.30000000"),
        D("9999999999.99999000"),
        D("0.30000000"),
    ]
    (first_exit,) = execute_sql(
        legacy_url, "SET TimeZone = 'UTC'", "SELECT exit_time::text FROM trades WHERE id = 1"
    )[0]
    assert first_exit == "2025-03-01 03:07:00+00"

    status = atb_db("status", "--url", legacy_url)
    assert status.exit_code == 0 and "schema is at head" in status.output
    verify = atb_db("verify", "--url", legacy_url)
    assert verify.exit_code == 0, verify.output
    assert execute_sql(legacy_url, "SELECT version_num FROM alembic_version") == [(REVISION,)]
    assert execute_sql(legacy_url, "SELECT obj_description('alembic_version'::regclass)") == [
        (ADOPTED_COMMENT,)
    ]
    history = execute_sql(legacy_url, "SELECT name FROM migratehistory ORDER BY id")
    assert [name for (name,) in history] == list(available_migrations())


def test_database_manager_works_on_the_adopted_database(legacy_url) -> None:
    assert _adopt(legacy_url).exit_code == 0
    manager = DatabaseManager(legacy_url)
    try:
        active = manager.get_active_positions()
        assert active and all(p["status"] == "OPEN" for p in active)
        assert all(p["entry_time"].tzinfo is not None for p in active)
        recent = manager.get_recent_trades(limit=5)
        assert recent and all(t["exit_time"].utcoffset() == dt.timedelta(0) for t in recent)

        sid = manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "paper", "1000")
        pid = manager.log_position(
            "BTCUSDT", "long", entry_price="64000.5", size="0.1", strategy_name="ml_basic"
        )
        assert any(p["id"] == pid for p in manager.get_active_positions(session_id=sid))
        exit_time = dt.datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
        trade_id = manager.log_trade(
            "BTCUSDT", "long", "64000", "65000", "0.1", dt.datetime(2025, 7, 1, 9, tzinfo=UTC),
            exit_time, "100", "take_profit", "ml_basic",
        )  # fmt: skip
        stored = next(t for t in manager.get_recent_trades(session_id=sid) if t["id"] == trade_id)
        assert stored["exit_time"] == exit_time
        assert stored["exit_time"].utcoffset() == dt.timedelta(0)
        (text,) = execute_sql(
            legacy_url, "SET TimeZone = 'UTC'",
            f"SELECT exit_time::text FROM trades WHERE id = {trade_id}",
        )[0]  # fmt: skip
        assert text == "2025-07-01 12:00:00+00"
        manager.close_position(pid, exit_price="65010")
        stamps = execute_sql(
            legacy_url,
            f"SELECT created_at IS NOT NULL, updated_at IS NOT NULL FROM trades WHERE id = {trade_id}"
            f" UNION ALL SELECT created_at IS NOT NULL, updated_at IS NOT NULL FROM positions "
            f"WHERE id = {pid}",
        )
        assert stamps == [(True, True), (True, True)]
        # new ids continue after the legacy rows
        assert trade_id > 3000 and pid > 1500
        manager.end_trading_session()
    finally:
        connection.disconnect()


# --- 4. a failing adopt leaves the database exactly as it was ---------------------------------


def test_an_unmapped_enum_value_stops_adopt_and_map_fixes_it(legacy_url) -> None:
    execute_sql(
        legacy_url,
        "UPDATE orders SET status = 'SUBMITTED' WHERE id IN (1, 2, 3)",
        "UPDATE orders SET status = 'WEIRD' WHERE id = 4",
    )
    before = fingerprint(legacy_url)

    plan = atb_db("adopt", "--plan", "--url", legacy_url)
    assert plan.exit_code == 1
    assert (
        "orders.status: 4 row(s) hold 2 value(s) atb does not allow: 'SUBMITTED' (3), "
        "'WEIRD' (1); allowed: CANCELLED, FAILED, FILLED, OPEN, PARTIALLY_FILLED, PENDING; "
        "map them with --map orders.status:SUBMITTED=<ALLOWED VALUE>"
    ) in plan.output
    result = _adopt(legacy_url)
    assert result.exit_code == 1
    assert "nothing was changed" in _error_lines(result.output)[0]
    assert fingerprint(legacy_url) == before

    bad_map = atb_db("adopt", "--plan", "--url", legacy_url, "--map", "orders.status:WEIRD=NOPE")
    assert bad_map.exit_code == 2 and "'NOPE' is not allowed" in bad_map.output

    mapped = _adopt(
        legacy_url, "--map", "orders.status:SUBMITTED=PENDING", "--map",
        "orders.status:WEIRD=FAILED",
    )  # fmt: skip
    assert mapped.exit_code == 0, mapped.output
    assert execute_sql(legacy_url, "SELECT status FROM orders WHERE id <= 4 ORDER BY id") == [
        ("PENDING",), ("PENDING",), ("PENDING",), ("FAILED",),
    ]  # fmt: skip


def test_a_balance_too_big_for_numeric_stops_adopt(legacy_url) -> None:
    execute_sql(
        legacy_url,
        "UPDATE account_balances SET total_balance = 1e12 WHERE id = 7",
        "UPDATE account_balances SET reserved_balance = 'NaN' WHERE id = 8",
    )
    before = fingerprint(legacy_url)
    result = _adopt(legacy_url)
    assert result.exit_code == 1
    assert "account_balances.total_balance: 1 value(s) do not fit numeric(18,8)" in result.output
    assert "1000000000000" in result.output
    assert "account_balances.reserved_balance: 1 value(s) do not fit" in result.output
    assert fingerprint(legacy_url) == before


def test_a_view_on_a_converted_column_is_a_problem(legacy_url) -> None:
    execute_sql(legacy_url, "CREATE VIEW last_exits AS SELECT id, exit_time FROM trades")
    before = fingerprint(legacy_url)
    result = _adopt(legacy_url)
    assert result.exit_code == 1
    assert "trades.exit_time: used by view(s) last_exits" in result.output
    assert fingerprint(legacy_url) == before


def test_a_failure_midway_rolls_back_everything(legacy_url) -> None:
    """A CHECK of the user's rejects what adopt's rewrite of orders.status produces ('filled'
    becomes 'FILLED'), after the foreign keys and duplicate indexes of every table were dropped
    and the tables before orders were rewritten."""
    execute_sql(
        legacy_url,
        "UPDATE orders SET filled_at = created_at WHERE status = 'FILLED'",
        "UPDATE orders SET filled_at = NULL WHERE status = 'filled'",
        "ALTER TABLE orders ADD CONSTRAINT filled_orders_have_a_time "
        "CHECK (status <> 'FILLED' OR filled_at IS NOT NULL)",
    )
    before = fingerprint(legacy_url)
    result = _adopt(legacy_url)
    assert result.exit_code == 1
    (error,) = _error_lines(result.output)
    assert "adopt failed, nothing was changed" in error
    assert "filled_orders_have_a_time" in error
    assert fingerprint(legacy_url) == before
    namespaces = execute_sql(legacy_url, "SELECT nspname FROM pg_namespace")
    assert ("atb_adopt_target",) not in namespaces


def test_rows_a_new_foreign_key_would_reject_are_a_problem(legacy_url) -> None:
    execute_sql(
        legacy_url,
        "ALTER TABLE trades DROP CONSTRAINT trades_position_id_fkey",
        "UPDATE trades SET position_id = 999999 WHERE id IN (1, 2)",
    )
    before = fingerprint(legacy_url)
    result = _adopt(legacy_url)
    assert result.exit_code == 1
    assert (
        "trades.position_id: 2 row(s) reference missing positions.id values (e.g. 999999)"
        in result.output
    )
    assert fingerprint(legacy_url) == before


def test_a_known_spelling_longer_than_the_legacy_column_is_rewritten(legacy_url) -> None:
    """'PARTIAL' (an alias atb accepts) becomes PARTIALLY_FILLED, 16 characters, in a column the
    earlier layer made VARCHAR(9): the rewrite happens inside the widening ALTER."""
    execute_sql(legacy_url, "UPDATE orders SET status = 'PARTIAL' WHERE id IN (5, 6)")
    result = _adopt(legacy_url)
    assert result.exit_code == 0, result.output
    assert execute_sql(legacy_url, "SELECT status FROM orders WHERE id IN (5, 6)") == [
        ("PARTIALLY_FILLED",), ("PARTIALLY_FILLED",),
    ]  # fmt: skip


def test_a_database_built_by_the_alembic_chain_is_adopted_too(legacy_url) -> None:
    """The earlier layer's migrations differ from create_all: json (not jsonb) in 0001's tables,
    orphan enum types, a self-referencing FK on strategy_registry.parent_id, and an unnamed
    UNIQUE(strategy_id) with a non-unique index."""
    execute_sql(
        legacy_url,
        "ALTER TABLE trades ALTER COLUMN strategy_config TYPE json",
        "ALTER TABLE system_events ALTER COLUMN details TYPE json",
        "ALTER TABLE account_balances ALTER COLUMN asset_balances TYPE json",
        "CREATE TYPE positionside AS ENUM ('LONG', 'SHORT')",
        "CREATE TYPE orderstatus AS ENUM ('PENDING', 'OPEN', 'FILLED', 'CANCELLED', 'FAILED')",
        "ALTER TABLE strategy_versions DROP CONSTRAINT strategy_versions_strategy_id_fkey",
        "ALTER TABLE strategy_performance DROP CONSTRAINT strategy_performance_strategy_id_fkey",
        "ALTER TABLE strategy_lineage DROP CONSTRAINT strategy_lineage_ancestor_id_fkey",
        "ALTER TABLE strategy_lineage DROP CONSTRAINT strategy_lineage_descendant_id_fkey",
        "ALTER TABLE strategy_registry DROP CONSTRAINT uq_strategy_id",
        "DROP INDEX ix_strategy_registry_strategy_id",
        "ALTER TABLE strategy_registry ADD UNIQUE (strategy_id)",
        "CREATE INDEX ix_strategy_registry_strategy_id ON strategy_registry (strategy_id)",
        "ALTER TABLE strategy_registry ADD CONSTRAINT fk_strategy_registry_parent_id "
        "FOREIGN KEY (parent_id) REFERENCES strategy_registry (strategy_id)",
        "ALTER TABLE strategy_versions ADD FOREIGN KEY (strategy_id) "
        "REFERENCES strategy_registry (strategy_id)",
        "ALTER TABLE strategy_lineage ADD FOREIGN KEY (ancestor_id) "
        "REFERENCES strategy_registry (strategy_id)",
    )
    before = snapshot(legacy_url)
    plan = atb_db("adopt", "--plan", "--url", legacy_url)
    assert plan.exit_code == 0, plan.output
    assert "trades.strategy_config: type json -> jsonb" in plan.output
    assert "fk_strategy_registry_parent_id dropped: atb has no foreign key here" in plan.output
    assert "type positionside: enum type unused by atb, kept untouched" in plan.output

    result = _adopt(legacy_url)

    assert result.exit_code == 0, result.output
    assert snapshot(legacy_url) == before
    assert atb_db("verify", "--url", legacy_url).exit_code == 0


# --- 5. Ctrl-C / kill during adopt --------------------------------------------------------------


def _adopt_process(url: str) -> subprocess.Popen:
    script = Path(sys.executable).with_name("atb")
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    return subprocess.Popen(
        [str(script), "db", "adopt", "--url", url, "--yes", "--no-backup"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_until_blocked(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Until the adopt's ALTER waits for the lock the test holds (midway: others are done)."""
    name = parse_url(url).database
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        rows = execute_sql(
            url,
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' "
            "AND wait_event_type = 'Lock' "
            """AND query LIKE 'ALTER TABLE "public"."portfolio_exposures"%'""",
        )
        if rows[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError("adopt never reached portfolio_exposures")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT", "SIGTERM"])
def test_kill_or_interrupt_during_adopt_leaves_the_database_unchanged(legacy_url, how) -> None:
    before = fingerprint(legacy_url)
    holder = psycopg2.connect(legacy_url)
    try:
        with holder.cursor() as cur:  # the lock adopt will wait for, late in its transaction
            cur.execute("LOCK TABLE portfolio_exposures IN ACCESS SHARE MODE")
        proc = _adopt_process(legacy_url)
        _wait_until_blocked(legacy_url, proc)
        proc.send_signal(getattr(signal, how))
        time.sleep(0.2)
    finally:
        holder.rollback()
        holder.close()
    out, err = proc.communicate(timeout=60)
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == (130 if how == "SIGINT" else 143), (out, err)
        assert "nothing was changed" in err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server notices the dead client and rolls back
        busy = execute_sql(
            legacy_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()",
        )[0][0]
        if not busy:
            break
        time.sleep(0.05)
    assert fingerprint(legacy_url) == before
    assert _adopt(legacy_url).exit_code == 0


# --- 6. guards and composition --------------------------------------------------------------


def test_adopt_refuses_a_remote_database_without_allow_production() -> None:
    url = "postgresql://atb:s3cret-pw@db.example.com:5432/prod"
    result = atb_db("adopt", "--url", url, "--yes", "--no-backup")
    assert result.exit_code == 1
    assert "refusing to adopt" in result.output and "--allow-production" in result.output
    assert "s3cret-pw" not in result.output


def test_adopt_without_a_terminal_needs_yes(legacy_url) -> None:
    before = fingerprint(legacy_url)
    result = atb_db("adopt", "--url", legacy_url, "--no-backup", input="")
    assert result.exit_code == 1
    assert "--yes" in _error_lines(result.output)[0]
    assert fingerprint(legacy_url) == before


def test_later_migrations_are_applied_in_the_same_adopt(legacy_url, tmp_path: Path) -> None:
    from atb.db.migrate import migrations_dir

    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "099_test_index.py").write_text(
        "def migrate(migrator, database, *, fake=False):\n"
        "    migrator.add_index('trades', 'entry_time')\n\n"
        "def rollback(migrator, database, *, fake=False):\n"
        "    migrator.drop_index('trades', 'trades_entry_time')\n",
        encoding="utf-8",
    )
    env = {"ATB_MIGRATIONS_DIR": str(folder)}
    names = available_migrations(folder)
    plan = atb_db("adopt", "--plan", "--url", legacy_url, env=env)
    assert f"then {', '.join(names[1:])} applied" in plan.output
    result = atb_db("adopt", "--url", legacy_url, "--yes", "--no-backup", env=env)
    assert result.exit_code == 0, result.output
    assert f"{', '.join(names)} recorded as applied" in result.output
    status = atb_db("status", "--url", legacy_url, env=env)
    assert status.exit_code == 0 and "[x] 099_test_index" in status.output
    # the later migration's index replaces the earlier layer's copy: no duplicate is left
    indexes = execute_sql(
        legacy_url,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'trades' "
        "AND indexdef LIKE '%(entry_time)'",
    )
    assert indexes == [("trades_entry_time",)]
    assert "index ix_trades_entry_time dropped (duplicates trades_entry_time" in result.output
    history = execute_sql(legacy_url, "SELECT name FROM migratehistory ORDER BY id")
    assert [name for (name,) in history] == list(names)


def test_adopt_api_rolls_back_when_told_to_stop_before_commit(legacy_url) -> None:
    from atb.db.admin.adopt import adopt_database

    before = fingerprint(legacy_url)
    db = connection.build_database(settings_for_tests(legacy_url))

    def stop() -> None:
        raise MigrationError("stopped before commit")

    try:
        with pytest.raises(MigrationError, match="stopped before commit"):
            adopt_database(db, before_commit=stop)
    finally:
        db.close_all()
    assert fingerprint(legacy_url) == before


def test_the_cli_reports_subprocess_errors_as_one_line(legacy_url) -> None:
    result = atb_subprocess("db", "status", "--url", legacy_url)
    assert result.returncode == 1
    assert result.stderr.count("Error:") == 1 and "Traceback" not in result.stderr


# --- 7. the manager test suite on an adopted database ---------------------------------------

MANAGER_SUITES = (
    "tests/integration/test_manager_trading_pg.py",
    "tests/integration/test_manager_ledger_pg.py",
    "tests/integration/test_manager_both_backends.py",
)


def test_the_manager_suites_pass_on_an_adopted_database() -> None:
    root = Path(__file__).resolve().parents[2]
    check = Path(__file__).with_name("adopted_database_check.py").relative_to(root)
    env = {**os.environ, "ATB_TEST_ADOPTED_DATABASE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "postgres",
         str(check), *MANAGER_SUITES],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]


def test_missing_tables_are_created_and_unknown_ones_kept(legacy_url) -> None:
    """An older version of the earlier layer (no strategy_* tables, before its 0002), and one
    with a table and a column atb does not know: the former are built, the latter kept."""
    execute_sql(
        legacy_url,
        "DROP TABLE strategy_lineage, strategy_performance, strategy_versions",
        "ALTER TABLE trades ADD COLUMN notes text",
        "UPDATE trades SET notes = 'kept ' || id WHERE id % 10 = 0",
        "CREATE TABLE exchange_fees (id serial PRIMARY KEY, venue varchar(20), bps float)",
        "INSERT INTO exchange_fees (venue, bps) VALUES ('binance', 7.5), ('kraken', NULL)",
    )
    before = snapshot(legacy_url)
    plan = atb_db("adopt", "--plan", "--url", legacy_url)
    assert plan.exit_code == 0, plan.output
    assert "strategy_versions: table is missing: created as atb defines it (empty)" in plan.output
    assert "trades.notes: column unknown to atb (text), kept untouched" in plan.output
    assert "exchange_fees: table unknown to atb, kept untouched" in plan.output

    result = _adopt(legacy_url)

    assert result.exit_code == 0, result.output
    after = snapshot(legacy_url)
    for table, rows in before.items():
        assert after[table] == rows, table
    assert after["strategy_versions"] == {} and after["strategy_lineage"] == {}
    assert atb_db("verify", "--url", legacy_url).exit_code == 0
    namespaces = execute_sql(legacy_url, "SELECT nspname FROM pg_namespace")
    assert ("atb_adopt_target",) not in namespaces


def test_a_production_database_needs_allow_production_and_its_name(legacy_url) -> None:
    env = {"ATB_ENV": "production"}
    name = parse_url(legacy_url).database
    before = fingerprint(legacy_url)

    refused = atb_db("adopt", "--url", legacy_url, "--yes", "--no-backup", env=env)
    assert refused.exit_code == 1 and "production environment" in refused.output
    yes_only = atb_db(
        "adopt", "--url", legacy_url, "--allow-production", "--yes", "--no-backup", env=env
    )
    assert yes_only.exit_code == 2 and f"--confirm {name}" in yes_only.output
    wrong = atb_db(
        "adopt", "--url", legacy_url, "--allow-production", "--confirm", "other", "--no-backup",
        env=env,
    )  # fmt: skip
    assert wrong.exit_code == 1 and "does not match" in wrong.output
    typed_wrong = atb_db(
        "adopt", "--url", legacy_url, "--allow-production", "--no-backup", env=env, input="nope\n"
    )
    assert typed_wrong.exit_code == 1 and "did not match" in typed_wrong.output
    assert fingerprint(legacy_url) == before

    typed = atb_db(
        "adopt", "--url", legacy_url, "--allow-production", "--no-backup", env=env,
        input=f"{name}\n",
    )  # fmt: skip
    assert typed.exit_code == 0, typed.output


def test_a_schema_with_the_scratch_name_is_never_dropped(legacy_url) -> None:
    execute_sql(
        legacy_url,
        "CREATE SCHEMA atb_adopt_target",
        "CREATE TABLE atb_adopt_target.precious (id int)",
        "INSERT INTO atb_adopt_target.precious VALUES (1)",
    )
    result = _adopt(legacy_url)
    assert result.exit_code == 1
    assert "a schema named atb_adopt_target exists" in result.output
    assert execute_sql(legacy_url, "SELECT id FROM atb_adopt_target.precious") == [(1,)]
