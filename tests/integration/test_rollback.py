"""`atb db rollback` and `atb db migrate --to`: every migration's rollback() undoes it on real
PostgreSQL and on SQLite, under the same lock and transaction as migrating; the production guard
applies; status, migrate --plan and migrate agree about a migration the code does not know."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import peewee as pw
import pytest
from helpers import INSERT_LIVE_SESSION_SQL, atb_db

from atb.db import connection, migrate
from atb.db.errors import MigrationError
from atb.db.migrate import HISTORY_TABLE, available_migrations, migration_state
from atb.db.settings import parse_url
from atb.testing import execute_sql

MIGRATIONS = available_migrations()
HEAD = MIGRATIONS[-1]
FUTURE = "999_from_a_newer_atb"


def pg_schema(url: str) -> dict[str, list[tuple]]:
    """Every table, column, index, constraint and sequence of the public schema but the history."""

    def rows(sql: str) -> list[tuple]:
        return execute_sql(url, sql)

    return {
        "columns": rows(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            f"AND table_name <> '{HISTORY_TABLE}' ORDER BY 1, 2"
        ),
        "indexes": rows(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' "
            f"AND tablename <> '{HISTORY_TABLE}' ORDER BY 1"
        ),
        "constraints": rows(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            f"WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> '{HISTORY_TABLE}' "
            "ORDER BY 1, 2"
        ),
        "sequences": rows(
            "SELECT sequence_name FROM information_schema.sequences "
            f"WHERE sequence_schema = 'public' AND sequence_name NOT LIKE '{HISTORY_TABLE}%' ORDER BY 1"
        ),
        "types": rows(
            "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace "
            "AND typtype IN ('e', 'd') ORDER BY 1"
        ),
    }


def history(url: str) -> list[str]:
    return [r[0] for r in execute_sql(url, f'SELECT name FROM "{HISTORY_TABLE}" ORDER BY id')]


@pytest.fixture
def migrated_url(make_migrated_pg_database: Callable[..., str]) -> str:
    url = make_migrated_pg_database("atb_rollback")
    execute_sql(url, INSERT_LIVE_SESSION_SQL)
    return url


# --------------------------------------------------------------------------------------------------
# Every migration's rollback(), on PostgreSQL


def test_every_migration_rolls_back_and_reapplies_to_the_same_schema_on_postgres(
    make_pg_database: Callable[..., str],
) -> None:
    url = make_pg_database("atb_rollback_each")
    schemas = [pg_schema(url)]  # schemas[i]: after the first i migrations
    for name in MIGRATIONS:
        assert atb_db("migrate", "--url", url, "--to", name).exit_code == 0
        assert history(url)[-1] == name
        schemas.append(pg_schema(url))
    for count in range(len(MIGRATIONS), 0, -1):
        name = MIGRATIONS[count - 1]
        result = atb_db("rollback", "--url", url, "--yes")
        assert result.exit_code == 0, result.output
        assert f"rolled back {name}" in result.output
        assert pg_schema(url) == schemas[count - 1], f"{name}'s rollback() left changes behind"
        assert history(url) == list(MIGRATIONS[: count - 1])
    assert pg_schema(url) == {key: [] for key in schemas[0]}
    again = atb_db("migrate", "--url", url)
    assert again.exit_code == 0, again.output
    assert pg_schema(url) == schemas[-1]
    assert atb_db("verify", "--url", url).exit_code == 0


def test_rollback_to_zero_then_migrate_gives_a_verified_schema(migrated_url: str) -> None:
    plan = atb_db("rollback", "--url", migrated_url, "--to", "zero", "--plan")
    assert plan.exit_code == 0
    assert [line for line in plan.output.splitlines() if line.startswith("would")] == [
        f"would roll back {name}" for name in reversed(MIGRATIONS)
    ]
    assert history(migrated_url) == list(MIGRATIONS)  # --plan changed nothing
    done = atb_db("rollback", "--url", migrated_url, "--to", "zero", "--yes")
    assert done.exit_code == 0, done.output
    assert "now at an empty schema" in done.output
    assert history(migrated_url) == []
    assert atb_db("status", "--url", migrated_url).exit_code == 1
    assert atb_db("migrate", "--url", migrated_url).exit_code == 0
    assert atb_db("verify", "--url", migrated_url).exit_code == 0


def test_rollback_to_the_head_has_nothing_to_do(migrated_url: str) -> None:
    result = atb_db("rollback", "--url", migrated_url, "--to", HEAD, "--yes")
    assert result.exit_code == 0 and "nothing to roll back" in result.output
    assert history(migrated_url) == list(MIGRATIONS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--to", "000_nope"), "--to '000_nope' is not an applied migration; applied: "),
        (("--steps", str(len(MIGRATIONS) + 1)), f"only {len(MIGRATIONS)} migration(s) are applied"),
        (("--steps", "0"), "Invalid value for '--steps'"),
        (("--to", HEAD, "--steps", "1"), "give --to NAME or --steps N, not both"),
    ],
)
def test_bad_rollback_targets_are_clear_errors_that_change_nothing(
    args: tuple[str, ...], message: str, migrated_url: str
) -> None:
    result = atb_db("rollback", "--url", migrated_url, "--yes", *args)
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    assert history(migrated_url) == list(MIGRATIONS)


def test_rollback_asks_first_and_no_answer_changes_nothing(migrated_url: str) -> None:
    result = atb_db("rollback", "--url", migrated_url, input="n\n")
    assert result.exit_code == 1
    assert f"This rolls back {HEAD}" in result.output
    assert "nothing was changed" in result.output
    assert history(migrated_url) == list(MIGRATIONS)


def test_rollback_refuses_a_production_database(migrated_url: str) -> None:
    result = atb_db("rollback", "--url", migrated_url, "--yes", env={"ATB_ENV": "production"})
    assert result.exit_code == 1
    assert "refusing to roll back migrations of" in result.output
    assert "--allow-production" in result.output
    assert history(migrated_url) == list(MIGRATIONS)


def test_rollback_of_a_production_database_needs_its_name_typed(migrated_url: str) -> None:
    env = {"ATB_ENV": "production"}
    dbname = parse_url(migrated_url).database
    yes = atb_db("rollback", "--url", migrated_url, "--allow-production", "--yes", env=env)
    assert yes.exit_code == 2 and f"--confirm {dbname}" in yes.output
    assert history(migrated_url) == list(MIGRATIONS)
    confirmed = atb_db(
        "rollback", "--url", migrated_url, "--allow-production", "--confirm", dbname, env=env
    )
    assert confirmed.exit_code == 0, confirmed.output
    assert history(migrated_url) == list(MIGRATIONS[:-1])


def test_rollback_waits_for_the_migration_lock(migrated_url: str) -> None:
    import psycopg2

    holder = psycopg2.connect(migrated_url)
    try:
        with holder.cursor() as cur:
            cur.execute("BEGIN; SELECT pg_advisory_xact_lock(%s)", (migrate.ADVISORY_LOCK_KEY,))
            result = atb_db("rollback", "--url", migrated_url, "--yes", "--lock-wait", "0.5")
        assert result.exit_code == 1
        assert "migration lock" in result.output
        assert history(migrated_url) == list(MIGRATIONS)
    finally:
        holder.rollback()
        holder.close()


def test_a_failing_rollback_changes_nothing(migrated_url: str, tmp_path, monkeypatch) -> None:
    """Two steps, the older one fails: the newer one's undo is rolled back with it."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name in MIGRATIONS:
        (folder / f"{name}.py").write_text((migrate.migrations_dir() / f"{name}.py").read_text())
    (folder / "900_extra.py").write_text(
        "def migrate(migrator, database, *, fake=False):\n"
        "    migrator.sql('CREATE TABLE extra (id int)')\n\n"
        "def rollback(migrator, database, *, fake=False):\n"
        "    migrator.sql('DROP TABLE extra')\n"
    )
    (folder / "901_broken_rollback.py").write_text(
        "def migrate(migrator, database, *, fake=False):\n"
        "    migrator.sql('CREATE TABLE extra2 (id int)')\n\n"
        "def rollback(migrator, database, *, fake=False):\n"
        "    migrator.sql('DROP TABLE extra2')\n"
        "    migrator.sql('DROP TABLE no_such_table')\n"
    )
    env = {"ATB_MIGRATIONS_DIR": str(folder)}
    assert atb_db("migrate", "--url", migrated_url, env=env).exit_code == 0
    result = atb_db("rollback", "--url", migrated_url, "--steps", "2", "--yes", env=env)
    assert result.exit_code == 1
    assert "rollback of" in result.output and "nothing was rolled back" in result.output
    assert history(migrated_url)[-2:] == ["900_extra", "901_broken_rollback"]
    assert execute_sql(migrated_url, "SELECT to_regclass('extra2') IS NOT NULL")[0][0]


# --------------------------------------------------------------------------------------------------
# migrate --to


def test_migrate_to_stops_there_and_plan_agrees(make_pg_database: Callable[..., str]) -> None:
    url = make_pg_database("atb_migrate_to")
    first = MIGRATIONS[0]
    plan = atb_db("migrate", "--url", url, "--to", first, "--plan")
    assert plan.exit_code == 0 and f"would apply {first}" in plan.output
    assert execute_sql(url, f"SELECT to_regclass('{HISTORY_TABLE}') IS NULL")[0][0]
    result = atb_db("migrate", "--url", url, "--to", first)
    assert result.exit_code == 0 and f"applied {first}" in result.output
    assert history(url) == [first]
    again = atb_db("migrate", "--url", url, "--to", first)
    assert again.exit_code == 0 and "is already applied" in again.output


def test_migrate_to_an_unknown_name_lists_the_known_ones(migrated_url: str) -> None:
    result = atb_db("migrate", "--url", migrated_url, "--to", "002_nope")
    assert result.exit_code == 1
    assert (
        "--to '002_nope' is not a migration of this version; known: " + ", ".join(MIGRATIONS)
        in result.output
    )


# --------------------------------------------------------------------------------------------------
# A database migrated by a newer atb


@pytest.mark.parametrize(
    "args", [("status",), ("migrate", "--plan"), ("migrate",), ("rollback", "--plan")], ids=" ".join
)
def test_status_plan_migrate_and_rollback_agree_about_an_unknown_migration(
    args: tuple[str, ...], migrated_url: str
) -> None:
    execute_sql(
        migrated_url,
        f"INSERT INTO \"{HISTORY_TABLE}\" (name, migrated_at) VALUES ('{FUTURE}', now())",
    )
    result = atb_db(*args, "--url", migrated_url)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: the database has 1 migration(s) this version of atb does not know: {FUTURE} "
        "(a newer atb migrated it); upgrade atb, nothing was changed"
    ]
    assert history(migrated_url)[-1] == FUTURE


# --------------------------------------------------------------------------------------------------
# SQLite: the same rollbacks, foreign keys off around them and on again after


def sqlite_schema(db: pw.SqliteDatabase) -> list[tuple]:
    return db.execute_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        f"WHERE name NOT LIKE 'sqlite_%' AND tbl_name <> '{HISTORY_TABLE}' ORDER BY 1, 2"
    ).fetchall()


@pytest.fixture
def empty_sqlite():
    db = pw.SqliteDatabase(
        f"file:rollback_{uuid.uuid4().hex}?mode=memory&cache=shared",
        uri=True,
        pragmas={"foreign_keys": 1},
    )
    connection.bind(db)
    db.connect()
    yield db
    db.close()
    connection.disconnect()


def test_every_migration_rolls_back_and_reapplies_on_sqlite(empty_sqlite) -> None:
    db = empty_sqlite
    schemas = [sqlite_schema(db)]
    for name in MIGRATIONS:
        assert migrate.apply_pending_migrations(db=db, to=name) == [name]
        schemas.append(sqlite_schema(db))
    db.execute_sql(INSERT_LIVE_SESSION_SQL.replace("now()", "CURRENT_TIMESTAMP"))
    for count in range(len(MIGRATIONS), 0, -1):
        assert migrate.rollback_migrations(db=db) == [MIGRATIONS[count - 1]]
        assert sqlite_schema(db) == schemas[count - 1]
        assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert migration_state(db).applied == ()
    assert migrate.apply_pending_migrations(db=db) == list(MIGRATIONS)
    assert sqlite_schema(db) == schemas[-1]


def test_rollback_plan_rules() -> None:
    state = migrate.MigrationState(applied=("001_a", "002_b"), available=("001_a", "002_b"))
    assert migrate.rollback_plan(state) == ("002_b",)
    assert migrate.rollback_plan(state, steps=2) == ("002_b", "001_a")
    assert migrate.rollback_plan(state, to="001_a") == ("002_b",)
    assert migrate.rollback_plan(state, to="zero") == ("002_b", "001_a")
    empty = migrate.MigrationState(applied=(), available=("001_a",))
    assert migrate.rollback_plan(empty) == ()
    with pytest.raises(MigrationError, match="not both"):
        migrate.rollback_plan(state, to="001_a", steps=1)
