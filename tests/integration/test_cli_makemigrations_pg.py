"""Generated migrations on a real PostgreSQL: they keep rows, re-create CHECKs and defaults, and
leave a schema that `verify` finds identical to the models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import peewee as pw
import pytest
from helpers import rows, stand_in_models
from peewee_migrate import Router

from atb.db import connection
from atb.db.admin import schema_diff
from atb.db.admin.verify import verify_database
from atb.db.migrate import apply_pending_migrations
from atb.testing import settings_for_tests


@pytest.fixture
def pg(make_pg_database: Callable[..., str]) -> Iterator[pw.PostgresqlDatabase]:
    db = connection.build_database(settings_for_tests(make_pg_database("atb_cli_mm")))
    try:
        yield db
    finally:
        db.close_all()


def test_generated_migration_keeps_rows_and_matches_the_models(
    pg: pw.PostgresqlDatabase, tmp_path: Path
) -> None:
    schema_diff.make_migration("initial", models=stand_in_models(1), directory=tmp_path)
    apply_pending_migrations(db=pg, directory=tmp_path)
    pg.execute_sql("INSERT INTO parents (name, color) VALUES ('first', 'GREEN'), ('second', 'RED')")
    pg.execute_sql(
        "INSERT INTO children (parent_id, amount, data) VALUES (1, 1.5, '{\"k\": 1}'), (2, 2.5, NULL)"
    )
    before_parents, before_children = rows(pg, "parents"), rows(pg, "children")

    schema_diff.make_migration("second", models=stand_in_models(2), directory=tmp_path)
    assert apply_pending_migrations(db=pg, directory=tmp_path) == ["002_second"]

    assert rows(pg, "children") == before_children
    assert [row[:4] for row in rows(pg, "parents")] == before_parents
    assert [row[4:] for row in rows(pg, "parents")] == [(None, 0), (None, 0)]
    assert not schema_diff.diff_models(stand_in_models(2), tmp_path).has_changes
    report = verify_database(pg, stand_in_models(2), directory=tmp_path)
    assert report.ok, [str(p) for p in report.problems]


def test_the_new_check_and_defaults_are_enforced_on_postgres(
    pg: pw.PostgresqlDatabase, tmp_path: Path
) -> None:
    schema_diff.make_migration("initial", models=stand_in_models(1), directory=tmp_path)
    schema_diff.make_migration("second", models=stand_in_models(2), directory=tmp_path)
    apply_pending_migrations(db=pg, directory=tmp_path)

    pg.execute_sql("INSERT INTO parents (name) VALUES ('defaults')")
    ((color, created, hits),) = pg.execute_sql(
        "SELECT color, created_at, hits FROM parents"
    ).fetchall()
    assert (color, hits) == ("RED", 0) and created is not None
    pg.execute_sql("INSERT INTO parents (name, color) VALUES ('blue', 'BLUE')")
    with pytest.raises(pw.IntegrityError):
        with pg.atomic():
            pg.execute_sql("INSERT INTO parents (name, color) VALUES ('bad', 'PINK')")
    pg.execute_sql("INSERT INTO children (parent_id, amount) VALUES (1, 3)")
    with pytest.raises(pw.IntegrityError):
        with pg.atomic():
            pg.execute_sql("INSERT INTO children (parent_id, amount) VALUES (1, 3)")


def test_the_generated_rollback_runs_on_postgres(pg: pw.PostgresqlDatabase, tmp_path: Path) -> None:
    schema_diff.make_migration("initial", models=stand_in_models(1), directory=tmp_path)
    schema_diff.make_migration("second", models=stand_in_models(2), directory=tmp_path)
    apply_pending_migrations(db=pg, directory=tmp_path)
    pg.execute_sql("INSERT INTO parents (name, color) VALUES ('kept', 'GREEN')")

    Router(pg, migrate_dir=tmp_path).rollback()

    assert [c.name for c in pg.get_columns("parents")] == ["id", "name", "color", "created_at"]
    report = verify_database(pg, stand_in_models(1), directory=tmp_path)
    assert [str(p) for p in report.problems] == ["migrations: 002_second is not applied"]


def test_the_atb_models_regenerated_from_scratch_verify_clean_on_postgres(
    pg: pw.PostgresqlDatabase, tmp_path: Path
) -> None:
    schema_diff.make_migration("initial", directory=tmp_path)
    apply_pending_migrations(db=pg, directory=tmp_path)
    report = verify_database(pg, directory=tmp_path)
    assert report.ok, [str(p) for p in report.problems]
    indexed = {
        tuple(columns)
        for (columns,) in pg.execute_sql(
            "SELECT ARRAY(SELECT a.attname FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(n, o) "
            "JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.n ORDER BY k.o) "
            "FROM pg_index ix WHERE ix.indrelid = 'positions'::regclass"
        ).fetchall()
    }
    assert ("session_id",) not in indexed  # index=False is kept: no duplicate of the composite
    assert ("session_id", "status") in indexed
