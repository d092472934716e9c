"""Hostile, truncated and interrupted backups: nothing runs on this machine, nothing half-commits.

Each case is what an operator meets: a `.sql.gz` someone handed over, a file cut short by a full
disk, a restore killed by Ctrl-C, SIGTERM or SIGKILL. The database must end fully restored or
exactly as it was, and no PostgreSQL tool may outlive atb.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import CLEAN_ENV, atb_db
from test_cli_backup_restore import backup_of, fingerprint

from atb.testing import execute_sql

HOSTILE = {
    "shell": "\\! touch {marker}\n",
    "shell_mid_line": "SELECT pg_catalog.setval('x', 1) \\! touch {marker}\n",
    "output_redirect": "\\o {marker}\n",
    "client_copy": "\\copy (SELECT 1) TO '{marker}'\n",
    "connect": "\\connect postgres\n",
    "set_on_error_stop": "\\set ON_ERROR_STOP 0\n",
    "commit_then_delete": "COMMIT; DELETE FROM trades; SELECT 1/0;\n",
    "rollback": "ROLLBACK;\n",
    "end": "END;\n",
    "begin": "BEGIN;\n",
    "abort_lowercase": "abort;\n",
    "set_transaction": "SET TRANSACTION READ WRITE;\n",
    "set_read_only_off": "SET transaction_read_only = off;\n",
    "set_sql_standard_off": "SET standard_conforming_strings = off;\n",
    "hidden_in_select": "SELECT 'x'; commit;\n",
    "do_block": "DO $$BEGIN EXECUTE 'SET standard_conforming_strings = off'; END$$;\n",
    "copy_to_file": "COPY (SELECT 1) TO '{marker}';\n",
    "copy_from_program": "COPY public.trades (id) FROM PROGRAM 'touch {marker}';\n",
    "psql_variable": "SELECT pg_catalog.setval(:'DBNAME', 1);\n",
    "comment_then_commit": "/* harmless */ COMMIT;\n",
}


def _rewrite(good: Path, bad: Path, inject: str) -> None:
    """`good` with `inject` right after pg_dump's SET block, before any table is touched."""
    with gzip.open(good, "rt", encoding="utf-8") as src:
        text = src.read()
    anchor = "SET row_security = off;\n"
    assert anchor in text
    with gzip.open(bad, "wt", encoding="utf-8") as dst:
        dst.write(text.replace(anchor, anchor + inject, 1))


@pytest.fixture
def sql_backup(source_url: str, tmp_path: Path) -> Path:
    return backup_of(source_url, tmp_path / "good.sql.gz")


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_plain_sql_file_runs_nothing_and_changes_nothing(
    case: str, sql_backup: Path, other_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / f"{case}.sql.gz"
    _rewrite(sql_backup, bad, HOSTILE[case].format(marker=marker))
    before = fingerprint(other_url)

    result = atb_db("restore", str(bad), "--url", other_url, "--yes", "--no-checksum")

    assert result.exit_code == 1, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert "was refused at line " in error and error.endswith("nothing was run")
    assert not marker.exists()
    assert fingerprint(other_url) == before


def test_a_plain_sql_file_cut_at_a_statement_boundary_is_refused(
    sql_backup: Path, other_url: str, tmp_path: Path
) -> None:
    with gzip.open(sql_backup, "rt", encoding="utf-8") as src:
        lines = src.read().splitlines(keepends=True)
    cut_at = next(i for i, line in enumerate(lines) if line.startswith("CREATE TABLE")) + 40
    while not lines[cut_at - 1].rstrip().endswith(";"):
        cut_at += 1
    cut = tmp_path / "cut.sql.gz"
    with gzip.open(cut, "wt", encoding="utf-8") as dst:
        dst.writelines(lines[:cut_at])  # a valid gzip file of complete statements
    before = fingerprint(other_url)

    result = atb_db("restore", str(cut), "--url", other_url, "--yes", "--no-checksum")

    assert result.exit_code == 1
    assert "completion marker" in result.output
    assert fingerprint(other_url) == before


def test_a_gzip_file_without_its_trailer_is_refused(
    sql_backup: Path, other_url: str, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.sql.gz"
    cut.write_bytes(sql_backup.read_bytes()[:-8])  # CRC and length gone
    before = fingerprint(other_url)
    result = atb_db("restore", str(cut), "--url", other_url, "--yes", "--no-checksum")
    assert result.exit_code == 1 and "gzip" in result.output
    assert fingerprint(other_url) == before


def test_a_changed_file_is_refused_by_its_checksum(
    sql_backup: Path, other_url: str, tmp_path: Path
) -> None:
    _rewrite(sql_backup, sql_backup, "SET check_function_bodies = false;\n")
    result = atb_db("restore", str(sql_backup), "--url", other_url, "--yes")
    assert result.exit_code == 1 and "does not match its checksum" in result.output


# --------------------------------------------------------------------------------------------------
# Killed commands


def _atb_process(*args: str) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    environment.update({k: v for k, v in CLEAN_ENV.items() if v is not None})
    return subprocess.Popen(
        [sys.executable, "-c", "from atb.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _admin_sessions(url: str) -> int:
    """Connections of atb's PostgreSQL tools (application_name `atb-admin`) to the database."""
    ((count,),) = execute_sql(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%-admin' "
        "AND datname = current_database()",
    )
    return count


def _signal_when(
    proc: subprocess.Popen, ready: Callable[[], bool], how: signal.Signals, settle: float = 0
) -> str:
    """Send `how` to atb once `ready()` (the tool is at work); its stderr once it ended."""
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert time.monotonic() < deadline and proc.poll() is None, "the tool never started"
            time.sleep(0.02)
        time.sleep(settle)
        proc.send_signal(how)
        return proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def big_source(make_migrated_pg_database: Callable[..., str]) -> str:
    """Enough rows that a restore takes a few seconds, so it can be killed midway."""
    url = make_migrated_pg_database("atb_big")
    execute_sql(
        url,
        "INSERT INTO system_events (timestamp, event_type, message) "
        "SELECT now(), 'TEST', repeat(md5(g::text), 8) FROM generate_series(1, 400000) g",
    )
    return url


@pytest.mark.parametrize("name", ["big.dump", "big.sql.gz"])
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_killed_restore_leaves_no_tool_running_and_changes_nothing(
    name: str, how: signal.Signals, big_source: str, other_url: str, tmp_path: Path
) -> None:
    archive = backup_of(big_source, tmp_path / name)
    before = fingerprint(other_url)
    proc = _atb_process("db", "restore", str(archive), "--url", other_url, "--yes")
    stderr = _signal_when(proc, lambda: _admin_sessions(other_url) > 0, how, settle=0.3)
    if how == signal.SIGINT:
        assert proc.returncode == 130 and "Error: interrupted; nothing was changed" in stderr
    elif how == signal.SIGTERM:
        assert proc.returncode == 143 and "nothing was changed" in stderr
    deadline = time.monotonic() + 30
    while _admin_sessions(other_url):  # an orphaned tool would keep going, and commit
        assert time.monotonic() < deadline, "a PostgreSQL tool outlived atb"
        time.sleep(0.1)
    time.sleep(1)
    assert fingerprint(other_url) == before


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_backup_leaves_nothing_behind_for_long(
    how: signal.Signals, big_source: str, tmp_path: Path
) -> None:
    target = tmp_path / "big.dump"
    proc = _atb_process("db", "backup", "--url", big_source, "--output", str(target))
    stderr = _signal_when(proc, lambda: any(tmp_path.glob(".big.dump.partial-*")), how)
    assert proc.returncode == (130 if how == signal.SIGINT else -signal.SIGKILL), stderr
    assert not target.exists()
    if how == signal.SIGINT:
        assert list(tmp_path.iterdir()) == []
    # Whatever a dead run left, the next run removes; a finished backup stands alone.
    made = atb_db("backup", "--url", big_source, "--output", str(target))
    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.dump", "big.dump.sha256"]


def test_an_interrupted_backup_into_a_new_folder_leaves_no_folder(
    big_source: str, tmp_path: Path
) -> None:
    target = tmp_path / "new" / "nested" / "big.dump"
    proc = _atb_process("db", "backup", "--url", big_source, "--output", str(target))
    folder = target.parent
    stderr = _signal_when(proc, lambda: folder.is_dir() and any(folder.iterdir()), signal.SIGINT)
    assert proc.returncode == 130, stderr
    assert "Error: interrupted; nothing was changed" in stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# --role: the backup's SQL runs without superuser rights


@pytest.mark.parametrize("name", ["atb.dump", "atb.sql.gz"])
def test_restore_as_a_role_creates_objects_as_that_role(
    name: str, source_url: str, make_pg_database: Callable[..., str], tmp_path: Path
) -> None:
    archive = backup_of(source_url, tmp_path / name)
    role = f"atb_restorer_{os.getpid()}_{name.split('.')[-1].replace('gz', 'sql')}"
    fresh = make_pg_database("atb_role_target")
    execute_sql(fresh, f'DROP ROLE IF EXISTS "{role}"')
    execute_sql(fresh, f'CREATE ROLE "{role}" NOSUPERUSER NOLOGIN')
    try:
        execute_sql(fresh, f'ALTER SCHEMA public OWNER TO "{role}"')
        result = atb_db("restore", str(archive), "--url", fresh, "--yes", "--role", role)
        assert result.exit_code == 0, result.output
        owners = execute_sql(
            fresh, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        )
        assert owners == [(role,)]
        assert fingerprint(fresh) == fingerprint(source_url)
    finally:
        execute_sql(fresh, f'DROP OWNED BY "{role}" CASCADE')
        execute_sql(fresh, f'DROP ROLE "{role}"')


@pytest.mark.parametrize("name", ["atb.dump", "atb.sql.gz"])
def test_restore_as_a_role_without_rights_changes_nothing(
    name: str, source_url: str, other_url: str, tmp_path: Path
) -> None:
    archive = backup_of(source_url, tmp_path / name)
    role = f"atb_weak_{os.getpid()}_{name.split('.')[-1]}"
    execute_sql(other_url, f'DROP ROLE IF EXISTS "{role}"')
    execute_sql(other_url, f'CREATE ROLE "{role}" NOSUPERUSER NOLOGIN')
    before = fingerprint(other_url)
    try:
        result = atb_db("restore", str(archive), "--url", other_url, "--yes", "--role", role)
        assert result.exit_code == 1
        assert "must be owner" in result.output and "unchanged" in result.output
        assert fingerprint(other_url) == before
    finally:
        execute_sql(other_url, f'DROP ROLE "{role}"')
