"""pytest fixtures for code that uses atb (registered as the `atb` pytest11 plugin).

- `sqlite_db`: a fresh in-memory SQLite database per test, bound to the proxy. The migrations run
  once per run into a template database that each test gets a copy of (`sqlite3` backup, about a
  millisecond). Shared-cache, so threads in a test see the same data. For fast logic checks only.
- `pg_server_url`: a PostgreSQL server for the whole run: `TEST_DATABASE_URL` when set (its server
  is used; a scratch database is created there), else the embedded server under `.atb/` (started
  if needed). When neither is available the PostgreSQL tests skip, or fail with
  `ATB_REQUIRE_PG=1` (what `./scripts/test` and CI set), so a suite cannot pass by skipping.
- `pg_database_url`: a scratch database, migrated to head once per run.
- `pg_db`: that database bound to the proxy for one test; every table is emptied afterwards.
- `make_pg_database`: factory for further empty scratch databases (dropped at the end of the run).
- `make_migrated_pg_database`: the same, each database migrated to head.

Every test that uses one of the PostgreSQL fixtures (directly or through another fixture) is
marked `postgres` automatically, so `-m "not postgres"` runs the SQLite-only tests;
`mark_postgres_fixtures(name, ...)` adds a project's own fixtures to that rule.

Plain functions for tests that drive PostgreSQL by URL: `execute_sql(url, *statements)`,
`migrate_to_head(url)`, `create_scratch_database`, `drop_database`, `url_with_database`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import peewee as pw
import pytest

from atb.db import connection, pgtools
from atb.db.settings import DatabaseSettings, build_url, parse_url, redact_url

POSTGRES_FIXTURES: set[str] = {
    "pg_server_url",
    "pg_database_url",
    "pg_db",
    "make_pg_database",
    "make_migrated_pg_database",
    "make_pgbouncer",
}
"""Fixtures whose tests get the `postgres` mark (their dependants are covered too)."""

REQUIRE_PG_VARIABLE = "ATB_REQUIRE_PG"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: needs a real PostgreSQL server (embedded, or TEST_DATABASE_URL)"
    )


@pytest.hookimpl(tryfirst=True)  # before -m deselects by mark
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def mark_postgres_fixtures(*names: str) -> None:
    """Tests using any of these fixtures also get the `postgres` mark (call from a conftest)."""
    POSTGRES_FIXTURES.update(names)


def postgres_required() -> bool:
    """True when ATB_REQUIRE_PG is set to 1 (./scripts/test and CI): no PostgreSQL is a failure."""
    return os.environ.get(REQUIRE_PG_VARIABLE, "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail_without_postgres(reason: str, *, module: bool = False) -> None:
    """Skip the test (or the whole module), or fail when `ATB_REQUIRE_PG=1`: PostgreSQL tests
    must not pass by skipping."""
    if postgres_required():
        pytest.fail(
            f"{reason} ({REQUIRE_PG_VARIABLE}=1: PostgreSQL tests may not skip)", pytrace=False
        )
    pytest.skip(
        f"{reason}; set TEST_DATABASE_URL, or {REQUIRE_PG_VARIABLE}=1 to fail instead",
        allow_module_level=module,
    )


def url_with_database(url: str, name: str) -> str:
    """The same server and credentials, another database."""
    parsed = parse_url(url)
    return build_url(parsed.host, parsed.port, parsed.user, parsed.password, name, parsed.query)


def execute_sql(url: str, *statements: str) -> list[tuple]:
    """Run the statements in order on one autocommit connection to `url` (outside the proxy);
    returns the rows of the last one, `[]` when it returns none."""
    conn = pgtools.admin_connect(url)
    try:
        rows: list[tuple] = []
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                rows = cur.fetchall() if cur.description else []
        return rows
    finally:
        conn.close()


def create_scratch_database(
    server_url: str, prefix: str = "atb_test", *, owner: str | None = None
) -> str:
    """CREATE a uniquely named empty database on the server; returns its URL.

    Retries for a few seconds while another session holds `template1` (concurrent test runs).
    """
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = pgtools.admin_connect(server_url)
    try:
        pgtools.create_database(conn, name, owner=owner)
    finally:
        conn.close()
    return url_with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    """DROP a scratch database, ending any sessions still attached to it."""
    conn = pgtools.admin_connect(server_url)
    try:
        pgtools.drop_database(conn, parse_url(database_url).database)
    finally:
        conn.close()


def migrate_to_head(url: str) -> str:
    """Apply every pending atb migration to the database at `url`; returns the URL."""
    from atb.db.migrate import apply_pending_migrations

    db = connection.build_database(settings_for_tests(url))
    try:
        apply_pending_migrations(db=db)
    finally:
        db.close_all()  # type: ignore[attr-defined]
    return url


def settings_for_tests(url: str, **overrides) -> DatabaseSettings:
    """Settings for tests: the URL as given, short timeouts so failures show fast."""
    base = DatabaseSettings.from_env(url, env={}, allow_sqlite=url.startswith("sqlite"))
    return replace(base, **{"pool_timeout": 5, "connect_timeout": 3, **overrides})


def _new_sqlite(name: str) -> pw.SqliteDatabase:
    from atb.db.sqlalchemy_hints import HintedSqliteDatabase

    return HintedSqliteDatabase(
        f"file:{name}?mode=memory&cache=shared", uri=True, pragmas={"foreign_keys": 1}
    )


# migrations folder and its files' (name, mtime) -> an open in-memory database migrated to head
_sqlite_templates: dict[tuple, pw.SqliteDatabase] = {}


def _migrated_sqlite_template() -> pw.SqliteDatabase:
    """An in-memory database migrated to head, built once per run (per migration folder)."""
    from atb.db.migrate import apply_pending_migrations, migrations_dir

    folder = migrations_dir()
    try:
        files = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.py")))
    except OSError:
        files = ()
    key = (str(folder), files)
    template = _sqlite_templates.get(key)
    if template is None:
        template = _new_sqlite(f"atb_template_{uuid.uuid4().hex}")
        template.connect()  # migrated through its own handle: the models' binding is untouched
        apply_pending_migrations(db=template)
        _sqlite_templates[key] = template
    return template


def bind_sqlite(name: str | None = None) -> pw.SqliteDatabase:
    """Bind a fresh shared-cache in-memory SQLite database at head (a copy of the migrated template)."""
    template = _migrated_sqlite_template()
    db = _new_sqlite(name or f"atb_{uuid.uuid4().hex}")
    connection.bind(db, replace=True)
    db.connect()
    # The template's own connection stays open for the run: closing it would free the database.
    template.connection().backup(db.connection())
    return db


@pytest.fixture
def sqlite_db() -> Iterator[pw.SqliteDatabase]:
    """A fresh SQLite database (schema via the migrations) bound to the proxy for one test."""
    db = bind_sqlite()
    try:
        yield db
    finally:
        if not db.is_closed():
            db.close()
        connection.disconnect()


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """A URL on a PostgreSQL server the tests may create databases on."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return explicit
    from atb.db import local

    try:
        server = local.start()
    except Exception as exc:  # no wheel, no permission: skip (or fail with ATB_REQUIRE_PG=1)
        skip_or_fail_without_postgres(f"no PostgreSQL for integration tests ({exc})")
    return server.url_for("postgres")


@pytest.fixture(scope="session")
def make_pg_database(pg_server_url: str) -> Iterator[Callable[..., str]]:
    """Factory for empty scratch databases; all are dropped at the end of the run."""
    created: list[str] = []

    def make(prefix: str = "atb_test") -> str:
        url = create_scratch_database(pg_server_url, prefix)
        created.append(url)
        return url

    yield make
    for url in created:
        try:
            drop_database(pg_server_url, url)
        except Exception as exc:  # pragma: no cover - best effort cleanup
            print(f"could not drop {redact_url(url)}: {exc}")


@pytest.fixture(scope="session")
def make_migrated_pg_database(make_pg_database: Callable[..., str]) -> Callable[..., str]:
    """Factory for scratch databases migrated to head; all are dropped at the end of the run."""

    def make(prefix: str = "atb_test") -> str:
        return migrate_to_head(make_pg_database(prefix))

    return make


@pytest.fixture(scope="session")
def pg_database_url(make_migrated_pg_database: Callable[..., str]) -> str:
    """One scratch database for the run, migrated to head."""
    return make_migrated_pg_database()


def truncate_all(db: pw.Database) -> None:
    """Empty every atb table (not the migration history) and restart the id sequences."""
    from atb.db.models import ALL_MODELS

    tables = ", ".join(f'"{m._meta.table_name}"' for m in ALL_MODELS)
    db.execute_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
def pg_db(pg_database_url: str) -> Iterator[pw.PostgresqlDatabase]:
    """The run's PostgreSQL database bound to the proxy for one test, emptied afterwards."""
    db = connection.connect(settings=settings_for_tests(pg_database_url), replace=True)
    try:
        yield db  # type: ignore[misc]
    finally:
        connection.disconnect()
        cleaner = connection.build_database(settings_for_tests(pg_database_url))
        try:
            with cleaner.connection_context():
                truncate_all(cleaner)
        finally:
            cleaner.close_all()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------------
# PgBouncer: a real pgbouncer process in front of a test server (Debian package `pgbouncer`).

PGBOUNCER_INSTALL_HINT = "install pgbouncer: apt-get install pgbouncer"


def pgbouncer_binary() -> str:
    """The pgbouncer executable; fails the test (never skips) with the install hint when missing."""
    import shutil

    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer") if os.access(p, os.X_OK)),
        None,
    )
    if not found:
        pytest.fail(PGBOUNCER_INSTALL_HINT, pytrace=False)
    return found


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unprivileged_account(socket_dir: str | None) -> tuple[int, int] | None:
    """PgBouncer refuses to run as root: as root, run it as the server socket's owner (it can
    reach the socket), else `postgres`, else `nobody`. None when we are not root."""
    import pwd

    if os.geteuid() != 0:
        return None
    if socket_dir and os.path.isdir(socket_dir):
        st = os.stat(socket_dir)
        if st.st_uid != 0:
            return st.st_uid, st.st_gid
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no unprivileged account to run pgbouncer as")


class PgBouncer:
    """A pgbouncer process on 127.0.0.1 forwarding every database to one server (trust auth)."""

    def __init__(
        self,
        server_url: str,
        pool_mode: str,
        workdir: str,
        *,
        pool_size: int = 2,
        max_client_conn: int = 50,
    ):
        self.server = parse_url(server_url)
        self.pool_mode = pool_mode
        self.workdir = workdir
        self.port = _free_port()
        self.user = self.server.user or "postgres"
        self.process: Any = None
        host = self.server.host or "/var/run/postgresql"
        self._ini = os.path.join(workdir, "pgbouncer.ini")
        self._log = os.path.join(workdir, "pgbouncer.log")
        users = {self.user, "postgres"}
        with open(os.path.join(workdir, "userlist.txt"), "w") as f:
            f.writelines(f'"{u}" ""\n' for u in sorted(users))
        with open(self._ini, "w") as f:
            f.write(
                "[databases]\n"
                f"* = host={host} port={self.server.port or 5432}\n"
                "[pgbouncer]\n"
                "listen_addr = 127.0.0.1\n"
                f"listen_port = {self.port}\n"
                "unix_socket_dir =\n"
                "auth_type = trust\n"
                f"auth_file = {os.path.join(workdir, 'userlist.txt')}\n"
                f"pool_mode = {pool_mode}\n"
                f"default_pool_size = {pool_size}\n"
                f"max_client_conn = {max_client_conn}\n"
                f"logfile = {self._log}\n"
                f"pidfile = {os.path.join(workdir, 'pgbouncer.pid')}\n"
            )
        self._account = _unprivileged_account(host if host.startswith("/") else None)
        if self._account is not None:
            os.chmod(workdir, 0o755)
            for name in os.listdir(workdir):
                os.chown(os.path.join(workdir, name), *self._account)
            os.chown(workdir, *self._account)

    def url(self, database: str) -> str:
        """A URL that reaches `database` through the bouncer."""
        return build_url("127.0.0.1", self.port, self.user, None, database)

    def log(self) -> str:
        try:
            with open(self._log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start(self) -> PgBouncer:
        import socket
        import subprocess

        kwargs: dict[str, Any] = {}
        if self._account is not None:
            kwargs.update(user=self._account[0], group=self._account[1], extra_groups=[])
        self.process = subprocess.Popen(
            [pgbouncer_binary(), self._ini],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **kwargs,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen within 15s: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture(scope="session")
def make_pgbouncer(pg_server_url: str) -> Iterator[Callable[..., PgBouncer]]:
    """Factory: `make_pgbouncer("transaction")` starts a pgbouncer in front of the test server
    (or in front of `server_url=`, e.g. a dead port, to see the bouncer's own errors).

    Its files live in a /tmp folder of their own (pytest's tmp dirs are private to root, and
    pgbouncer runs unprivileged)."""
    import shutil
    import tempfile

    started: list[PgBouncer] = []

    def make(
        pool_mode: str = "transaction",
        *,
        pool_size: int = 2,
        max_client_conn: int = 50,
        server_url: str | None = None,
    ) -> PgBouncer:
        pgbouncer_binary()
        workdir = tempfile.mkdtemp(prefix=f"atb_pgbouncer_{pool_mode}_")
        bouncer = PgBouncer(
            server_url or pg_server_url,
            pool_mode,
            workdir,
            pool_size=pool_size,
            max_client_conn=max_client_conn,
        ).start()
        started.append(bouncer)
        return bouncer

    yield make
    for bouncer in started:
        bouncer.stop()
        shutil.rmtree(bouncer.workdir, ignore_errors=True)
