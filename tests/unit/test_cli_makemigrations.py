"""`atb db check` / `atb db makemigrations` on SQLite: the round trip from a model change to a
migration that applies without losing a row, after which `check` is clean again.

The models here are a small stand-in (a parent with an enum column, a child referencing it with
ON DELETE CASCADE), built in two versions; the diff functions take the model list as a parameter
and the CLI is pointed at them and at a temporary migrations folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee as pw
import pytest
from click.testing import CliRunner
from helpers import rows, stand_in_models
from peewee_migrate import Router

from atb.cli import cli
from atb.db.admin import schema_diff
from atb.db.errors import MigrationError, ValidationError
from atb.db.migrate import apply_pending_migrations


@pytest.fixture
def migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    monkeypatch.setenv("ATB_MIGRATIONS_DIR", str(folder))
    return folder


@pytest.fixture
def use_models(monkeypatch: pytest.MonkeyPatch):
    def use(version: int) -> None:
        models = stand_in_models(version)
        monkeypatch.setattr(schema_diff, "_default_models", lambda: models)

    return use


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[pw.SqliteDatabase]:
    db = pw.SqliteDatabase(str(tmp_path / "rt.sqlite"), pragmas={"foreign_keys": 1})
    db.connect()
    yield db
    db.close()


def run(*args: str):
    return CliRunner().invoke(cli, ["db", *args])


def test_check_fails_until_makemigrations_covers_the_models(migrations: Path, use_models) -> None:
    use_models(1)
    assert run("check").exit_code == 1
    made = run("makemigrations", "initial")
    assert made.exit_code == 0, made.output
    assert (migrations / "001_initial.py").is_file()
    clean = run("check")
    assert clean.exit_code == 0, clean.output
    assert "no changes" in clean.output

    use_models(2)
    changed = run("check")
    assert changed.exit_code == 1
    assert "migrator.add_fields" in changed.output and "'parents'" in changed.output
    assert run("makemigrations", "widen_parents").exit_code == 0
    assert (migrations / "002_widen_parents.py").is_file()
    after = run("check")
    assert after.exit_code == 0, after.output


def test_check_json_lists_the_operations(migrations: Path, use_models) -> None:
    import json

    use_models(1)
    result = run("check", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False and data["migrations"] == []
    assert any("create_model" in op for op in data["operations"])


def test_generated_migration_keeps_parent_and_child_rows_on_sqlite(
    migrations: Path, sqlite: pw.SqliteDatabase
) -> None:
    schema_diff.make_migration("initial", models=stand_in_models(1), directory=migrations)
    apply_pending_migrations(db=sqlite, directory=migrations)
    sqlite.execute_sql(
        "INSERT INTO parents (name, color) VALUES ('first', 'GREEN'), ('second', 'RED')"
    )
    sqlite.execute_sql(
        "INSERT INTO children (parent_id, amount, data) VALUES (1, 1.5, '{\"k\": 1}'), (2, 2.5, NULL)"
    )
    before_parents, before_children = rows(sqlite, "parents"), rows(sqlite, "children")

    path = schema_diff.make_migration("second", models=stand_in_models(2), directory=migrations)
    assert "migration_ops.sqlite_foreign_keys_off" in path.read_text()
    assert apply_pending_migrations(db=sqlite, directory=migrations) == ["002_second"]

    assert rows(sqlite, "children") == before_children
    assert [row[:4] for row in rows(sqlite, "parents")] == before_parents
    assert [row[4:] for row in rows(sqlite, "parents")] == [(None, 0), (None, 0)]
    assert sqlite.pragma("foreign_keys") == 1
    assert sqlite.execute_sql("PRAGMA foreign_key_check").fetchall() == []
    assert not schema_diff.diff_models(stand_in_models(2), migrations).has_changes


def test_the_new_schema_is_enforced_on_sqlite(migrations: Path, sqlite: pw.SqliteDatabase) -> None:
    schema_diff.make_migration("initial", models=stand_in_models(1), directory=migrations)
    apply_pending_migrations(db=sqlite, directory=migrations)
    schema_diff.make_migration("second", models=stand_in_models(2), directory=migrations)
    apply_pending_migrations(db=sqlite, directory=migrations)

    sqlite.execute_sql("INSERT INTO parents (name, color) VALUES ('blue', 'BLUE')")
    with pytest.raises(pw.IntegrityError):
        sqlite.execute_sql("INSERT INTO parents (name, color) VALUES ('bad', 'PINK')")
    sqlite.execute_sql("INSERT INTO children (parent_id, amount) VALUES (1, 3)")
    with pytest.raises(pw.IntegrityError):  # (parent_id, amount) is unique now
        sqlite.execute_sql("INSERT INTO children (parent_id, amount) VALUES (1, 3)")
    with pytest.raises(pw.IntegrityError):  # foreign keys are enforced again
        sqlite.execute_sql("INSERT INTO children (parent_id, amount) VALUES (99, 1)")
    sqlite.execute_sql("DELETE FROM parents WHERE id = 1")
    assert sqlite.execute_sql("SELECT count(*) FROM children").fetchone() == (0,)


def test_the_generated_rollback_restores_the_previous_schema_on_sqlite(
    migrations: Path, sqlite: pw.SqliteDatabase
) -> None:
    schema_diff.make_migration("initial", models=stand_in_models(1), directory=migrations)
    schema_diff.make_migration("second", models=stand_in_models(2), directory=migrations)
    apply_pending_migrations(db=sqlite, directory=migrations)
    sqlite.execute_sql("INSERT INTO parents (name, color) VALUES ('kept', 'GREEN')")
    sqlite.execute_sql("INSERT INTO children (parent_id, amount) VALUES (1, 1)")

    Router(sqlite, migrate_dir=migrations).rollback()

    columns = [c.name for c in sqlite.get_columns("parents")]
    assert columns == ["id", "name", "color", "created_at"]
    assert sqlite.execute_sql("SELECT count(*) FROM children").fetchone() == (1,)
    assert sqlite.pragma("foreign_keys") == 1


def test_makemigrations_without_changes_says_so_and_exits_1(migrations: Path, use_models) -> None:
    use_models(1)
    assert run("makemigrations", "initial").exit_code == 0
    again = run("makemigrations", "nothing")
    assert again.exit_code == 1
    assert "no changes" in again.output
    assert sorted(p.name for p in migrations.glob("*.py")) == ["001_initial.py"]


def test_makemigrations_empty_writes_a_migration_that_does_nothing(
    migrations: Path, use_models, sqlite: pw.SqliteDatabase
) -> None:
    use_models(1)
    assert run("makemigrations", "initial").exit_code == 0
    result = run("makemigrations", "by_hand", "--empty")
    assert result.exit_code == 0, result.output
    text = (migrations / "002_by_hand.py").read_text()
    assert "    pass" in text
    assert apply_pending_migrations(db=sqlite, directory=migrations) == [
        "001_initial",
        "002_by_hand",
    ]


@pytest.mark.parametrize("name", ["Bad", "with-dash", "spaces here", ""])
def test_an_invalid_migration_name_is_a_usage_error(migrations: Path, name: str) -> None:
    result = run("makemigrations", name)
    assert result.exit_code == 2
    assert not list(migrations.iterdir())
    with pytest.raises(ValidationError):
        schema_diff.make_migration(name, directory=migrations, empty=True)


def test_a_not_null_column_without_default_is_refused(migrations: Path) -> None:
    schema_diff.make_migration("initial", models=stand_in_models(1), directory=migrations)
    models = stand_in_models(1)
    models[0]._meta.add_field("required", pw.IntegerField())
    with pytest.raises(MigrationError, match=r"parents\.required is NOT NULL without a default"):
        schema_diff.make_migration("bad", models=models, directory=migrations)


def test_an_unreadable_migration_is_one_clear_error(migrations: Path) -> None:
    (migrations / "001_broken.py").write_text(
        "def migrate(migrator, database, fake=False):\n    1/0\n"
    )
    with pytest.raises(MigrationError, match="cannot read migration 001_broken"):
        schema_diff.diff_models(stand_in_models(1), migrations)


def test_the_atb_models_regenerate_into_a_migration_that_matches_them(
    tmp_path: Path, sqlite: pw.SqliteDatabase
) -> None:
    path = schema_diff.make_migration("initial", directory=tmp_path)
    assert not schema_diff.diff_models(directory=tmp_path).has_changes
    assert apply_pending_migrations(db=sqlite, directory=tmp_path) == ["001_initial"]
    assert "pw_pext" not in path.read_text()  # no PostgreSQL-only field classes
