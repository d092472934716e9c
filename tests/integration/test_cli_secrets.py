"""No `atb db` command prints the password of a URL that carries one: success and error paths,
stdout and stderr, in-process (CliRunner) and as a subprocess.

A role with a password is created on the test server for the module (trust authentication on the
test servers accepts it either way; what matters is that the URL carries the secret).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import atb_db, atb_subprocess

from atb.db.settings import build_url, parse_url
from atb.testing import create_scratch_database, drop_database, execute_sql

# Unique per run: two test runs sharing a server must not drop each other's role.
ROLE = f"atb_pw_test_{os.getpid()}"
SECRET = "s3cr3t-pw"
# On top of helpers.CLEAN_ENV: the password must come from the URL, nowhere else.
NO_PGPASSWORD = {"PGPASSWORD": None}


def as_role(server_url: str, database: str) -> str:
    """The server's URL (TCP 127.0.0.1 or the embedded server's socket) as the password role."""
    parsed = parse_url(server_url)
    host = parsed.host or "127.0.0.1"
    return build_url(host, parsed.port, ROLE, SECRET, database, parsed.query)


@pytest.fixture(scope="module")
def secret_urls(pg_server_url: str) -> Iterator[dict[str, str]]:
    """URLs with the password: a migrated database, an empty one, and a missing one."""
    execute_sql(pg_server_url, f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{SECRET}'")
    created: list[str] = []
    try:
        for key in ("main", "spare"):
            created.append(create_scratch_database(pg_server_url, f"atb_pw_{key}", owner=ROLE))
        main, spare = (parse_url(url).database for url in created)
        yield {
            "main": as_role(pg_server_url, main),
            "spare": as_role(pg_server_url, spare),
            "missing": as_role(pg_server_url, "atb_pw_no_such_database"),
        }
    finally:
        for url in created:
            drop_database(pg_server_url, url)
        execute_sql(pg_server_url, f"DROP ROLE IF EXISTS {ROLE}")


def run(args: list[str], env: dict | None = None, input: str | None = None) -> tuple[int, str]:
    """`atb db *args`: its exit code and everything it wrote (stdout, stderr, an exception)."""
    result = atb_db(*args, env={**NO_PGPASSWORD, **(env or {})}, input=input)
    text = result.stdout + result.stderr
    if result.exception and not isinstance(result.exception, SystemExit):
        text += repr(result.exception)
    return result.exit_code, text


def assert_secret_never_shown(
    code_and_text: tuple[int, str], expected_code: int | tuple[int, ...]
) -> str:
    code, text = code_and_text
    assert SECRET not in text, text
    assert "Traceback" not in text, text
    expected = expected_code if isinstance(expected_code, tuple) else (expected_code,)
    assert code in expected, text
    return text


def test_migrate_status_verify_never_show_the_password(secret_urls: dict[str, str]) -> None:
    url = secret_urls["main"]
    out = assert_secret_never_shown(run(["migrate", "--url", url]), 0)
    assert f"{ROLE}:***@" in out
    assert_secret_never_shown(run(["migrate", "--plan", "--url", url]), 0)
    assert_secret_never_shown(run(["status", "--url", url]), 0)
    assert_secret_never_shown(run(["status", "--json", "--url", url]), 0)
    assert_secret_never_shown(run(["verify", "--url", url]), 0)
    assert_secret_never_shown(run(["verify", "--json", "--url", url]), 0)
    assert_secret_never_shown(run(["check"], env={"DATABASE_URL": url}), (0, 1))


def test_backup_and_restore_never_show_the_password(
    secret_urls: dict[str, str], tmp_path: Path
) -> None:
    url = secret_urls["main"]
    for name in ("a.dump", "a.sql.gz"):
        target = tmp_path / name
        assert_secret_never_shown(run(["backup", "--url", url, "--output", str(target)]), 0)
        assert_secret_never_shown(
            run(["backup", "--url", url, "--output", str(target), "--json", "--force"]), 0
        )
        assert_secret_never_shown(run(["restore", str(target), "--url", url, "--yes"]), 0)
        assert_secret_never_shown(run(["restore", str(target), "--url", url], input="n\n"), 1)
    # error paths: missing database, occupied target, production guard
    missing = secret_urls["missing"]
    assert_secret_never_shown(
        run(["backup", "--url", missing, "--output", str(tmp_path / "b.dump")]), 1
    )
    assert_secret_never_shown(
        run(["restore", str(tmp_path / "a.dump"), "--url", missing, "--yes"]), 1
    )
    assert_secret_never_shown(
        run(["backup", "--url", url, "--output", str(tmp_path / "a.dump")]), 1
    )
    assert_secret_never_shown(
        run(
            ["restore", str(tmp_path / "a.dump"), "--url", url, "--yes"],
            env={"ATB_ENV": "production"},
        ),
        1,
    )


def test_nuke_never_shows_the_password(secret_urls: dict[str, str]) -> None:
    spare = secret_urls["spare"]
    assert_secret_never_shown(run(["nuke", "--url", spare, "--yes"]), 0)
    assert_secret_never_shown(run(["nuke", "--url", spare, "--json", "--yes"]), 0)
    assert_secret_never_shown(run(["nuke", "--url", spare], input="wrong\n"), 1)
    assert_secret_never_shown(
        run(["nuke", "--url", spare, "--yes"], env={"ATB_ENV": "production"}), 1
    )
    remote = f"postgresql://{ROLE}:{SECRET}@db.example.com:5432/atb"
    text = assert_secret_never_shown(run(["nuke", "--url", remote, "--yes"]), 1)
    assert f"{ROLE}:***@db.example.com" in text
    assert_secret_never_shown(run(["nuke", "--url", secret_urls["missing"], "--yes"]), 1)


def test_railway_commands_never_show_the_password(
    secret_urls: dict[str, str], tmp_path: Path
) -> None:
    spare = secret_urls["spare"]
    railway = {"DATABASE_URL": spare, "RAILWAY_ENVIRONMENT_NAME": "pwtest"}
    assert_secret_never_shown(run(["setup-railway"], env=railway), 0)
    assert_secret_never_shown(run(["setup-railway", "--json"], env=railway), 0)
    public = {"DATABASE_PUBLIC_URL": spare, "RAILWAY_ENVIRONMENT_NAME": "pwtest"}
    assert_secret_never_shown(run(["setup-railway"], env=public), 0)
    assert_secret_never_shown(
        run(["setup-railway"], env={"DATABASE_URL": secret_urls["missing"]}), 1
    )
    reset = ["reset-railway", "pwtest", "--backup-dir", str(tmp_path)]
    assert_secret_never_shown(run([*reset, "--yes", "--confirm", "pwtest"], env=railway), 0)
    assert_secret_never_shown(run(reset, env=railway, input="nope\n"), 1)
    assert_secret_never_shown(
        run(
            [*reset, "--yes", "--confirm", "pwtest"],
            env={**railway, "RAILWAY_ENVIRONMENT_NAME": "x"},
        ),
        1,
    )
    assert_secret_never_shown(
        run([*reset, "--url", secret_urls["missing"], "--yes", "--confirm", "pwtest"], env=railway),
        1,
    )


def test_verify_and_migrate_on_a_missing_database_never_show_the_password(
    secret_urls: dict[str, str],
) -> None:
    missing = secret_urls["missing"]
    text = assert_secret_never_shown(run(["verify", "--url", missing]), 1)
    assert "atb_pw_no_such_database" in text
    assert_secret_never_shown(run(["verify", "--json", "--url", missing]), 1)
    assert_secret_never_shown(run(["migrate", "--url", missing]), 1)
    assert_secret_never_shown(run(["status", "--url", missing]), 1)


def test_subprocess_output_never_shows_the_password(secret_urls: dict[str, str]) -> None:
    for url, code in ((secret_urls["main"], 0), (secret_urls["missing"], 1)):
        proc = atb_subprocess("db", "verify", "--url", url, env=NO_PGPASSWORD)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
