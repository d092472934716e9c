"""Backup and restore show a progress bar (percentage, ETA) on a terminal, and nothing elsewhere."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CLEAN_ENV, atb_subprocess


def _at_a_terminal(*args: str) -> tuple[int, str]:
    """`atb *args` with stdin, stdout and stderr on a pseudo-terminal, as a person runs it."""
    primary, secondary = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    environment.update({k: v for k, v in CLEAN_ENV.items() if v is not None})
    proc = subprocess.Popen(
        [sys.executable, "-c", "from atb.cli import main; main()", *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=environment,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the program ended
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    return proc.wait(timeout=120), output.decode("utf-8", "replace")


@pytest.mark.parametrize("name", ["atb.dump", "atb.sql.gz"])
def test_progress_on_a_terminal_only(
    name: str, source_url: str, other_url: str, tmp_path: Path
) -> None:
    target = tmp_path / name
    code, shown = _at_a_terminal("db", "backup", "--url", source_url, "--output", str(target))
    assert code == 0, shown
    assert shown.index("database: ") < shown.index("backing up") < shown.index("100%")
    code, shown = _at_a_terminal("db", "restore", str(target), "--url", other_url, "--yes")
    assert code == 0, shown
    assert shown.index("database: ") < shown.index("restoring") < shown.index("100%")

    piped = atb_subprocess("db", "restore", str(target), "--url", other_url, "--yes")
    assert piped.returncode == 0, piped.stderr
    assert "restoring" not in piped.stdout + piped.stderr and "\r" not in piped.stderr
