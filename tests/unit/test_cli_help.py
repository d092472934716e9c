"""Every `atb db` command has help with an example and is documented with its exit codes.

The documentation is README.md's "## Commands" section.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from atb.cli import cli
from atb.cli.db import db_group

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = sorted(db_group.commands)


def documentation() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^## Commands\s*$", text, re.MULTILINE), (
        "README.md has no ## Commands section"
    )
    return text


def documented_sections() -> dict[str, str]:
    """`### \\`atb db NAME\\`` heading -> the text up to the next heading of that level or above."""
    text = documentation()
    sections: dict[str, str] = {}
    parts = re.split(r"^### `atb db ([a-z-]+)`[^\n]*$", text, flags=re.MULTILINE)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[name] = re.split(r"^#{1,3} ", body, maxsplit=1, flags=re.MULTILINE)[0]
    return sections


def test_the_group_has_all_the_commands() -> None:
    assert set(COMMANDS) >= {
        "up",
        "down",
        "migrate",
        "status",
        "verify",
        "check",
        "makemigrations",
        "backup",
        "restore",
        "nuke",
        "setup-railway",
        "reset-railway",
    }


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name: str) -> None:
    command = db_group.commands[name]
    assert command.help and command.help.strip(), name
    result = CliRunner().invoke(cli, ["db", name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"atb db {name} --help has no example"
    assert f"atb db {name}" in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_documented_with_an_example_and_exit_codes(name: str) -> None:
    sections = documented_sections()
    assert name in sections, f"no '### `atb db {name}`' section in the documentation"
    body = sections[name]
    assert "```" in body and f"atb db {name}" in body, f"no example for atb db {name}"
    assert "Exit codes:" in body, f"no exit codes for atb db {name}"


def test_no_documented_command_is_missing_from_the_cli() -> None:
    assert set(documented_sections()) <= set(COMMANDS)


def test_an_unknown_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["db", "verify", "--no-such-option"])
    assert result.exit_code == 2
