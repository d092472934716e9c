"""Where the local server lives: the project folder is found the way git finds .git (the nearest
folder at or above the current one holding .atb/ or pyproject.toml); outside any project every
command refuses with a hint instead of creating a new server where it happened to run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import atb_subprocess

from atb.db import local
from atb.db.errors import ConfigurationError


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder with no project above it (pytest's tmp folders live under /tmp)."""
    assert local.find_project_root(tmp_path) is None, "a pyproject.toml or .atb/ above /tmp"
    return tmp_path


def test_a_subfolder_of_a_project_uses_the_project_folder(outside: Path) -> None:
    (outside / "bot" / "pyproject.toml").parent.mkdir()
    (outside / "bot" / "pyproject.toml").write_text("[project]\nname = 'bot'\n")
    deep = outside / "bot" / "src" / "bot" / "strategies"
    deep.mkdir(parents=True)
    assert local.find_project_root(deep) == (outside / "bot").resolve()


def test_the_nearest_atb_folder_wins_like_git(outside: Path) -> None:
    (outside / "pyproject.toml").write_text("")
    (outside / "work" / ".atb").mkdir(parents=True)
    (outside / "work" / "notes").mkdir()
    assert local.find_project_root(outside / "work" / "notes") == (outside / "work").resolve()


def test_a_file_named_atb_is_not_a_project_marker(outside: Path) -> None:
    (outside / ".atb").write_text("")
    assert local.find_project_root(outside) is None


def test_atb_home_wins_over_the_search(outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATB_HOME", str(outside / "elsewhere"))
    monkeypatch.chdir(outside)
    assert local.project_root() == (outside / "elsewhere").resolve()


def test_outside_any_project_the_folder_is_refused_with_a_hint(
    outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATB_HOME", raising=False)
    monkeypatch.chdir(outside)
    with pytest.raises(ConfigurationError) as refused:
        local.project_root()
    message = str(refused.value)
    assert "not inside an atb project" in message
    assert "ATB_HOME" in message and "DATABASE_URL" in message


@pytest.mark.parametrize(
    "args", [("db", "status"), ("db", "up"), ("db", "down"), ("db", "migrate"), ("db", "verify")]
)
def test_commands_outside_any_project_refuse_and_create_nothing(
    args: tuple[str, ...], outside: Path
) -> None:
    result = atb_subprocess(*args, env={"ATB_HOME": None}, cwd=outside)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("Error: not inside an atb project"), result.stderr
    assert "Traceback" not in result.stderr
    assert list(outside.iterdir()) == []  # no .atb/, no initdb, no second server


def test_a_command_in_a_subfolder_talks_about_the_projects_server(outside: Path) -> None:
    project = outside / "bot"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    result = atb_subprocess("db", "status", env={"ATB_HOME": None}, cwd=project / "notebooks")
    assert result.returncode == 1
    assert "local PostgreSQL is stopped; run atb db up" in result.stderr
    assert str(project.resolve()) in result.stderr
    assert sorted(os.listdir(project)) == ["notebooks", "pyproject.toml"]  # nothing created
