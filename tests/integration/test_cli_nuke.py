"""`atb db nuke` against a real PostgreSQL: it rebuilds a local schema and refuses anything else."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from helpers import INSERT_LIVE_SESSION_SQL, atb_db

from atb.db.migrate import available_migrations
from atb.db.settings import parse_url
from atb.testing import execute_sql


@pytest.fixture
def cluttered_url(make_migrated_pg_database: Callable[..., str]) -> str:
    """A migrated database with data and every kind of extra object nuke must remove."""
    url = make_migrated_pg_database("atb_cli_nuke")
    execute_sql(
        url,
        INSERT_LIVE_SESSION_SQL,
        "CREATE TABLE scratch_notes (id serial PRIMARY KEY, body text)",
        "CREATE SEQUENCE loose_counter",
        "CREATE TYPE mood AS ENUM ('calm', 'panic')",
        "CREATE TYPE pair AS (a int, b int)",
        "CREATE DOMAIN positive_int AS int CHECK (VALUE > 0)",
        "CREATE FUNCTION add_one(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1'",
        "CREATE PROCEDURE noop() LANGUAGE sql AS 'SELECT 1'",
        "CREATE VIEW live_sessions AS SELECT id FROM trading_sessions WHERE mode = 'LIVE'",
        "CREATE MATERIALIZED VIEW session_count AS SELECT count(*) FROM trading_sessions",
    )
    return url


def objects(url: str) -> set[str]:
    rows = execute_sql(
        url,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S') "
        "UNION ALL SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c') AND t.typrelid = 0 "
        "UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public'",
    )
    return {name for (name,) in rows}


def test_nuke_drops_everything_and_rebuilds_the_schema(cluttered_url: str) -> None:
    result = atb_db("nuke", "--url", cluttered_url, "--yes")
    assert result.exit_code == 0, result.output
    assert "applied 001_initial" in result.output

    left = objects(cluttered_url)
    for gone in (
        "scratch_notes",
        "loose_counter",
        "mood",
        "pair",
        "positive_int",
        "add_one",
        "noop",
        "live_sessions",
        "session_count",
    ):
        assert gone not in left, gone
    assert execute_sql(cluttered_url, "SELECT count(*) FROM trading_sessions") == [(0,)]
    applied = execute_sql(cluttered_url, "SELECT name FROM migratehistory ORDER BY id")
    assert [name for (name,) in applied] == list(available_migrations())
    verified = atb_db("verify", "--url", cluttered_url)
    assert verified.exit_code == 0, verified.output


def test_nuke_json_reports_what_was_dropped(cluttered_url: str) -> None:
    result = atb_db("nuke", "--url", cluttered_url, "--yes", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["applied"] == list(available_migrations())
    assert data["dropped"]["table"] == 25  # 23 models, the history, scratch_notes
    assert data["dropped"]["view"] == 1 and data["dropped"]["materialized view"] == 1
    assert data["dropped"]["type"] == 3 and data["dropped"]["function"] == 4  # 1 + migration 005's 3


def test_nuke_asks_for_the_database_name(cluttered_url: str) -> None:
    name = parse_url(cluttered_url).database
    before = objects(cluttered_url)
    wrong = atb_db("nuke", "--url", cluttered_url, input="atb\n")
    assert wrong.exit_code == 1
    assert f"Type the database name ({name})" in wrong.output
    assert "nothing was changed" in wrong.output
    assert objects(cluttered_url) == before
    right = atb_db("nuke", "--url", cluttered_url, input=f"{name}\n")
    assert right.exit_code == 0, right.output
    assert "scratch_notes" not in objects(cluttered_url)


def test_nuke_refuses_a_remote_production_looking_url() -> None:
    result = atb_db("nuke", "--url", "postgresql://atb:pw@db.prod.example.com:5432/atb", "--yes")
    assert result.exit_code == 1
    assert "refusing to nuke" in result.output and "not on this machine" in result.output
    assert "--allow-production" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "env",
    [{"ATB_ENV": "production"}, {"RAILWAY_ENVIRONMENT_NAME": "production"}],
)
def test_nuke_refuses_a_production_environment_even_on_a_local_url(
    cluttered_url: str, env: dict
) -> None:
    before = objects(cluttered_url)
    result = atb_db("nuke", "--url", cluttered_url, "--yes", env=env)
    assert result.exit_code == 1
    assert "production environment" in result.output
    assert objects(cluttered_url) == before


def test_allow_production_still_needs_the_typed_name(cluttered_url: str) -> None:
    env = {"ATB_ENV": "production"}
    before = objects(cluttered_url)
    with_yes = atb_db("nuke", "--url", cluttered_url, "--allow-production", "--yes", env=env)
    assert with_yes.exit_code == 2
    assert "--confirm" in with_yes.output
    mismatch = atb_db(
        "nuke", "--url", cluttered_url, "--allow-production", "--confirm", "nope", env=env
    )
    assert mismatch.exit_code == 1
    assert objects(cluttered_url) == before
    name = parse_url(cluttered_url).database
    done = atb_db("nuke", "--url", cluttered_url, "--allow-production", "--confirm", name, env=env)
    assert done.exit_code == 0, done.output
