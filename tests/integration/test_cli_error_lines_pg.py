"""Failures against a real database end in one `Error:` line naming what to do, never a traceback.

Covers a failing migration (peewee-migrate's own traceback log), an unwritable backup path, a
closed stdout, prompts without a terminal, and reset-railway's exact `--confirm`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import INSERT_LIVE_SESSION_SQL, atb_db, atb_subprocess

from atb.db import migrate
from atb.db.settings import parse_url
from atb.testing import execute_sql

ROOT = Path(__file__).resolve().parents[2]


def only_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


@pytest.fixture
def migrated_url(make_migrated_pg_database: Callable[..., str]) -> str:
    url = make_migrated_pg_database("atb_cli_errors")
    execute_sql(url, INSERT_LIVE_SESSION_SQL)
    return url


def test_a_failing_migration_is_one_error_line(migrated_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.migrations_dir(), folder)
    (folder / "002_boom.py").write_text(
        "def migrate(migrator, database, *, fake=False):\n"
        "    migrator.sql('SELECT 1/0')\n\n\n"
        "def rollback(migrator, database, *, fake=False):\n"
        "    pass\n"
    )
    result = atb_subprocess(
        "db", "migrate", "--url", migrated_url, env={"ATB_MIGRATIONS_DIR": str(folder)}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "division by zero" in only_error_line(result.stderr)


def test_an_unwritable_backup_path_is_a_clear_message(migrated_url: str) -> None:
    result = atb_subprocess("db", "backup", "--url", migrated_url, "--output", "/proc/x.dump")
    assert result.returncode == 1, result.stdout + result.stderr
    line = only_error_line(result.stderr)
    assert "cannot write the backup to /proc/x.dump" in line
    assert "FileNotFoundError" not in line and "Traceback" not in result.stderr


def test_demo_session_into_a_closed_pipe_is_quiet(migrated_url: str) -> None:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo_session.py"), "--url", migrated_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # like `| head` that already exited
    _, stderr = process.communicate(timeout=120)
    assert b"BrokenPipeError" not in stderr and b"Traceback" not in stderr, stderr.decode()


def test_nuke_without_a_terminal_names_the_flag(migrated_url: str) -> None:
    dbname = parse_url(migrated_url).database
    result = atb_db("nuke", "--url", migrated_url, input="")
    assert result.exit_code == 1, result.output
    assert "Aborted!" not in result.output
    assert f"--confirm {dbname}" in result.output and "Error: " in result.output
    assert execute_sql(migrated_url, "SELECT count(*) FROM trading_sessions")[0][0] == 1


@pytest.mark.parametrize("answer", ["", "n\n"], ids=["no-terminal", "refused"])
def test_restore_not_confirmed_names_the_flag(
    migrated_url: str, tmp_path: Path, answer: str
) -> None:
    backup = tmp_path / "x.dump"
    backup.write_bytes(b"PGDMP")
    result = atb_db("restore", str(backup), "--url", migrated_url, input=answer)
    assert result.exit_code == 1, result.output
    assert "Aborted!" not in result.output
    assert "--yes" in result.output and "nothing was changed" in result.output


def _reset_staging(url: str, tmp_path: Path, *flags: str):
    """`atb db reset-railway staging` on `url` inside Railway environment 'staging', no terminal."""
    return atb_db(
        "reset-railway", "staging", "--url", url, "--backup-dir", str(tmp_path), *flags,
        env={"RAILWAY_ENVIRONMENT_NAME": "staging"}, input="",
    )  # fmt: skip


def _sessions(url: str) -> int:
    return execute_sql(url, "SELECT count(*) FROM trading_sessions")[0][0]


def test_reset_railway_confirm_must_match_exactly(migrated_url: str, tmp_path: Path) -> None:
    result = _reset_staging(migrated_url, tmp_path, "--confirm", "Staging")
    assert result.exit_code == 2, result.output
    assert _sessions(migrated_url) == 1


def test_reset_railway_confirm_replaces_the_prompt(migrated_url: str, tmp_path: Path) -> None:
    result = _reset_staging(migrated_url, tmp_path, "--confirm", "staging")
    assert result.exit_code == 0, result.output
    assert _sessions(migrated_url) == 0


def test_reset_railway_without_a_terminal_names_the_flag(migrated_url: str, tmp_path: Path) -> None:
    result = _reset_staging(migrated_url, tmp_path)
    assert result.exit_code == 1, result.output
    assert "Aborted!" not in result.output and "--confirm staging" in result.output
    assert _sessions(migrated_url) == 1
