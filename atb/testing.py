"""pytest fixtures for code that uses atb (registered as the `atb` pytest11 plugin).

- `sqlite_db`: a fresh in-memory SQLite database per test, schema built by the migrations, bound
  to the proxy. Shared-cache, so threads in a test see the same data. For fast logic checks only.
- `pg_server_url`: a PostgreSQL server for the whole run: `TEST_DATABASE_URL` when set (its server
  is used; a scratch database is created there), else the embedded server under `.atb/`.
- `pg_database_url`: a scratch database, migrated to head once per run.
- `pg_db`: that database bound to the proxy for one test; every table is emptied afterwards.
- `make_pg_database`: factory for further empty scratch databases (dropped at the end of the run).
- `make_migrated_pg_database`: the same, each database migrated to head.

Plain functions for tests that drive PostgreSQL by URL: `execute_sql(url, *statements)`,
`migrate_to_head(url)`, `create_scratch_database`, `drop_database`, `url_with_database`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import peewee as pw
import pytest

from atb.db import connection
from atb.db.settings import DatabaseSettings, build_url, parse_url, redact_url


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a real PostgreSQL server")


def _admin_connect(url: str):
    import psycopg2

    parsed = parse_url(url)
    conn = psycopg2.connect(
        **{
            k: v
            for k, v in {
                "host": parsed.host,
                "port": parsed.port,
                "user": parsed.user,
                "password": parsed.password,
                "dbname": parsed.database,
                "connect_timeout": 5,
            }.items()
            if v is not None
        }
    )
    conn.autocommit = True
    return conn


def url_with_database(url: str, name: str) -> str:
    """The same server and credentials, another database."""
    parsed = parse_url(url)
    return build_url(parsed.host, parsed.port, parsed.user, parsed.password, name, parsed.query)


def execute_sql(url: str, *statements: str) -> list[tuple]:
    """Run the statements in order on one autocommit connection to `url` (outside the proxy);
    returns the rows of the last one, `[]` when it returns none."""
    conn = _admin_connect(url)
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
    import psycopg2

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    statement = f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else "")
    for attempt in range(50):
        try:
            execute_sql(server_url, statement)
            break
        except psycopg2.errors.ObjectInUse:
            if attempt == 49:
                raise
            time.sleep(0.1)
    return url_with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    """DROP a scratch database, ending any sessions still attached to it."""
    name = parse_url(database_url).database
    execute_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate_to_head(url: str) -> str:
    """Apply every pending atb migration to the database at `url`; returns the URL."""
    from atb.db.migrate import apply_pending_migrations

    db = connection.build_database(settings_for_tests(url))
    try:
        apply_pending_migrations(db=db)
    finally:
        db.close_all()
    return url


def settings_for_tests(url: str, **overrides) -> DatabaseSettings:
    """Settings for tests: the URL as given, short timeouts so failures show fast."""
    base = DatabaseSettings.from_env(url, env={}, allow_sqlite=url.startswith("sqlite"))
    return replace(base, **{"pool_timeout": 5, "connect_timeout": 3, **overrides})


def bind_sqlite(name: str | None = None) -> pw.SqliteDatabase:
    """Bind a fresh shared-cache in-memory SQLite database and migrate it to head."""
    from atb.db.migrate import apply_pending_migrations

    name = name or f"atb_{uuid.uuid4().hex}"
    db = pw.SqliteDatabase(
        f"file:{name}?mode=memory&cache=shared", uri=True, pragmas={"foreign_keys": 1}
    )
    connection.bind(db)
    db.connect()
    apply_pending_migrations(db=db)
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
    except Exception as exc:  # no wheel, no permission: skip rather than error every test
        pytest.skip(f"no PostgreSQL for integration tests ({exc}); set TEST_DATABASE_URL")
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
    db = connection.connect(settings=settings_for_tests(pg_database_url))
    try:
        yield db
    finally:
        connection.disconnect()
        cleaner = connection.build_database(settings_for_tests(pg_database_url))
        try:
            with cleaner.connection_context():
                truncate_all(cleaner)
        finally:
            cleaner.close_all()
