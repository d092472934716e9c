"""Destructive commands judge the server libpq will really reach, not only the URL's host.

The "remote" server is the machine's PostgreSQL at 127.0.0.1:5432, reached through libpq
parameters (hostaddr, host lists, services, PG* variables) behind a URL whose host looks local.
The guard must refuse before connecting; the victim's rows prove nothing was touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from helpers import atb_subprocess

from atb.db.admin import check_server_is_local
from atb.db.settings import parse_url
from atb.testing import create_scratch_database, drop_database, execute_sql

pytestmark = pytest.mark.postgres  # the victim lives on the machine's PostgreSQL

SYSTEM_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def victim() -> Iterator[str]:
    """A database on the machine's PostgreSQL with one precious row (skipped if it is not there)."""
    try:
        psycopg2.connect(SYSTEM_SERVER, connect_timeout=2).close()
    except psycopg2.OperationalError:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    url = create_scratch_database(SYSTEM_SERVER, "atb_guard_victim")
    execute_sql(url, "CREATE TABLE precious (id int)", "INSERT INTO precious VALUES (1)")
    yield url
    drop_database(SYSTEM_SERVER, url)


def precious_rows(url: str) -> int:
    return execute_sql(url, "SELECT count(*) FROM precious")[0][0]


def redirecting_cases(dbname: str, service_file: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """name: (a URL that looks local, extra environment), each of which lands on the victim."""
    service_file.write_text(f"[victim]\nhost=127.0.0.1\nport=5432\ndbname={dbname}\n")
    socket_url = f"postgresql://postgres@/{dbname}?host=/nonexistent-atb-dir&port=5432"
    return {
        "hostaddr in the URL": (
            f"postgresql://postgres@/{dbname}?host=/nonexistent-atb-dir&hostaddr=127.0.0.1&port=5432",
            {},
        ),
        "host list": (
            f"postgresql://postgres@/{dbname}?host=/nonexistent-atb-dir,127.0.0.1&port=5432",
            {},
        ),
        "service in the URL": (
            f"postgresql://postgres@/{dbname}?service=victim",
            {"PGSERVICEFILE": str(service_file)},
        ),
        "PGSERVICE": (
            f"postgresql://postgres@/{dbname}",
            {"PGSERVICE": "victim", "PGSERVICEFILE": str(service_file)},
        ),
        "PGHOSTADDR": (socket_url, {"PGHOSTADDR": "127.0.0.1"}),
        "PGHOST and PGPORT": (
            f"postgresql://postgres@/{dbname}",
            {"PGHOST": "127.0.0.1", "PGPORT": "5432"},
        ),
    }


CASES = [
    "hostaddr in the URL",
    "host list",
    "service in the URL",
    "PGSERVICE",
    "PGHOSTADDR",
    "PGHOST and PGPORT",
]


@pytest.mark.parametrize("case", CASES)
def test_nuke_refuses_a_url_that_libpq_would_redirect(
    victim: str, tmp_path: Path, case: str
) -> None:
    url, env = redirecting_cases(parse_url(victim).database, tmp_path / "pg_service.conf")[case]
    result = atb_subprocess("db", "nuke", "--url", url, "--yes", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "libpq may connect elsewhere" in result.stderr
    assert "--allow-production" in result.stderr
    assert "Traceback" not in result.stderr
    assert precious_rows(victim) == 1


@pytest.mark.parametrize("case", ["hostaddr in the URL", "PGHOSTADDR"])
def test_restore_refuses_a_url_that_libpq_would_redirect(
    victim: str, tmp_path: Path, case: str
) -> None:
    url, env = redirecting_cases(parse_url(victim).database, tmp_path / "pg_service.conf")[case]
    backup = tmp_path / "empty.dump"
    backup.write_bytes(b"PGDMP")  # never read: the guard comes first
    result = atb_subprocess("db", "restore", str(backup), "--url", url, "--yes", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "libpq may connect elsewhere" in result.stderr
    assert precious_rows(victim) == 1


def test_reset_railway_with_url_refuses_a_redirected_url(victim: str, tmp_path: Path) -> None:
    url, env = redirecting_cases(parse_url(victim).database, tmp_path / "pg_service.conf")[
        "hostaddr in the URL"
    ]
    result = atb_subprocess(
        "db",
        "reset-railway",
        "staging",
        "--url",
        url,
        "--confirm",
        "staging",
        "--backup-dir",
        str(tmp_path),
        env={**env, "RAILWAY_ENVIRONMENT_NAME": "staging"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "libpq may connect elsewhere" in result.stderr
    assert list(tmp_path.glob("*.dump")) == []  # refused before the backup even connected


def test_reset_railway_with_a_remote_url_needs_allow_production(tmp_path: Path) -> None:
    result = atb_subprocess(
        "db",
        "reset-railway",
        "staging",
        "--url",
        "postgresql://u:secret@db.example.com/app",
        "--confirm",
        "staging",
        "--backup-dir",
        str(tmp_path),
        env={"RAILWAY_ENVIRONMENT_NAME": "staging"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not on this machine" in result.stderr
    assert "--allow-production" in result.stderr
    assert "secret" not in result.stdout + result.stderr


def test_the_server_confirms_it_is_local(pg_database_url: str, victim: str) -> None:
    """A Unix socket (NULL inet_server_addr) and a loopback TCP address both pass."""
    import peewee as pw

    for url in (pg_database_url, victim):
        parsed = parse_url(url)
        db = pw.PostgresqlDatabase(
            parsed.database,
            host=parsed.host,
            port=parsed.port,
            user=parsed.user,
            password=parsed.password,
        )
        check_server_is_local(db, url, action="nuke")
        db.close()
