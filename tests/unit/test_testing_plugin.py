"""The atb pytest plugin: PostgreSQL tests are marked from their fixtures, fail (not skip) under
ATB_REQUIRE_PG=1 when no PostgreSQL starts, and SQLite databases are copies of one migrated template."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atb.db import connection, migrate
from atb.db.models import TradingSession
from atb.testing import bind_sqlite

SAMPLE_TESTS = """
def test_uses_postgres(pg_db):
    pass

def test_uses_a_fixture_built_on_postgres(make_migrated_pg_database):
    pass

def test_plain():
    pass
"""


def run_pytest(folder: Path, *args: str, env: dict[str, str | None]) -> subprocess.CompletedProcess:
    (folder / "test_sample.py").write_text(SAMPLE_TESTS)
    environment = {k: v for k, v in os.environ.items() if k not in env}
    environment.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def no_postgres_env(folder: Path, **extra: str | None) -> dict[str, str | None]:
    """No TEST_DATABASE_URL, and an ATB_HOME where no local server can be created."""
    blocker = folder / "not_a_folder"
    blocker.write_text("")
    return {"TEST_DATABASE_URL": None, "ATB_HOME": str(blocker / "home"), **extra}


def test_tests_using_postgres_fixtures_are_marked_postgres(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, "--collect-only", "-m", "postgres", env={})
    assert "test_uses_postgres" in result.stdout
    assert "test_uses_a_fixture_built_on_postgres" in result.stdout
    assert "test_plain" not in result.stdout
    assert "2/3 tests collected (1 deselected)" in result.stdout


def test_without_postgres_the_postgres_tests_skip_by_default(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, env=no_postgres_env(tmp_path, ATB_REQUIRE_PG=None))
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 skipped" in result.stdout


def test_with_atb_require_pg_the_postgres_tests_fail_instead_of_skipping(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, env=no_postgres_env(tmp_path, ATB_REQUIRE_PG="1"))
    assert result.returncode == 1, result.stdout
    assert "skipped" not in result.stdout
    assert "1 passed, 2 errors" in result.stdout
    assert "ATB_REQUIRE_PG=1: PostgreSQL tests may not skip" in result.stdout


def test_the_test_scripts_require_postgres() -> None:
    root = Path(__file__).resolve().parents[2]
    for script in ("scripts/test", ".ci/run"):
        assert "ATB_REQUIRE_PG=1" in (root / script).read_text(), script


def test_each_sqlite_database_is_a_fresh_copy_at_head_without_rerunning_migrations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = bind_sqlite()
    try:
        TradingSession.create(
            start_time="2024-01-01 00:00:00", mode="PAPER", initial_balance=1,
            strategy_name="s", symbol="BTCUSDT", timeframe="1h",
        )  # fmt: skip

        def no_migrations(**kwargs):
            raise AssertionError("the template is migrated once per run, not per database")

        monkeypatch.setattr(migrate, "apply_pending_migrations", no_migrations)
        second = bind_sqlite()
        try:
            assert TradingSession.select().count() == 0
            assert migrate.migration_state(second).pending == ()
            assert second.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        finally:
            second.close()
    finally:
        first.close()
        connection.disconnect()
