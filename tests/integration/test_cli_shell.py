"""`atb db shell` (psql on the resolved database, the password only through the environment) and
shell completion (`_ATB_COMPLETE=bash_source atb`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import atb_db, atb_subprocess

from atb.cli import db as cli_db
from atb.db.settings import build_url, parse_url

ROOT = Path(__file__).resolve().parents[2]


def with_password(url: str, password: str) -> str:
    parsed = parse_url(url)
    return build_url(parsed.host, parsed.port, parsed.user, password, parsed.database, parsed.query)


def test_shell_runs_psql_on_the_database(pg_database_url: str) -> None:
    result = atb_subprocess(
        "db", "shell", "--url", pg_database_url, "--", "-At", "-c", "SELECT current_database()"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == parse_url(pg_database_url).database
    assert result.stderr.startswith("database: ")


def test_shell_passes_psql_failures_through(pg_database_url: str) -> None:
    result = atb_subprocess("db", "shell", "--url", pg_database_url, "--", "-c", "SELECT 1/0")
    assert result.returncode != 0
    assert "division by zero" in result.stderr


def test_the_password_goes_through_the_environment_only(
    pg_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict = {}

    def fake_exec(path: str, argv: list[str], env: dict[str, str]) -> None:
        seen.update(path=path, argv=argv, env=env)

    monkeypatch.setattr(cli_db, "_exec", fake_exec)
    url = with_password(pg_database_url, "s3cret-pw")
    result = atb_db(
        "shell", "--url", url, "--", "-c", "SELECT 1", env={"PGHOST": "elsewhere", "PGUSER": "x"}
    )
    assert result.exit_code == 0, result.output
    assert Path(seen["path"]).name == "psql"
    assert seen["argv"][0] == seen["path"]
    assert seen["argv"][-2:] == ["-c", "SELECT 1"]
    assert not any("s3cret-pw" in arg for arg in seen["argv"])
    assert seen["env"]["PGPASSWORD"] == "s3cret-pw"
    assert "PGHOST" not in seen["env"] and "PGUSER" not in seen["env"]
    assert "s3cret-pw" not in result.output
    assert "***" in result.output  # the database line is redacted


def test_shell_on_an_unreachable_database_is_one_error_line() -> None:
    result = atb_db("shell", "--url", "postgresql://atb:s3cret-pw@127.0.0.1:1/atb")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "s3cret-pw" not in result.output


def test_bash_completion_script_is_printed() -> None:
    result = atb_subprocess(env={"_ATB_COMPLETE": "bash_source"})
    assert result.returncode == 0
    assert "_atb_completion" in result.stdout and "complete -o" in result.stdout


def test_completion_completes_subcommands() -> None:
    result = atb_subprocess(
        env={"_ATB_COMPLETE": "bash_complete", "COMP_WORDS": "atb db rol", "COMP_CWORD": "2"}
    )
    assert result.returncode == 0
    assert "plain,rollback" in result.stdout.splitlines()


def test_the_readme_documents_completion() -> None:
    readme = (ROOT / "README.md").read_text()
    assert 'eval "$(_ATB_COMPLETE=bash_source atb)"' in readme
    assert "_ATB_COMPLETE=zsh_source atb" in readme
