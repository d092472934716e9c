"""Connection health, pool statistics, transactions and raw queries (`execute_query`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import peewee as pw
from playhouse.pool import PooledDatabase

from .. import connection
from ..errors import DatabaseError
from .sqlscan import check_read_only
from .statements import to_qmark


class ConnectionMixin:
    """Health checks, pool management, transactions and `execute_query` for DatabaseManager."""

    def test_connection(self) -> bool:
        """True when a `SELECT 1` round trip succeeds; never raises."""
        try:
            connection.ping()
        except DatabaseError:
            return False
        return True

    def get_database_info(self) -> dict[str, Any]:
        """Backend, redacted URL, server version and pool figures (no password, ever)."""
        db = connection.bound_database()
        settings = connection.current_settings()
        postgres = connection.is_postgres(db)
        return {
            "backend": "postgresql" if postgres else "sqlite",
            "database_url": settings.redacted_url if settings else None,
            "url_source": settings.source if settings else "bound directly",
            "database_name": db.database,
            "server_version": self._server_version(postgres),
            **self.get_connection_stats(),
        }

    @staticmethod
    def _server_version(postgres: bool) -> str:
        if not postgres:
            return sqlite3.sqlite_version
        sql = "SHOW server_version"
        return connection.run(
            lambda: connection.bound_database().execute_sql(sql).fetchone()[0], transaction=False
        )

    def get_connection_stats(self) -> dict[str, Any]:
        """Pool size and how many connections are checked out or idle right now."""
        db = connection.bound_database()
        if isinstance(db, PooledDatabase):
            return {
                "pool_size": db._max_connections,
                "pool_in_use": len(db._in_use),
                "pool_idle": len(db._connections),
            }
        open_now = 0 if db.is_closed() else 1
        return {"pool_size": 1, "pool_in_use": open_now, "pool_idle": 0}

    def cleanup_connection_pool(self) -> None:
        """Close idle pooled connections; checked-out ones are left alone.

        Not peewee's `close_stale()`: it closes *checked-out* connections, killing another thread's
        open transaction. Over-age connections are retired when they come back to the pool.
        """
        db = connection.bound_database()
        if isinstance(db, PooledDatabase):
            db.close_idle()

    def close(self) -> None:
        """Close every connection. On PostgreSQL the pool reopens on the next call."""
        db = connection.database.obj
        if db is None:
            return
        if isinstance(db, PooledDatabase):
            db.close_all()
        elif not db.is_closed():
            db.close()

    @contextmanager
    def get_session(self) -> Iterator[pw.Database]:
        """Yield the bound database inside one transaction; manager calls made inside join it."""
        db = connection.bound_database()
        with connection.translated_errors():
            opened_here = connection.checkout_alive(db)
            try:
                with db.atomic():
                    yield db
            finally:
                if opened_here and not db.is_closed():
                    db.close()

    def atomic(self) -> Any:
        """The same as `get_session()`: one transaction (a savepoint when already inside one)."""
        return self.get_session()

    def execute_query(
        self, sql: str, params: Sequence[Any] | None = None, *, read_only: bool = True
    ) -> list[dict[str, Any]]:
        """Run raw SQL with `%s` placeholders; rows as dicts. Read-only unless told otherwise.

        As in DB-API's "format" style, `%%` is a literal percent sign when parameters are given;
        without parameters the SQL is sent exactly as written (e.g. `LIKE 'BTC%'`).
        """
        db = connection.bound_database()
        args = tuple(params or ())
        # Refused before anything runs: more than one statement, transaction or session control.
        leaves_state = check_read_only(sql) if read_only else False
        if not connection.is_postgres(db):
            text = to_qmark(sql) if args else sql
            return connection.run(lambda: _sqlite_query(db, text, args, read_only))
        # psycopg2 always %-formats what peewee hands it; escaping keeps parameterless SQL as is.
        text = sql if args else sql.replace("%", "%%")
        nested = db.in_transaction()
        # Read-only calls are dashboard reads: the replica serves them when one is configured.
        return connection.run(
            lambda: _pg_query(
                connection.bound_database(), text, args, read_only, nested, leaves_state
            ),
            transaction=not nested and not read_only,  # read-only: _pg_query's own transaction
            replica=read_only,
        )


def _run_sql(db: pw.Database, sql: str, args: tuple) -> list[dict[str, Any]]:
    try:
        cursor = db.execute_sql(sql, args)
    except (IndexError, TypeError, ValueError) as exc:  # psycopg2's client-side formatting
        raise DatabaseError(f"query parameters do not match its %s placeholders: {exc}") from exc
    return _fetch_dicts(cursor)


def _fetch_dicts(cursor: Any) -> list[dict[str, Any]]:
    if cursor.description is None:
        return []
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _pg_query(
    db: pw.Database, sql: str, args: tuple, read_only: bool, nested: bool, leaves_state: bool
) -> list[dict[str, Any]]:
    if not read_only:
        return _run_sql(db, sql, args)
    if leaves_state and hasattr(db, "discard_on_return"):
        db.discard_on_return()  # e.g. set_config(..., false), advisory locks: not for the pool
    if not nested:
        # Our own transaction, read-only for its whole (short) life and always rolled back: it
        # has nothing to keep, and the rollback also undoes any session setting the query made
        # (`set_config(..., false)` in a function the scanner cannot see, role, DateStyle, ...).
        with db.manual_commit():
            db.begin()
            try:
                db.execute_sql("SET TRANSACTION READ ONLY")
                return _run_sql(db, sql, args)
            finally:
                db.rollback()
    # Inside a caller's transaction the read-only setting lives in a savepoint that is rolled
    # back afterwards, so the caller's transaction keeps its read-write mode.
    with db.savepoint() as savepoint:
        db.execute_sql("SET TRANSACTION READ ONLY")
        rows = _run_sql(db, sql, args)
        savepoint.rollback()
    return rows


def _sqlite_query(db: pw.Database, sql: str, args: tuple, read_only: bool) -> list[dict[str, Any]]:
    try:
        if not read_only:
            return _run_sql(db, sql, args)
        db.execute_sql("PRAGMA query_only = ON")
        try:
            return _run_sql(db, sql, args)
        finally:
            db.execute_sql("PRAGMA query_only = OFF")
    except pw.OperationalError as exc:
        # SQLite reports bad SQL as OperationalError, which would otherwise read as an outage.
        raise DatabaseError(f"query failed: {exc}") from exc
