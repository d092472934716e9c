"""Every expected failure is one `Error:` line on stderr: no traceback, no password.

Real subprocesses, so what an operator sees (stderr, exit code) is what is checked. None of these
URLs can be connected to: each must be refused while it is parsed.
"""

from __future__ import annotations

import os

import pytest
from helpers import atb_subprocess

from atb.db.errors import ConfigurationError
from atb.db.settings import DatabaseSettings


def assert_one_error_line(result, secret: str = "pw") -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert secret not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"DATABASE_URL": "postgresql://u:pw@[::1/atb"}, [], "Invalid IPv6 URL"),
        ({"PGHOST": "/tmp", "PGPORT": "abc", "PGPASSWORD": "pw"}, [], "PGPORT='abc'"),
        ({}, ["--url", "postgresql://u:pw@localhost/atb?port=abc"], "invalid port 'abc'"),
        ({}, ["--url", "postgresql://u:pw@localhost:99999/atb"], "invalid port"),
        ({}, ["--url", "postgresql://u:pw@localhost/at%00b"], "NUL character"),
        ({}, ["--url", os.fsdecode(b"postgresql://u:pw@localhost/at\xffb")], "not valid UTF-8"),
    ],
    ids=["ipv6", "PGPORT", "query-port", "port-range", "nul", "non-utf8"],
)
def test_a_malformed_url_is_one_error_line(env, args, expected) -> None:
    line = assert_one_error_line(atb_subprocess("db", "status", *args, env=env))
    assert expected in line


def test_parse_errors_are_configuration_errors_with_the_password_masked() -> None:
    with pytest.raises(ConfigurationError) as caught:
        DatabaseSettings.from_env("postgresql://u:pw@host/db?port=5432,5433")
    assert "pw" not in str(caught.value) and "u:***@" in str(caught.value)
