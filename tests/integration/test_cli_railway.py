"""`atb db setup-railway` / `atb db reset-railway` against a local scratch database standing in
for Railway's (the Railway variables are set in the CliRunner environment)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
from click.testing import CliRunner, Result

from atb.cli import cli
from atb.db import connection
from atb.db.migrate import apply_pending_migrations
from atb.db.settings import parse_url
from atb.testing import settings_for_tests

pytestmark = pytest.mark.postgres

CLEAN_ENV = {
    "DATABASE_URL": None,
    "DATABASE_PUBLIC_URL": None,
    "ATB_ENV": None,
    "RAILWAY_ENVIRONMENT_NAME": None,
    "RAILWAY_ENVIRONMENT": None,
    "RAILWAY_DEPLOYMENT_ID": None,
    "RAILWAY_REPLICA_ID": None,
    "ATB_INSIDE_RAILWAY": None,
}


@pytest.fixture(autouse=True)
def _unbind() -> Iterator[None]:
    yield
    connection.disconnect()


def query(url: str, sql: str) -> list[tuple]:
    parsed = parse_url(url)
    params = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.user,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    conn = psycopg2.connect(**{k: v for k, v in params.items() if v is not None})
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def invoke(*args: str, env: dict, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["db", *args], input=input, env={**CLEAN_ENV, **env})


@pytest.fixture
def railway_url(make_pg_database: Callable[..., str]) -> str:
    """A migrated database with a session, a position and its order."""
    url = make_pg_database("atb_cli_railway")
    db = connection.build_database(settings_for_tests(url))
    try:
        apply_pending_migrations(db=db)
    finally:
        db.close_all()
    query(
        url,
        "INSERT INTO trading_sessions (start_time, mode, initial_balance, strategy_name, symbol,"
        " timeframe) VALUES (now(), 'LIVE', 100, 's', 'BTC', '1h')",
    )
    query(
        url,
        "INSERT INTO positions (symbol, side, entry_price, size, entry_time, strategy_name,"
        " session_id) VALUES ('BTC', 'LONG', 1, 1, now(), 's', 1)",
    )
    return url


def counts(url: str) -> dict[str, int]:
    return {
        table: query(url, f"SELECT count(*) FROM {table}")[0][0]
        for table in ("trading_sessions", "positions", "migratehistory")
    }


# --- setup-railway -----------------------------------------------------------------------------


def test_setup_railway_migrates_verifies_and_prints_next_steps(
    make_pg_database: Callable[..., str],
) -> None:
    url = make_pg_database("atb_cli_railway")
    result = invoke(
        "setup-railway", env={"DATABASE_URL": url, "RAILWAY_ENVIRONMENT_NAME": "production"}
    )
    assert result.exit_code == 0, result.output
    assert "(DATABASE_URL; outside Railway, environment 'production')" in result.output
    assert "applied 001_initial" in result.output
    assert "verify: ok" in result.output
    assert "Pre-deploy Command: atb db setup-railway" in result.output
    again = invoke("setup-railway", "--json", env={"DATABASE_URL": url})
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["ok"] is True and data["applied"] == []
    assert data["verify"]["pending_migrations"] == []


def test_setup_railway_inside_railway_says_the_deploy_may_start(railway_url: str) -> None:
    env = {"DATABASE_URL": railway_url, "RAILWAY_DEPLOYMENT_ID": "d-1"}
    result = invoke("setup-railway", env=env)
    assert result.exit_code == 0, result.output
    assert "inside Railway" in result.output
    assert "this deploy may start" in result.output


def test_setup_railway_without_a_database_url_is_one_clear_error() -> None:
    result = invoke("setup-railway", env={})
    assert result.exit_code == 1
    assert "no Railway database configured" in result.output
    assert "Traceback" not in result.output


def test_setup_railway_exits_1_when_verify_finds_problems(railway_url: str) -> None:
    query(railway_url, "ALTER TABLE trades DROP COLUMN exit_reason")
    result = invoke("setup-railway", env={"DATABASE_URL": railway_url})
    assert result.exit_code == 1
    assert "trades.exit_reason: column is missing" in result.output


# --- reset-railway -----------------------------------------------------------------------------


def test_reset_railway_backs_up_then_empties_the_app_tables(
    railway_url: str, tmp_path: Path
) -> None:
    env = {"RAILWAY_ENVIRONMENT_NAME": "staging"}
    result = invoke(
        "reset-railway",
        "staging",
        "--url",
        railway_url,
        "--backup-dir",
        str(tmp_path),
        "--yes",
        "--confirm",
        "staging",
        env=env,
    )
    assert result.exit_code == 0, result.output
    (backup,) = tmp_path.iterdir()
    assert backup.name.startswith("staging-") and backup.suffix == ".dump"
    assert backup.read_bytes().startswith(b"PGDMP")
    assert counts(railway_url) == {"trading_sessions": 0, "positions": 0, "migratehistory": 1}
    query(
        railway_url,
        "INSERT INTO trading_sessions (start_time, mode, initial_balance, strategy_name, symbol,"
        " timeframe) VALUES (now(), 'LIVE', 1, 's', 'BTC', '1h')",
    )
    assert query(railway_url, "SELECT max(id) FROM trading_sessions") == [(1,)]  # ids restarted


def test_reset_railway_asks_for_the_environment_name(railway_url: str, tmp_path: Path) -> None:
    env = {"RAILWAY_ENVIRONMENT_NAME": "Staging"}
    before = counts(railway_url)
    wrong = invoke(
        "reset-railway",
        "staging",
        "--url",
        railway_url,
        "--backup-dir",
        str(tmp_path),
        env=env,
        input="production\n",
    )
    assert wrong.exit_code == 1
    assert "Type the environment name (staging)" in wrong.output
    assert "nothing was deleted" in wrong.output and "backup kept" in wrong.output
    assert counts(railway_url) == before
    assert len(list(tmp_path.iterdir())) == 1  # the backup was written first and kept
    right = invoke(
        "reset-railway",
        "staging",
        "--url",
        railway_url,
        "--backup-dir",
        str(tmp_path),
        env=env,
        input="staging\n",
    )
    assert right.exit_code == 0, right.output
    assert counts(railway_url)["trading_sessions"] == 0


def test_reset_railway_refuses_another_environment(railway_url: str, tmp_path: Path) -> None:
    before = counts(railway_url)
    result = invoke(
        "reset-railway",
        "production",
        "--url",
        railway_url,
        "--backup-dir",
        str(tmp_path),
        "--yes",
        "--confirm",
        "production",
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
    result = invoke(
        "reset-railway",
        "staging",
        "--url",
        railway_url,
        "--backup-dir",
        str(tmp_path),
        "--yes",
        "--confirm",
        "staging",
        env={},
    )
    assert result.exit_code == 1
    assert "no Railway environment" in result.output
    assert counts(railway_url)["trading_sessions"] == 1


@pytest.mark.parametrize(
    "extra",
    [["--yes"], ["--yes", "--confirm", "production"], ["--confirm", "other"]],
)
def test_reset_railway_flag_misuse_is_a_usage_error(railway_url: str, extra: list[str]) -> None:
    result = invoke(
        "reset-railway",
        "staging",
        "--url",
        railway_url,
        *extra,
        env={"RAILWAY_ENVIRONMENT_NAME": "staging"},
    )
    assert result.exit_code == 2
    assert counts(railway_url)["trading_sessions"] == 1
