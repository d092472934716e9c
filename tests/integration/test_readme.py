"""README.md as a specification: every Python block runs, on SQLite and on PostgreSQL; the
DatabaseManager table matches the docstrings; `atb` on the PATH is shown right after the two
quickstart commands and every example uses that form; a SQLAlchemy habit gets a useful error."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import io
import re
import subprocess
from pathlib import Path

import pytest
from helpers import T0, log_trade

from atb.db import connection
from atb.db.manager import DatabaseManager
from atb.db.models import Trade

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.DOTALL | re.MULTILINE)
SHELL_BLOCKS = re.findall(r"^```(?:bash|console)\n(.*?)^```", README, re.DOTALL | re.MULTILINE)


def load_table_script():
    spec = importlib.util.spec_from_file_location(
        "manager_methods_table", ROOT / "scripts" / "manager_methods_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def readme_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Where `DatabaseManager()` in the README lands: the test's SQLite database, or DATABASE_URL
    set to the run's PostgreSQL database (emptied afterwards by `pg_db`)."""
    for name in (
        "DATABASE_PUBLIC_URL",
        "ATB_ENV",
        "RAILWAY_ENVIRONMENT_NAME",
        "RAILWAY_ENVIRONMENT",
    ):
        monkeypatch.delenv(name, raising=False)
    if request.param == "sqlite":
        db = request.getfixturevalue("sqlite_db")
        monkeypatch.setattr(connection, "connect", lambda *args, **kwargs: connection.bind(db))
        return db
    db = request.getfixturevalue("pg_db")
    monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("pg_database_url"))
    return db


def seed_trades() -> None:
    """A few trades the query examples find: the newest LIVE one is an ETH short."""
    manager = DatabaseManager(database=connection.bound_database(), apply_migrations=False)
    session_id = manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "paper", 1000)
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    log_trade(
        manager, session_id=session_id, exit_time=recent, entry_time=recent - dt.timedelta(hours=1)
    )
    log_trade(manager, session_id=session_id, source="paper", exit_time=T0)
    log_trade(manager, symbol="ETHUSDT", side="short", pnl="-3", exit_time=recent + dt.timedelta(minutes=30),
              entry_time=recent, exit_price="103", entry_price="100")  # fmt: skip


def test_the_readme_has_python_blocks() -> None:
    assert len(PYTHON_BLOCKS) >= 6


def test_every_python_block_of_the_readme_runs(readme_database, request) -> None:
    seed_trades()
    namespace: dict = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for number, block in enumerate(PYTHON_BLOCKS, 1):
            try:
                exec(compile(block, f"README.md python block {number}", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the message is the point
                pytest.fail(f"README python block {number} failed: {exc!r}\n{block}")
        for name, test in list(namespace.items()):
            if name.startswith("test_") and callable(test):  # the fixture example
                test(readme_database)
    printed = out.getvalue()
    assert printed.splitlines()[0].startswith("ETHUSDT SHORT ")  # the latest LIVE trade
    assert "paper and backtest trades" in printed and "live trades" in printed


def test_the_manager_table_matches_the_docstrings() -> None:
    script = load_table_script()
    table = script.current_table(README)
    assert table is not None, "README.md lost its DatabaseManager table markers"
    assert table == script.render(), (
        "README.md's DatabaseManager table is out of date: run "
        "python scripts/manager_methods_table.py --write"
    )


def test_every_public_manager_method_is_in_the_table_with_a_contract() -> None:
    public = {name for name in dir(DatabaseManager) if not name.startswith("_")}
    rows = load_table_script().manager_methods()
    assert {name for _, name, _ in rows} == public
    assert all(contract for _, _, contract in rows), [n for _, n, c in rows if not c]


def test_the_readme_points_to_no_file_outside_the_project() -> None:
    for path in [ROOT / "README.md", *ROOT.glob("atb/**/*.py"), *ROOT.glob("scripts/*")]:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "shared/design" not in text and "/work/" not in text, path


# --------------------------------------------------------------------------------------------------
# atb on the PATH


def test_the_lines_after_the_two_quickstart_commands_show_how_to_get_atb() -> None:
    quickstart = README.split("## Quickstart", 1)[1]
    after = quickstart.split("./scripts/test", 1)[1].split("```", 1)[1]
    first_lines = "\n".join(after.strip().splitlines()[:8])
    assert "source .venv/bin/activate" in first_lines
    assert "./scripts/atb" in first_lines


def test_every_example_calls_atb_the_same_way() -> None:
    for block in SHELL_BLOCKS:
        for line in block.splitlines():
            assert ".venv/bin/atb" not in line and "python -m atb" not in line, line
            command = line.removeprefix("$ ").strip()
            if re.match(r"^(\S+/)?atb(\s|$)", command):
                assert command.startswith(("atb ", "./scripts/atb ")), line


def test_scripts_atb_runs_atb_in_the_callers_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    result = subprocess.run(
        [str(ROOT / "scripts" / "atb"), "db", "status"],
        cwd=project / "sub",
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 1
    assert f"local PostgreSQL is stopped; run atb db up (project folder {project.resolve()})" in (
        result.stderr
    )
    version = subprocess.run(
        [str(ROOT / "scripts" / "atb"), "--version"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0 and version.stdout.startswith("atb, version ")


def test_the_demo_ends_by_saying_how_to_get_atb() -> None:
    demo = (ROOT / "scripts" / "demo").read_text()
    assert "source .venv/bin/activate" in demo.splitlines()[-2]


# --------------------------------------------------------------------------------------------------
# A SQLAlchemy habit


@pytest.mark.parametrize(
    ("call", "hint"),
    [
        (lambda session: session.query(Trade), "Trade.select().where("),
        (lambda session: session.add(object()), "Trade.create(...)"),
        (lambda session: session.flush(), "nothing to flush"),
    ],
    ids=["query", "add", "flush"],
)
def test_sqlalchemy_session_calls_say_what_to_use_instead(backend, call, hint) -> None:
    with backend.get_session() as session:
        assert not hasattr(session, "query")
        with pytest.raises(AttributeError) as error:
            call(session)
    message = str(error.value)
    assert "not a SQLAlchemy Session" in message and hint in message
    assert "Querying the models" in message
