"""`atb db setup-railway` / `atb db reset-railway` against a local scratch database standing in
for Railway's (the Railway variables are set in the CliRunner environment)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from helpers import INSERT_LIVE_SESSION_SQL, atb_db

from atb.db.migrate import available_migrations
from atb.testing import execute_sql


@pytest.fixture
def railway_url(make_migrated_pg_database: Callable[..., str]) -> str:
    """A migrated database with a session, a position and its order."""
    url = make_migrated_pg_database("atb_cli_railway")
    execute_sql(
        url,
        INSERT_LIVE_SESSION_SQL,
        "INSERT INTO positions (symbol, side, entry_price, size, entry_time, strategy_name,"
        " session_id) VALUES ('BTC', 'LONG', 1, 1, now(), 's', 1)",
    )
    return url


def counts(url: str) -> dict[str, int]:
    return {
        table: execute_sql(url, f"SELECT count(*) FROM {table}")[0][0]
        for table in ("trading_sessions", "positions", "migratehistory")
    }


def reset_railway(
    environment: str,
    url: str,
    *options: str,
    backup_dir: Path | None = None,
    confirm: str | None = None,
    env: dict,
    input: str | None = None,
) -> Result:
    """`atb db reset-railway ENVIRONMENT --url URL [--backup-dir DIR] [--yes --confirm NAME]`."""
    if backup_dir is not None:
        options = (*options, "--backup-dir", str(backup_dir))
    if confirm is not None:
        options = (*options, "--yes", "--confirm", confirm)
    return atb_db("reset-railway", environment, "--url", url, *options, env=env, input=input)


# --- setup-railway -----------------------------------------------------------------------------


def test_setup_railway_migrates_verifies_and_prints_next_steps(
    make_pg_database: Callable[..., str],
) -> None:
    url = make_pg_database("atb_cli_railway")
    result = atb_db(
        "setup-railway", env={"DATABASE_URL": url, "RAILWAY_ENVIRONMENT_NAME": "production"}
    )
    assert result.exit_code == 0, result.output
    assert "(DATABASE_URL; outside Railway, environment 'production')" in result.output
    assert "applied 001_initial" in result.output
    assert "verify: ok" in result.output
    assert "Pre-deploy Command: atb db setup-railway" in result.output
    again = atb_db("setup-railway", "--json", env={"DATABASE_URL": url})
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["ok"] is True and data["applied"] == []
    assert data["verify"]["pending_migrations"] == []


def test_setup_railway_inside_railway_says_the_deploy_may_start(railway_url: str) -> None:
    env = {"DATABASE_URL": railway_url, "RAILWAY_DEPLOYMENT_ID": "d-1"}
    result = atb_db("setup-railway", env=env)
    assert result.exit_code == 0, result.output
    assert "inside Railway" in result.output
    assert "this deploy may start" in result.output


def test_setup_railway_without_a_database_url_is_one_clear_error() -> None:
    result = atb_db("setup-railway", env={})
    assert result.exit_code == 1
    assert "no Railway database configured" in result.output
    assert "Traceback" not in result.output


def test_setup_railway_exits_1_when_verify_finds_problems(railway_url: str) -> None:
    execute_sql(railway_url, "ALTER TABLE trades DROP COLUMN exit_reason")
    result = atb_db("setup-railway", env={"DATABASE_URL": railway_url})
    assert result.exit_code == 1
    assert "trades.exit_reason: column is missing" in result.output


# --- reset-railway -----------------------------------------------------------------------------


def test_reset_railway_backs_up_then_empties_the_app_tables(
    railway_url: str, tmp_path: Path
) -> None:
    env = {"RAILWAY_ENVIRONMENT_NAME": "staging"}
    result = reset_railway("staging", railway_url, backup_dir=tmp_path, confirm="staging", env=env)
    assert result.exit_code == 0, result.output
    (backup,) = tmp_path.glob("*.dump")
    assert backup.name.startswith("staging-") and backup.suffix == ".dump"
    assert backup.read_bytes().startswith(b"PGDMP")
    kept = len(available_migrations())
    assert counts(railway_url) == {"trading_sessions": 0, "positions": 0, "migratehistory": kept}
    execute_sql(railway_url, INSERT_LIVE_SESSION_SQL)
    newest_id = execute_sql(railway_url, "SELECT max(id) FROM trading_sessions")
    assert newest_id == [(1,)]  # ids restarted


def test_reset_railway_asks_for_the_environment_name(railway_url: str, tmp_path: Path) -> None:
    env = {"RAILWAY_ENVIRONMENT_NAME": "Staging"}
    before = counts(railway_url)
    wrong = reset_railway(
        "staging", railway_url, backup_dir=tmp_path, env=env, input="production\n"
    )
    assert wrong.exit_code == 1
    assert "Type the environment name (staging)" in wrong.output
    assert "nothing was deleted" in wrong.output and "backup kept" in wrong.output
    assert counts(railway_url) == before
    assert len(list(tmp_path.glob("*.dump"))) == 1  # the backup was written first and kept
    right = reset_railway("staging", railway_url, backup_dir=tmp_path, env=env, input="staging\n")
    assert right.exit_code == 0, right.output
    assert counts(railway_url)["trading_sessions"] == 0


def test_reset_railway_refuses_another_environment(railway_url: str, tmp_path: Path) -> None:
    before = counts(railway_url)
    result = reset_railway(
        "production",
        railway_url,
        backup_dir=tmp_path,
        confirm="production",
        env={"RAILWAY_ENVIRONMENT_NAME": "staging"},
    )
    assert result.exit_code == 1
    assert "Railway environment 'staging' (RAILWAY_ENVIRONMENT_NAME), not 'production'" in (
        result.output
    )
    assert counts(railway_url) == before
    assert list(tmp_path.iterdir()) == []


def test_reset_railway_refuses_without_a_railway_environment(
    railway_url: str, tmp_path: Path
) -> None:
    result = reset_railway("staging", railway_url, backup_dir=tmp_path, confirm="staging", env={})
    assert result.exit_code == 1
    assert "no Railway environment" in result.output
    assert counts(railway_url)["trading_sessions"] == 1


@pytest.mark.parametrize(
    "extra",
    [["--yes"], ["--yes", "--confirm", "production"], ["--confirm", "other"]],
)
def test_reset_railway_flag_misuse_is_a_usage_error(railway_url: str, extra: list[str]) -> None:
    result = reset_railway(
        "staging", railway_url, *extra, env={"RAILWAY_ENVIRONMENT_NAME": "staging"}
    )
    assert result.exit_code == 2
    assert counts(railway_url)["trading_sessions"] == 1
