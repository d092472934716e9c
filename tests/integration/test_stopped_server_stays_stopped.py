"""A stopped local server stays stopped: only `atb db up` (and ./scripts/demo, the test fixtures)
start it; every other command says so and exits 1. ./scripts/test says what it left running."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import atb_db, atb_subprocess

from atb.db import local

STOPPED = "Error: local PostgreSQL is stopped; run atb db up"
ROOT = Path(__file__).resolve().parents[2]

COMMANDS_THAT_NEED_THE_SERVER = [
    ("status",),
    ("status", "--json"),
    ("migrate",),
    ("migrate", "--plan"),
    ("rollback", "--plan"),
    ("rollback", "--yes"),
    ("verify",),
    ("backup", "--output", "never.dump"),
    ("restore", "README.md", "--yes"),
    ("nuke", "--yes"),
    ("shell", "--", "-c", "SELECT 1"),
    ("adopt", "--plan"),
]


@pytest.fixture
def stopped_server(private_server):
    root, _ = private_server
    down = atb_db("down", env={"ATB_HOME": str(root)})
    assert down.exit_code == 0 and "local PostgreSQL stopped" in down.output, down.output
    assert local.status(root) is None
    yield root
    local.start(root)


@pytest.mark.parametrize("args", COMMANDS_THAT_NEED_THE_SERVER, ids=" ".join)
def test_a_command_after_down_says_the_server_is_stopped_and_leaves_it_stopped(
    args: tuple[str, ...], stopped_server: Path
) -> None:
    result = atb_db(*args, env={"ATB_HOME": str(stopped_server)})
    assert result.exit_code == 1, result.output
    assert STOPPED in result.output
    assert "Traceback" not in result.output
    assert local.status(stopped_server) is None


def test_up_starts_it_again_and_the_commands_work(stopped_server: Path) -> None:
    env = {"ATB_HOME": str(stopped_server)}
    assert atb_db("status", env=env).exit_code == 1
    up = atb_subprocess("db", "up", env=env)
    assert up.returncode == 0, up.stderr
    assert "running" in up.stdout
    assert local.status(stopped_server) is not None
    migrated = atb_db("migrate", env=env)
    assert migrated.exit_code == 0, migrated.output
    assert atb_db("status", env=env).exit_code == 0


def test_down_twice_is_fine_and_still_stopped(stopped_server: Path) -> None:
    again = atb_db("down", env={"ATB_HOME": str(stopped_server)})
    assert again.exit_code == 0 and "was not running" in again.output
    assert local.status(stopped_server) is None


def _scripts_test(home: Path, *pytest_args: str) -> subprocess.CompletedProcess:
    environment = {
        k: v for k, v in os.environ.items() if k not in {"TEST_DATABASE_URL", "DATABASE_URL"}
    }
    environment["ATB_HOME"] = str(home)
    return subprocess.run(
        [str(ROOT / "scripts" / "test"), "-q", "-p", "no:cacheprovider", *pytest_args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )


def test_scripts_test_stops_the_server_it_started_and_says_so() -> None:
    # A /tmp folder of its own, not pytest's (see private_server: pytest resets its mode).
    home = Path(tempfile.mkdtemp(prefix="atb_scripts_test_"))
    try:
        check_scripts_test_stops_what_it_started(home)
    finally:
        local.stop(home)
        shutil.rmtree(home, ignore_errors=True)


def check_scripts_test_stops_what_it_started(home: Path) -> None:
    result = _scripts_test(
        home,
        "tests/integration/test_pool_pg.py::"
        "test_constructing_a_manager_on_a_migrated_database_returns_its_connection",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == (
        "local PostgreSQL: stopped again (the tests started it; ATB_KEEP_SERVER=1 keeps it running)"
    )
    assert local.status(home) is None


def test_scripts_test_leaves_a_server_that_was_running_alone(private_server) -> None:
    root, _ = private_server
    result = _scripts_test(root, "tests/unit/test_redaction.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == (
        "local PostgreSQL: left running, as it was before the tests (atb db down stops it)"
    )
    assert local.status(root) is not None
