"""Pure rules behind the `atb db` operations commands: no database, no subprocess (except --version)."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import peewee as pw
import pytest

from atb.db import fields, migration_ops
from atb.db.admin import Refused, describe_target, is_local_database, refuse_unless_local
from atb.db.admin.backup import backup_format, detect_archive_format
from atb.db.admin.railway import (
    check_environment,
    default_backup_path,
    railway_environment,
    resolve_railway_settings,
)
from atb.db.admin.verify import check_values, expected_column_type, expected_indexes
from atb.db.errors import ConfigurationError
from atb.db.models import ALL_MODELS, Order, Position, StrategyVersion, Trade, TradingSession
from atb.db.pgtools import PgTool, choose_tool, find_tools, parse_tool_version, tool_connection
from atb.db.settings import DatabaseSettings

SECRET = "s3cr3t-pw"


def tool(major: int, where: str = "/x") -> PgTool:
    return PgTool("pg_dump", Path(where) / "pg_dump", major, f"{major}.1")


# --- tool versions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pg_dump (PostgreSQL) 18.6", (18, "18.6")),
        ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", (15, "15.20")),
        ("psql (PostgreSQL) 17devel", (17, "17")),
        ("pg_restore (PostgreSQL) 9.6.24", (9, "9.6")),
        ("something else", None),
        ("", None),
    ],
)
def test_tool_version_is_parsed_from_its_version_line(text, expected) -> None:
    assert parse_tool_version(text) == expected


def test_the_lowest_tool_at_least_as_new_as_the_server_is_chosen() -> None:
    tools = [tool(18, "/wheel"), tool(15, "/usr/bin"), tool(16, "/usr/lib/postgresql/16/bin")]
    assert choose_tool(tools, 15).path == Path("/usr/bin/pg_dump")
    assert choose_tool(tools, 16).major == 16
    assert choose_tool(tools, 17).path == Path("/wheel/pg_dump")


def test_an_older_tool_is_never_chosen_for_a_newer_server() -> None:
    assert choose_tool([tool(15), tool(16)], 18) is None
    assert choose_tool([], 15) is None


def test_the_earlier_candidate_wins_a_tie() -> None:
    assert choose_tool([tool(18, "/first"), tool(18, "/second")], 18).path.parent == Path("/first")


def test_find_tools_reads_versions_from_fake_binaries(tmp_path: Path) -> None:
    for major in (15, 18):
        folder = tmp_path / str(major)
        folder.mkdir()
        script = folder / "pg_dump"
        script.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {major}.2'\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    found = find_tools("pg_dump", [tmp_path / "15", tmp_path / "18", tmp_path / "missing"])
    assert [(t.major, t.version) for t in found] == [(15, "15.2"), (18, "18.2")]


def test_a_missing_tool_names_the_version_needed(tmp_path: Path) -> None:
    from atb.db.pgtools import select_tool

    with pytest.raises(ConfigurationError, match=r"pg_dump 18 or newer is needed"):
        select_tool("pg_dump", 18, [tmp_path])


# --- the tools' connection: password only in the environment -----------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://alice:{SECRET}@db.example.com:6543/prod?sslmode=verify-full",
        f"postgresql://alice@db.example.com/prod?password={SECRET}",
        f"postgres://alice:{SECRET}@127.0.0.1/atb",
    ],
)
def test_tool_connection_keeps_the_password_out_of_argv(url: str) -> None:
    settings = DatabaseSettings.from_env(url, env={})
    conninfo, env = tool_connection(settings)
    assert SECRET not in conninfo
    assert env["PGPASSWORD"] == SECRET
    assert "dbname=" in conninfo and "user='alice'" in conninfo


def test_tool_connection_requires_tls_for_remote_hosts_and_keeps_url_sslmode() -> None:
    remote, _ = tool_connection(
        DatabaseSettings.from_env("postgresql://u@db.example.com/x", env={})
    )
    assert "sslmode='require'" in remote
    strict, _ = tool_connection(
        DatabaseSettings.from_env("postgresql://u@db.example.com/x?sslmode=verify-full", env={})
    )
    assert "sslmode='verify-full'" in strict and "require" not in strict
    local, _ = tool_connection(DatabaseSettings.from_env("postgresql://u@127.0.0.1/x", env={}))
    assert "sslmode" not in local


def test_tool_connection_uses_a_socket_directory_as_host() -> None:
    url = "postgresql://postgres@/atb?host=/work/.atb/run&port=5432"
    conninfo, env = tool_connection(DatabaseSettings.from_env(url, env={}))
    assert "host='/work/.atb/run'" in conninfo and "port='5432'" in conninfo
    assert "PGPASSWORD" not in env


def test_stray_pg_variables_do_not_reach_the_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGDATABASE", "elsewhere")
    monkeypatch.setenv("PGPASSWORD", "leaked")
    _, env = tool_connection(DatabaseSettings.from_env("postgresql://u@127.0.0.1/x", env={}))
    assert not any(key.startswith("PG") for key in env)


def test_conninfo_values_are_quoted() -> None:
    url = "postgresql://o%27brien@127.0.0.1/x"
    conninfo, _ = tool_connection(DatabaseSettings.from_env(url, env={}))
    assert "user='o\\'brien'" in conninfo


# --- backup file names and formats -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.dump", "custom"), ("a.backup", "custom"), ("a.sql.gz", "sql.gz"), ("A.SQL.GZ", "sql.gz")],
)
def test_backup_format_follows_the_file_name(name: str, fmt: str) -> None:
    assert backup_format(Path(name)) == fmt


def test_a_bare_sql_backup_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"\.sql\.gz"):
        backup_format(Path("backup.sql"))


def test_archive_format_is_detected_from_the_magic_bytes(tmp_path: Path) -> None:
    custom, gz, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    custom.write_bytes(b"PGDMP\x01\x10")
    gz.write_bytes(b"\x1f\x8b\x08\x00")
    other.write_bytes(b"hello")
    assert detect_archive_format(custom) == "custom"
    assert detect_archive_format(gz) == "sql.gz"
    with pytest.raises(ConfigurationError, match="neither"):
        detect_archive_format(other)
    with pytest.raises(ConfigurationError, match="does not exist"):
        detect_archive_format(tmp_path / "missing")


# --- local / production guard ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "env", "local"),
    [
        ("postgresql://u@127.0.0.1/x", {}, True),
        ("postgresql://u@localhost:5433/x", {}, True),
        ("postgresql://u@/x?host=/tmp/sock", {}, True),
        ("postgresql://u@db.example.com/x", {}, False),
        ("postgresql://u@postgres.railway.internal/railway", {}, False),
        ("postgresql://u@127.0.0.1/x", {"ATB_ENV": "production"}, False),
        ("postgresql://u@127.0.0.1/x", {"RAILWAY_ENVIRONMENT_NAME": "staging"}, False),
    ],
)
def test_local_means_loopback_or_socket_outside_production(url, env, local) -> None:
    assert is_local_database(url, env) is local


def test_a_remote_database_is_refused_with_a_redacted_url() -> None:
    url = f"postgresql://u:{SECRET}@db.example.com/prod"
    with pytest.raises(Refused) as caught:
        refuse_unless_local(url, {}, allow_production=False, action="nuke")
    assert SECRET not in str(caught.value)
    assert "--allow-production" in str(caught.value)
    assert refuse_unless_local(url, {}, allow_production=True, action="nuke") is False


def test_describe_target_names_database_and_host_only() -> None:
    assert describe_target(f"postgresql://u:{SECRET}@db:5433/prod") == "'prod' on db:5433"


# --- Railway ------------------------------------------------------------------------------------


def test_railway_environment_prefers_the_name_variable() -> None:
    env = {"RAILWAY_ENVIRONMENT": "old", "RAILWAY_ENVIRONMENT_NAME": "staging"}
    assert railway_environment(env) == ("staging", "RAILWAY_ENVIRONMENT_NAME")
    assert railway_environment({"RAILWAY_ENVIRONMENT": "prod"}) == ("prod", "RAILWAY_ENVIRONMENT")
    assert railway_environment({}) == (None, None)


def test_the_named_environment_must_match_case_insensitively() -> None:
    assert check_environment("Production", {"RAILWAY_ENVIRONMENT_NAME": "production"}) == (
        "production"
    )


def test_another_environment_is_refused_naming_what_was_found() -> None:
    with pytest.raises(Refused, match=r"'staging' \(RAILWAY_ENVIRONMENT_NAME\), not 'production'"):
        check_environment("production", {"RAILWAY_ENVIRONMENT_NAME": "staging"})


def test_no_railway_environment_is_refused() -> None:
    with pytest.raises(Refused, match="no Railway environment"):
        check_environment("production", {})


def test_railway_url_outside_railway_is_the_public_one() -> None:
    env = {
        "DATABASE_URL": f"postgresql://u:{SECRET}@postgres.railway.internal:5432/railway",
        "DATABASE_PUBLIC_URL": f"postgresql://u:{SECRET}@tram.proxy.rlwy.net:41234/railway",
        "RAILWAY_ENVIRONMENT_NAME": "production",
    }
    settings = resolve_railway_settings(env)
    assert "proxy.rlwy.net" in settings.url
    assert settings.connect_params()["sslmode"] == "require"
    assert SECRET not in settings.redacted_url


def test_railway_url_inside_railway_is_the_private_one() -> None:
    env = {
        "DATABASE_URL": "postgresql://u:p@postgres.railway.internal:5432/railway",
        "DATABASE_PUBLIC_URL": "postgresql://u:p@tram.proxy.rlwy.net:41234/railway",
        "RAILWAY_ENVIRONMENT_NAME": "production",
        "RAILWAY_DEPLOYMENT_ID": "d-1",
    }
    assert "railway.internal" in resolve_railway_settings(env).url


def test_no_railway_url_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="no Railway database configured"):
        resolve_railway_settings({})


def test_reset_backups_are_named_after_environment_and_utc_time() -> None:
    when = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    assert default_backup_path(Path("backups"), "pr 12/x", when) == Path(
        "backups/pr_12_x-20250304T050607Z.dump"
    )


# --- verify's expectations ----------------------------------------------------------------------


def test_expected_column_types_follow_the_field_types() -> None:
    assert expected_column_type(Trade.entry_price) == "numeric(18,8)"
    assert expected_column_type(Trade.symbol) == "character varying(20)"
    assert expected_column_type(Trade.entry_time) == "timestamp with time zone"
    assert expected_column_type(Trade.strategy_config) == "jsonb"
    assert expected_column_type(Trade.id) == "integer"
    assert expected_column_type(Trade.session) == "integer"
    assert expected_column_type(Position.trailing_stop) == "boolean"
    assert expected_column_type(Position.partial_exits_taken) == "integer"
    assert expected_column_type(Order.status) == "character varying(16)"
    assert expected_column_type(StrategyVersion.strategy) == "character varying(100)"


def test_every_model_column_has_a_known_postgres_type() -> None:
    for model in ALL_MODELS:
        for field in model._meta.sorted_fields:
            pg_type = expected_column_type(field)
            assert pg_type and pg_type == pg_type.lower(), f"{model.__name__}.{field.name}"


def test_expected_indexes_are_compared_by_columns() -> None:
    indexes = expected_indexes(Position)
    assert (("session_id", "status"), False) in indexes
    assert (("symbol",), False) in indexes
    assert not any(cols == ("session_id",) for cols, _ in indexes)  # covered by the composite


def test_check_values_reads_the_literals_of_an_in_check() -> None:
    definition = (
        "CHECK (((side)::text = ANY ((ARRAY['LONG'::character varying, "
        "'O''BRIEN'::character varying])::text[])))"
    )
    assert check_values(definition) == {"LONG", "O'BRIEN"}


def test_verify_refuses_sqlite() -> None:
    from atb.db.admin.verify import verify_database

    with pytest.raises(ConfigurationError, match="PostgreSQL only"):
        verify_database(pw.SqliteDatabase(":memory:"))


# --- code generation ------------------------------------------------------------------------------


def test_generated_enum_fields_record_their_values() -> None:
    from atb.db import codegen

    code = codegen.field_to_code(TradingSession.mode)
    assert (
        code
        == "mode = fields.EnumField(migration_ops.frozen_enum('TradeSource', ('LIVE', 'BACKTEST', 'PAPER')))"
    )
    frozen = migration_ops.frozen_enum("TradeSource", ("LIVE", "PAPER"))
    assert [m.value for m in frozen] == ["LIVE", "PAPER"]
    assert migration_ops.frozen_enum("TradeSource", ("LIVE", "PAPER")) is frozen


def test_generated_foreign_keys_keep_index_false() -> None:
    from atb.db import codegen

    class Child(pw.Model):
        plain = pw.ForeignKeyField(TradingSession, column_name="plain_id")

    assert "index=False" in codegen.field_to_code(Position.session)
    assert "index=False" not in codegen.field_to_code(Child.plain)


def test_money_json_and_time_fields_render_as_ours() -> None:
    from atb.db import codegen

    assert codegen.field_to_code(Trade.pnl) == "pnl = fields.MoneyField()"
    assert codegen.field_to_code(Trade.strategy_config) == (
        "strategy_config = fields.JsonField(null=True)"
    )
    assert codegen.field_to_code(Trade.created_at) == (
        "created_at = fields.UTCDateTimeField(server_now=True, null=True)"
    )


def test_enum_value_changes_are_field_changes() -> None:
    import enum

    from atb.db import codegen

    class M(pw.Model):
        a = fields.EnumField(enum.StrEnum("Color", [("RED", "RED"), ("BLUE", "BLUE")]))
        b = fields.EnumField(enum.StrEnum("Color", [("RED", "RED"), ("TEAL", "TEAL")]))

    assert codegen.compare_fields(M.a, M.b) == {"type": True}
    assert codegen.compare_fields(M.a, M.a) == {}


def test_an_empty_migration_compiles() -> None:
    from atb.db import codegen

    compile(codegen.render_migration("T.", "", ""), "t.py", "exec")
