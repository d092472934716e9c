"""The one DatabaseProxy, what binds it, and how a call survives a server restart.

Every "PostgreSQL or SQLite" decision about connecting lives here. Callers run work through
`run()`: it checks a pooled connection out, runs the work in one transaction, gives the connection
back, maps driver errors onto atb's (`DatabaseUnavailable`, `DuplicateError`), and retries a lost
connection for up to ATB_DB_RETRY_S: always when nothing can have been applied, and after an
unknown outcome only for idempotent work (the manager's writes carry request ids).
"""

from __future__ import annotations

import logging
import os
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar, cast

import peewee as pw
import psycopg2
import psycopg2.extensions as pgext
from playhouse.pool import MaxConnectionsExceeded, PooledDatabase, PooledPostgresqlDatabase

from . import jsoncodec
from .errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailable,
    DuplicateError,
    QueryTimeout,
)
from .settings import DatabaseSettings, redact_url
from .sqlalchemy_hints import HintedSqliteDatabase, SqlAlchemyHints

log = logging.getLogger("atb.db")
_peewee_log = logging.getLogger("peewee")  # where peewee logs every query (at DEBUG)


class RoutingProxy(pw.DatabaseProxy):
    """Peewee's DatabaseProxy, except that a thread serving a dashboard read sees the replica.

    `obj` is the primary for everyone, unless the calling thread is inside `routed_to(replica)`:
    the models, `bound_database()` and every query built from them then use the replica, with no
    change to the code that runs the read.
    """

    __slots__ = ("_primary", "_route")
    _ATTRIBUTES = frozenset({"obj", "_callbacks", "_Model", "_primary", "_route"})

    def __init__(self) -> None:
        object.__setattr__(self, "_route", threading.local())
        super().__init__()

    @property  # type: ignore[override]
    def obj(self) -> pw.Database | None:
        routed = getattr(self._route, "db", None)
        return self._primary if routed is None else routed

    @obj.setter
    def obj(self, value: pw.Database | None) -> None:
        object.__setattr__(self, "_primary", value)

    @property
    def primary(self) -> pw.Database | None:
        """What `connect()` bound, whatever the calling thread is routed to."""
        return self._primary

    def __setattr__(self, attr: str, value: object) -> None:
        if attr not in self._ATTRIBUTES:
            raise AttributeError("Cannot set attribute on proxy.")
        object.__setattr__(self, attr, value)

    @contextmanager
    def routed_to(self, db: pw.Database) -> Iterator[None]:
        """Within the block, this thread's queries go to `db` (a read replica)."""
        previous = getattr(self._route, "db", None)
        self._route.db = db
        try:
            yield
        finally:
            self._route.db = previous


database = RoutingProxy()
"""Every model is bound to this proxy; `connect()` points it at a real database."""

T = TypeVar("T")
_state = threading.Lock()
_settings: DatabaseSettings | None = None
_replica = None  # atb.db.replica.ReadReplica when DATABASE_REPLICA_URL is set


# ---- client-side time bound ---------------------------------------------------------------------
# statement_timeout is enforced by the server, so a frozen server (or a dead network path, or a
# stuck PgBouncer) never answers it. Each round trip atb makes is registered with a watchdog
# thread; when its deadline passes, the watchdog shuts the socket down, the blocked libpq call
# returns at once with an error, and the pool replaces the connection. Unlike a psycopg2 wait
# callback (process-wide, and it forbids COPY) this touches only atb's own connections.

_UNSET = object()
_deadline = threading.local()
_default_call_timeout = 15.0
_exception_wrapper = pw.__exception_wrapper__  # type: ignore[attr-defined]  # not in the stubs
_TIMED_OUT = (
    "the server did not answer within the call time bound (ATB_DB_CALL_TIMEOUT_S); "
    "server frozen or network down?"
)


# The context managers on every call's path are small classes, not @contextmanager generators:
# a generator-based one costs about 1 µs more per use, and a single-row write passes four.


class call_deadline:  # noqa: N801 - used like the function it replaced: `with call_deadline(s):`
    """Every server round trip in the block must finish within `seconds` from now (None: unbounded,
    for migrations that may legitimately run long)."""

    __slots__ = ("_seconds", "_previous")

    def __init__(self, seconds: float | None):
        self._seconds = seconds

    def __enter__(self) -> None:
        self._previous = getattr(_deadline, "at", _UNSET)
        _deadline.at = None if self._seconds is None else time.monotonic() + self._seconds

    def __exit__(self, *exc_info: object) -> None:
        _deadline.at = self._previous


def _current_deadline() -> float | None:
    at = getattr(_deadline, "at", _UNSET)
    return time.monotonic() + _default_call_timeout if at is _UNSET else cast("float | None", at)


_IDLE_WAKE_S = 1.0  # the watchdog looks by itself at least this often


class _Watchdog:
    """One daemon thread that shuts down the socket of a round trip that outlived its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watched: dict[int, tuple[float, int]] = {}  # token -> (deadline, socket fd)
        self._fired: set[int] = set()
        self._tokens = 0
        self._thread: threading.Thread | None = None
        # When the thread next wakes by itself (0.0: only when told). A round trip due later
        # needs no notify: waking the thread on every round trip cost more CPU than the rest of
        # a single-row write.
        self._wakes_at = 0.0

    def guard(self, conn) -> _Guarded:
        """The block's round trip on `conn` is shut down if it outlives the call's deadline."""
        return _Guarded(self, conn)

    def _watch(self, conn) -> int | None:
        at = _current_deadline()
        if at is None or conn is None or conn.closed:
            return None
        with self._cond:
            self._tokens += 1
            token = self._tokens
            self._watched[token] = (at, conn.fileno())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="atb-db-watchdog", daemon=True
                )
                self._thread.start()
            if not self._wakes_at or at < self._wakes_at:
                self._cond.notify()
        return token

    def _unwatch(self, token: int, exc: BaseException | None) -> None:
        """Stop watching; a driver error on a socket the watchdog shut down says so."""
        with self._cond:
            self._watched.pop(token, None)
            fired = token in self._fired
            self._fired.discard(token)
        if fired and isinstance(exc, (psycopg2.Error, pw.DatabaseError, pw.InterfaceError)):
            # wrapped as Peewee wraps driver errors, so the usual mapping applies
            raise pw.OperationalError(psycopg2.OperationalError(_TIMED_OUT)) from exc

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (at, fd) in list(self._watched.items()):
                    if at <= now:
                        del self._watched[token]
                        self._fired.add(token)
                        _shut_down(fd)
                soonest = min((at for at, _ in self._watched.values()), default=None)
                idle_wake = now + _IDLE_WAKE_S
                self._wakes_at = idle_wake if soonest is None else min(soonest, idle_wake)
                self._cond.wait(max(0.0, self._wakes_at - now))


class _Guarded:
    """`_Watchdog.guard`'s context manager (a class: it wraps every round trip)."""

    __slots__ = ("_watchdog", "_conn", "_token")

    def __init__(self, watchdog: _Watchdog, conn: Any):
        self._watchdog, self._conn = watchdog, conn

    def __enter__(self) -> None:
        self._token = self._watchdog._watch(self._conn)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> Literal[False]:  # fmt: skip
        if self._token is not None:
            self._watchdog._unwatch(self._token, exc)
        return False


def _shut_down(fd: int) -> None:
    """Make a blocked recv/send on this socket return now; the connection is then unusable."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


_watchdog = _Watchdog()


def install_call_bound(seconds: float) -> None:
    """The default bound of one round trip made outside `run()` (inside it, the call's deadline)."""
    global _default_call_timeout
    _default_call_timeout = float(seconds)


_NON_TRANSACTIONAL = re.compile(
    r"\s*(VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+DATABASE|ALTER\s+SYSTEM|CLUSTER|"
    r"REINDEX|BEGIN|START|COMMIT|ROLLBACK|END|ABORT|SAVEPOINT|RELEASE|PREPARE|CHECKPOINT|DISCARD|"
    r"(CREATE|DROP)\s+TABLESPACE|(CREATE\s+(UNIQUE\s+)?|DROP\s+)INDEX\s+CONCURRENTLY)\b",
    re.IGNORECASE,
)
"""Statements that cannot run inside the implicit transaction a `SET LOCAL` prefix would open
(or that manage transactions themselves): sent as they are. Judged by their leading keywords
only, so a query that merely mentions e.g. TABLESPACE in a string keeps its timeouts."""


_JSONB = pgext.new_type(
    (3802,), "ATB_JSONB", lambda value, _cursor: None if value is None else jsoncodec.loads(value)
)


class AtbPooledPostgresqlDatabase(SqlAlchemyHints, PooledPostgresqlDatabase):
    """Peewee's pool, without peewee's `SELECT 1` ping on checkout (unless `ping_after` asks
    for one after that many idle seconds).

    Peewee (4.3+) sends `SELECT 1` on every checkout: a round trip per call for a bot that logs
    once a minute. A connection that died while idle fails its first statement instead, before
    any commit, and `run()` discards it and retries the work once on a fresh connection; the
    caller-driven transactions of `get_session()` check theirs out through `checkout_alive`.

    The timeouts go with every transaction as `SET LOCAL` in the same query string as its BEGIN
    (or its single autocommit statement): no extra round trip, and no session state left on a
    server connection a PgBouncer hands to another client.

    BEGIN itself waits for the transaction's first statement and goes out in the same query
    string: a transaction costs its statements and its COMMIT, not one round trip more, and one
    that sent nothing skips its COMMIT or ROLLBACK as well.
    """

    def __init__(self, *args, ping_after: float | None = None, transaction_sql: str = "", **kwargs):
        self._ping_after = ping_after
        self._returned_at: dict[int, float] = {}
        self._transaction_sql = transaction_sql
        self._waiters: deque[threading.Condition] = deque()
        self._not_reusable: set[int] = set()
        self._reserved = 0
        # conn_key -> the BEGIN (and SET LOCAL) its transaction's first statement will carry
        self._begin_pending: dict[int, str] = {}
        super().__init__(*args, **kwargs)

    def connect(self, reuse_if_open=False):
        """Check out a connection, queueing first-come first-served for a free slot.

        Peewee's loop lets a newcomer take the connection a woken waiter was notified for, so
        under contention most attempts fail and retry. Here a caller passes only when a slot is
        free and nobody queued before it; the slot stays reserved until its checkout is done.
        Each waiter sleeps on its own condition and only the head of the queue is woken when a
        slot frees up: no herd of waiters waking to find they are not first.
        """
        if not self.is_closed() or not self._max_connections:
            return super().connect(reuse_if_open)
        with self._pool_lock:
            if self._waiters or not self._slot_free():
                self._wait_for_slot()
            self._reserved += 1
        try:
            return super(PooledDatabase, self).connect(reuse_if_open)  # skip peewee's retry loop
        finally:
            with self._pool_lock:
                self._reserved -= 1
                self._wake_first_waiter()

    def _slot_free(self) -> bool:
        return len(self._in_use) + self._reserved < self._max_connections

    def _wait_for_slot(self) -> None:
        """Queue until first in line with a free slot (the pool lock is held), or time out."""
        deadline = time.monotonic() + (self._wait_timeout or float("inf"))
        turn = threading.Condition(self._pool_lock)
        self._waiters.append(turn)
        try:
            while self._waiters[0] is not turn or not self._slot_free():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MaxConnectionsExceeded(
                        "Max connections exceeded, timed out attempting to connect."
                    )
                turn.wait(remaining)
        finally:
            self._waiters.remove(turn)
            self._wake_first_waiter()  # the next in line may have a free slot too

    def _wake_first_waiter(self) -> None:
        """Wake the head of the queue when a slot is free (call with the pool lock held)."""
        if self._waiters and self._slot_free():
            self._waiters[0].notify()

    def _release_slots(self) -> None:
        with self._pool_lock:
            self._wake_first_waiter()

    def _connect(self):
        conn = super()._connect()
        # jsonb numbers come back exactly (a Decimal where a float would round), as on SQLite.
        pgext.register_type(_JSONB, conn)
        return conn

    def begin(self, isolation_level=None):
        if isolation_level is None:
            isolation_level = self._isolation_level
        stmt = "BEGIN"
        if isolation_level:
            stmt += " ISOLATION LEVEL " + self._adapter.isolation_level_str(isolation_level)
        conn = self._thread_connection()
        self._begin_pending[self.conn_key(conn)] = f"{stmt}; {self._transaction_sql}"

    def cursor(self, named_cursor=None):
        """A cursor for direct use inside a transaction gets the transaction's BEGIN sent first
        (atb's own statements carry it in their query string instead)."""
        cursor = super().cursor(named_cursor)
        self._send_pending_begin(self._state.conn)
        return cursor

    def _send_pending_begin(self, conn: Any) -> None:
        """Send the BEGIN still waiting on `conn` in a round trip of its own (for what cannot
        carry it in its query string: a caller's own cursor, COPY)."""
        pending = self._take_pending_begin(conn)
        if pending is not None:
            with _exception_wrapper, _watchdog.guard(conn):
                conn.cursor().execute(pending)

    def _take_pending_begin(self, conn: Any) -> str | None:
        """The BEGIN not sent yet on `conn` (it is sent with what the caller sends next)."""
        if not self._begin_pending or conn is None:
            return None
        return self._begin_pending.pop(self.conn_key(conn), None)

    def copy_from(self, sql: str, source: Any, conn: Any = None) -> None:
        """Run `COPY ... FROM STDIN` reading the file-like `source`: one round trip under the
        call time bound, its errors mapped as every statement's (run it in a transaction, so
        the timeouts set at BEGIN apply). `conn`: another thread's connection, for a helper
        thread that copies while its owner does not use it (atb/db/manage/bulk.py)."""
        conn = conn if conn is not None else self._thread_connection()
        self._send_pending_begin(conn)  # COPY goes alone: libpq stops a query string at COPY
        with _exception_wrapper, _watchdog.guard(conn):
            conn.cursor().copy_expert(sql, source)

    def execute_sql(self, sql, params=None):
        conn = self._thread_connection()
        pending = self._take_pending_begin(conn)
        if pending is not None:
            sql = pending + sql
        elif self._transaction_sql and not self.in_transaction():
            if not _NON_TRANSACTIONAL.match(sql) and self._txn_idle():
                sql = self._transaction_sql + sql
        with _watchdog.guard(conn):
            return super().execute_sql(sql, params)

    def commit(self):
        if self._take_pending_begin(self._state.conn) is not None:
            return None  # nothing was sent: no transaction is open on the server
        with _watchdog.guard(self._thread_connection()):
            return super().commit()

    def rollback(self):
        if self._take_pending_begin(self._state.conn) is not None:
            return None
        with _watchdog.guard(self._thread_connection()):
            return super().rollback()

    def _thread_connection(self):
        """This thread's connection, opening it first (the connect has libpq's own timeout)."""
        if self.is_closed():
            self.connect()
        return self._state.conn

    def _unprefixed(self, sql):
        prefix = self._transaction_sql
        if prefix and isinstance(sql, str):
            if sql.startswith(prefix):
                return sql[len(prefix) :]
            if sql.startswith("BEGIN") and (end := sql.find(prefix, 0, 64 + len(prefix))) > 0:
                return sql[end + len(prefix) :]  # a transaction's first statement
        return sql

    def _log_query(self, sql, params=None):
        # Logs and query hooks show the caller's statement, not the SET LOCAL prefix.
        if _peewee_log.isEnabledFor(logging.DEBUG):
            super()._log_query(self._unprefixed(sql), params)

    def _notify_hooks(self, sql, params, *args, **kwargs):
        return super()._notify_hooks(self._unprefixed(sql), params, *args, **kwargs)

    def _txn_idle(self) -> bool:
        """True when no transaction is open on the thread's connection (a raw BEGIN counts)."""
        if self.is_closed():
            return True
        return self._state.conn.get_transaction_status() == pgext.TRANSACTION_STATUS_IDLE

    def _is_closed(self, conn) -> bool:
        if conn.closed or died_while_idle(conn):
            return True
        returned = self._returned_at.get(self.conn_key(conn))
        if self._ping_after is None or (
            returned is not None and time.monotonic() - returned < self._ping_after
        ):
            return self._adapter.txn_status(conn) == self._adapter.txn_unknown
        with _watchdog.guard(conn):
            return super()._is_closed(conn)

    def _close(self, conn, close_conn=False):
        self._begin_pending.pop(self.conn_key(conn), None)
        self._returned_at[self.conn_key(conn)] = time.monotonic()
        try:
            return super()._close(conn, close_conn)
        finally:
            # Also after a discarded (manual_close) connection, which peewee does not signal.
            self._release_slots()

    def close_all(self):
        super().close_all()
        self._release_slots()

    def close_stale(self, age=600):
        closed = super().close_stale(age)
        self._release_slots()
        return closed

    def dispose(self):
        super().dispose()
        self._release_slots()

    def _close_raw(self, conn):
        self._begin_pending.pop(self.conn_key(conn), None)
        self._returned_at.pop(self.conn_key(conn), None)
        self._not_reusable.discard(self.conn_key(conn))
        return super()._close_raw(conn)

    def _can_reuse(self, conn) -> bool:
        return self.conn_key(conn) not in self._not_reusable and super()._can_reuse(conn)

    def discard_on_return(self) -> None:
        """Close the calling thread's connection when it is returned instead of pooling it
        (its session may carry state: settings, advisory locks, prepared statements)."""
        if not self.is_closed():
            self._not_reusable.add(self.conn_key(self.connection()))


def died_while_idle(conn: Any) -> bool:
    """True when an idle connection's socket has something to read: nothing was asked, so it is
    the server's goodbye (FATAL on shutdown or pg_terminate_backend) or the end of the stream.
    A zero-timeout poll, no round trip: such a connection is replaced before anything is sent on
    it, so even work that is not safe to repeat survives a restart between two calls."""
    try:
        if conn.get_transaction_status() != pgext.TRANSACTION_STATUS_IDLE:
            return False
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg2.Error):
        return True
    return bool(readable)


def is_postgres(db: pw.Database | None = None) -> bool:
    """True when the proxy (or `db`) is bound to PostgreSQL."""
    target = db if db is not None else database.obj
    return isinstance(target, pw.PostgresqlDatabase)


def current_settings() -> DatabaseSettings | None:
    """The settings the proxy was last bound with (None when bound directly by a test)."""
    return _settings


def bound_database() -> pw.Database:
    """The database behind the proxy; a clear error if nothing was bound yet."""
    if database.obj is None:
        raise ConfigurationError(
            "no database bound: call atb.db.connect() or create a DatabaseManager"
        )
    return database.obj


def build_database(settings: DatabaseSettings) -> pw.Database:
    """Create (but do not open) the Peewee database object the settings describe."""
    parsed = settings.parsed()
    if parsed.is_sqlite:
        if not settings.allow_sqlite:
            raise ConfigurationError(
                "SQLite is for unit tests only; set DATABASE_URL to a postgresql:// URL"
            )
        name = parsed.database
        uri = name.startswith("file:")
        return HintedSqliteDatabase(
            name,
            uri=uri,
            pragmas={"foreign_keys": 1, "journal_mode": "wal"}
            if name not in (":memory:",) and not uri
            else {"foreign_keys": 1},
        )
    params = settings.connect_params()
    name = params.pop("database")
    install_call_bound(settings.call_timeout_s)
    return AtbPooledPostgresqlDatabase(
        name,
        transaction_sql=settings.transaction_settings_sql(),
        max_connections=settings.pool_size,
        stale_timeout=settings.pool_max_age or None,
        timeout=settings.pool_timeout,
        autoconnect=True,
        **params,
    )


def connect(
    url: str | None = None,
    *,
    allow_sqlite: bool = False,
    settings: DatabaseSettings | None = None,
    replace: bool = False,
) -> pw.Database:
    """Resolve settings (see api.md), bind the proxy, and return the bound database.

    Does not open a connection: the pool opens them on first use. With no URL in development the
    running local embedded PostgreSQL is used; a stopped one stays stopped (`atb db up` starts it).

    The models share one binding per process. Connecting again to the same URL returns the
    database already bound (its pool and settings are kept); another URL raises
    ConfigurationError unless `replace=True`, which closes the old pool, after which managers
    built on it refuse to run.
    """
    global _settings, _replica
    settings = settings or DatabaseSettings.from_env(url, allow_sqlite=allow_sqlite)
    if settings.uses_local_server:
        from . import local

        server = local.running()
        settings = settings.with_url(server.url, "local embedded PostgreSQL")
    with _state:
        current = _bound_with(settings, replace)
        if current is not None:
            return current
    db = build_database(settings)  # builds objects only: nothing connects yet
    replica = None
    if settings.replica_url:
        from .replica import ReadReplica

        replica = ReadReplica(build_database(settings.replica_settings()), settings)
    with _state:
        current = _bound_with(settings, replace)  # another thread may have bound meanwhile
        if current is not None:
            return current
        _unbind_locked()
        database.initialize(db)
        _settings = settings
        _replica = replica
    log.debug("bound database %s (%s)", settings.redacted_url, settings.source)
    return db


def _bound_with(settings: DatabaseSettings, replace: bool) -> pw.Database | None:
    """The database already bound with these settings, None when free to bind; else an error."""
    current = database.primary
    if current is None:
        return None
    if _settings is not None and _settings.same_target(settings):
        return current
    if replace:
        return None
    raise _already_bound(settings.redacted_url)


def bind(db: pw.Database, *, replace: bool = False) -> pw.Database:
    """Bind an already-built database (tests, embedding apps).

    Binding the database already bound is a no-op; another one raises ConfigurationError unless
    `replace=True` (see `connect()`).
    """
    global _settings
    with _state:
        current = database.primary
        if current is db:
            return db
        if current is not None and not replace:
            raise _already_bound(repr(db.database))
        _unbind_locked(close=False)
        database.initialize(db)
        _settings = None
    return db


def replica_health():
    """The read replica's health measured now (atb.db.replica.ReplicaHealth); None when no
    DATABASE_REPLICA_URL is configured."""
    replica = _replica
    if replica is None:
        return None
    with call_deadline(_settings.call_timeout_s if _settings else _default_call_timeout):
        return replica.health(fresh=True)


def _already_bound(wanted: str) -> ConfigurationError:
    return ConfigurationError(
        f"this process is already bound to {_describe_target()}; atb's models share one database "
        f"per process, so binding {wanted} as well would silently move the first manager's writes. "
        "Use one DatabaseManager per process, call atb.db.disconnect() first, or pass "
        "replace=True to rebind (managers built on the old database then refuse to run)"
    )


def disconnect() -> None:
    """Close every pooled connection and unbind the proxy."""
    with _state:
        _unbind_locked()


def _unbind_locked(*, close: bool = True) -> None:
    global _settings, _replica
    if close and database.primary is not None:
        _close_quietly(database.primary)
    if _replica is not None:
        _close_quietly(_replica.db)
    database.initialize(None)
    _settings = None
    _replica = None


def _close_quietly(db: pw.Database) -> None:
    try:
        if isinstance(db, PooledPostgresqlDatabase):
            db.close_all()
        elif not db.is_closed():
            db.close()
    except Exception:  # closing a dead connection must not mask the caller's real error
        log.debug("error while closing %r", db, exc_info=True)


def _describe_target() -> str:
    if _settings is not None and _settings.url:
        return redact_url(_settings.url)
    return "the database"


def _connection_is_dead(db: pw.Database) -> bool:
    if not is_postgres(db) or db.is_closed():
        return True
    try:
        return bool(db.connection().closed)
    except Exception:
        return True


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """A one-line DatabaseUnavailable for a driver error, password redacted.

    When the server (or a PgBouncer in front of it) answered with an error, that message is the
    diagnosis: "is the server up" would send the reader to the wrong place.
    """
    message = _first_line(exc)
    answered = _SERVER_SAID.search(message)
    if answered:
        return DatabaseUnavailable(
            f"{_describe_target()} refused the connection: {message[answered.start() :]}"
        )
    if "timeout expired" in message:
        waited = f" ({_settings.connect_timeout} s, ATB_DB_CONNECT_TIMEOUT)" if _settings else ""
        return DatabaseUnavailable(
            f"cannot reach {_describe_target()}: no answer to the connection within the connect "
            f"timeout{waited}: the server or the network is down, or a PgBouncer in front of it "
            "is holding the login while it cannot get a server connection (after a failed "
            "server login it waits server_login_retry; its log says why)"
        )
    return DatabaseUnavailable(
        f"cannot reach {_describe_target()}: {message} "
        "(is the server up, and is DATABASE_URL right?)"
    )


# libpq prefixes what the server (or PgBouncer) sent with its severity.
_SERVER_SAID = re.compile(r"\b(FATAL|ERROR):\s")


# SQLSTATEs the server sends when it cannot serve us (class 08: connection exceptions; shutdown,
# starting up, too many connections). Anything else with a SQLSTATE is an error in the request.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def _first_line(exc: BaseException) -> str:
    # Redact before cutting: a password may span lines, and half of it would escape the mask.
    text = redact_url(str(exc).strip())
    return text.splitlines()[0] if text else type(exc).__name__


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind Peewee's wrappers (which may be nested, e.g. the pool)."""
    seen = 0
    while isinstance(exc, pw.PeeweeException) and seen < 10:
        inner = (
            exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc.__context__
        )
        if inner is None:
            break
        exc, seen = inner, seen + 1
    return exc


def _is_connection_failure(exc: BaseException) -> bool:
    """True when the error means the server is unreachable, not that the request was wrong."""
    orig = _driver_error(exc)
    pgcode = getattr(orig, "pgcode", None)
    if pgcode:
        return pgcode.startswith("08") or pgcode in _UNAVAILABLE_SQLSTATES
    module = type(orig).__module__ or ""
    if module.startswith("psycopg2"):
        return True  # no SQLSTATE: the client lost or never had a connection
    text = str(orig).lower()
    return "unable to open database" in text or "disk i/o error" in text


def _timeout_error(exc: BaseException) -> QueryTimeout | None:
    """QueryTimeout for a statement/lock timeout, naming the limit so the caller knows what to raise."""
    orig = _driver_error(exc)
    pgcode = getattr(orig, "pgcode", None)
    text = _first_line(exc)
    if pgcode == "57014" and "statement timeout" in text:
        limit = f"{_settings.statement_timeout_ms} ms" if _settings else "the server's limit"
        return QueryTimeout(f"{text} (statement_timeout: {limit}, ATB_DB_STATEMENT_TIMEOUT_MS)")
    if pgcode == "55P03":
        limit = f"{_settings.lock_timeout_ms} ms" if _settings else "the server's limit"
        return QueryTimeout(f"{text} (lock_timeout: {limit}, ATB_DB_LOCK_TIMEOUT_MS)")
    return None


def translate(exc: BaseException) -> BaseException:
    """Map a Peewee/driver error onto atb's error types (the caller re-raises the result)."""
    if isinstance(exc, MaxConnectionsExceeded):
        seconds = _settings.pool_timeout if _settings else "the pool"
        return DatabaseUnavailable(
            f"no pooled connection to {_describe_target()} became free within {seconds}s "
            "(raise ATB_DB_POOL_SIZE or find the code holding connections)"
        )
    if isinstance(exc, pw.IntegrityError):
        message = _first_line(exc)
        if "unique" in message.lower() or "duplicate" in message.lower():
            return DuplicateError(message)
        return DatabaseError(f"integrity error: {message}")
    if isinstance(exc, (pw.OperationalError, pw.InterfaceError)):
        if _is_connection_failure(exc):
            return unavailable(exc)
        timeout = _timeout_error(exc)
        if timeout is not None:
            return timeout
        return DatabaseError(_first_line(exc))
    if isinstance(exc, pw.PeeweeException):
        return DatabaseError(_first_line(exc) if str(exc).strip() else redact_url(repr(exc)))
    return exc


class _TranslatedErrors:
    """Raise atb errors instead of driver errors for the enclosed block (stateless: one
    instance serves every block, nested ones included)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> Literal[False]:  # fmt: skip
        if isinstance(exc, DatabaseError) or not isinstance(
            exc, (pw.PeeweeException, MaxConnectionsExceeded)
        ):
            return False
        raise translate(exc) from exc


_TRANSLATED_ERRORS = _TranslatedErrors()


def translated_errors() -> _TranslatedErrors:
    """Raise atb errors instead of driver errors for the enclosed block."""
    return _TRANSLATED_ERRORS


def run(
    work: Callable[[], T],
    *,
    transaction: bool = True,
    replica: bool = False,
    idempotent: bool = False,
    retry: bool = True,
) -> T:
    """Run `work` on a pooled connection (see `_run`), each attempt within the call time bound
    (ATB_DB_CALL_TIMEOUT_S) unless the caller set one.

    `replica=True` marks a dashboard read that a configured read replica may serve.
    `idempotent=True` says running `work` twice has the effect of running it once (an insert
    keyed by its request id, an UPDATE setting absolute values, a read): only then is it retried
    after a failure that may have come after the server applied it. `retry=False` for work that
    cannot be run twice at all (it reads a one-shot iterator): a lost connection is reported.
    """
    if replica and _replica is not None:
        return _replica.read(work, transaction=transaction)
    return _run(work, transaction=transaction, idempotent=idempotent, retry=retry)


_retry = threading.local()
_FIRST_PAUSE_S, _LONGEST_PAUSE_S = 0.05, 1.0


def retrying() -> bool:
    """True while `run()` repeats work whose earlier attempt may have been applied (the
    connection died while the statement or its commit was in flight). Work whose repeat reports
    "nothing to do" (closing a closed position, say) can then check whether it did it itself."""
    return bool(getattr(_retry, "unknown", False))


def _retry_budget_s() -> float:
    return float(_settings.retry_s) if _settings is not None else 5.0


class _Attempt:
    """How far one attempt got: what a failure may have left applied on the server."""

    __slots__ = ("sent", "committing")

    def __init__(self) -> None:
        self.sent = False  # a statement may have reached the server
        self.committing = False  # the COMMIT was sent

    def maybe_applied(self, transaction: bool) -> bool:
        # A transaction that died before its COMMIT was rolled back by the server; a single
        # statement in autocommit, or a COMMIT in flight, may have been applied.
        return self.committing or (self.sent and not transaction)


def _run(
    work: Callable[[], T], *, transaction: bool = True, idempotent: bool = False, retry: bool = True
) -> T:
    """Run `work` on a pooled connection, in one transaction unless told otherwise.

    Inside a caller's transaction it simply joins it (no retry can cover someone else's
    transaction). Outside one, when the connection is lost (server restart, failover, a dead
    pooled connection) the work is retried on a fresh connection, with growing pauses, for up
    to ATB_DB_RETRY_S seconds from the call's start; DatabaseUnavailable reaches the caller
    only after that. A failure that may have come after the server applied the work (during a
    single statement or its COMMIT) is retried only when `idempotent`. A call that ran out of
    its time bound (frozen server) is not retried: the caller asked for an answer within it.
    """
    db = bound_database()
    bounded = getattr(_deadline, "at", _UNSET) is not _UNSET
    if db.in_transaction():
        with _attempt_bound(bounded), translated_errors():
            if transaction:
                with db.atomic():
                    return work()
            return work()
    started = time.monotonic()
    gives_up = started + (_retry_budget_s() if retry else 0.0)
    pause, attempts, outermost = _FIRST_PAUSE_S, 0, not retrying()
    try:
        while True:
            attempts += 1
            attempt = _Attempt()
            try:
                with _attempt_bound(bounded):
                    result = _attempt_once(db, work, transaction, attempt)
            except DatabaseUnavailable as exc:
                may_repeat = idempotent or not attempt.maybe_applied(transaction)
                left = gives_up - time.monotonic()
                if not (may_repeat and left > 0 and _lost_connection(exc, db)):
                    if attempts > 1:
                        raise _gave_up(exc, attempts, time.monotonic() - started) from exc.__cause__
                    raise
                if attempt.maybe_applied(transaction):
                    _retry.unknown = True
                if attempts == 1:
                    log.warning(
                        "connection to %s was lost; retrying for up to %.0f s (ATB_DB_RETRY_S)",
                        _describe_target(),
                        gives_up - started,
                    )
                time.sleep(min(pause, left))
                pause = min(pause * 2, _LONGEST_PAUSE_S)
                continue
            if attempts > 1:
                log.info(
                    "reconnected to %s after %d attempts (%.1f s)",
                    _describe_target(),
                    attempts,
                    time.monotonic() - started,
                )
            return result
    finally:
        if outermost:
            _retry.unknown = False


class _attempt_bound:  # noqa: N801 - a context manager used like a function
    """Each attempt gets the call time bound, unless the caller set a deadline for the whole call."""

    __slots__ = ("_bounded", "_previous")

    def __init__(self, bounded: bool):
        self._bounded = bounded

    def __enter__(self) -> None:
        if self._bounded:
            self._previous = getattr(_deadline, "caller_set", False)
            _deadline.caller_set = True
        else:
            self._previous = getattr(_deadline, "at", _UNSET)
            seconds = _settings.call_timeout_s if _settings else _default_call_timeout
            _deadline.at = time.monotonic() + seconds

    def __exit__(self, *exc_info: object) -> None:
        if self._bounded:
            _deadline.caller_set = self._previous
        else:
            _deadline.at = self._previous


def renew_call_bound() -> None:
    """For streaming work (each chunk of a long bulk insert): the call time bound counts again
    from now, for the round trips that follow (the COMMIT included), so a stream is not cut off
    for its total length, only a round trip that stalls is. Only inside `run()`'s attempt; a
    deadline the caller set for the whole call stands."""
    if getattr(_deadline, "caller_set", False) or getattr(_deadline, "at", _UNSET) is _UNSET:
        return
    _deadline.at = time.monotonic() + (
        _settings.call_timeout_s if _settings else _default_call_timeout
    )


def _attempt_once(
    db: pw.Database, work: Callable[[], T], transaction: bool, attempt: _Attempt
) -> T:
    # Pooled connections go back to the pool after each call; SQLite keeps its one connection
    # (closing an in-memory database would destroy it).
    postgres = is_postgres(db)
    if postgres and not db.is_closed() and died_while_idle(db.connection()):
        _discard_dead_connection(db, dead=True)  # the thread's own connection died meanwhile
    opened_here = postgres and db.is_closed()
    with translated_errors():
        if opened_here:
            db.connect()
        attempt.sent = True
        try:
            if not transaction:
                return work()
            with db.atomic():
                result = work()
                attempt.committing = True
            return result
        finally:
            if opened_here and not db.is_closed():
                db.close()


def _lost_connection(exc: DatabaseUnavailable, db: pw.Database) -> bool:
    """True when `exc` is a lost or refused connection that a fresh one may cure (the thread's
    dead connection is dropped), not a timeout, a full pool or a refused login."""
    cause = exc.__cause__
    if not isinstance(cause, (pw.OperationalError, pw.InterfaceError)):
        return False  # e.g. the pool is exhausted: waiting longer is the pool timeout's job
    text = str(_driver_error(cause))
    if _TIMED_OUT in text or _REFUSED_LOGIN.search(text):
        return False
    return _discard_dead_connection(db)


# A server that answered the login with an error that waiting will not cure.
_REFUSED_LOGIN = re.compile(
    r"password authentication failed|no pg_hba\.conf entry|does not exist|"
    r"permission denied|too many connections for role",
    re.IGNORECASE,
)


def _gave_up(exc: DatabaseUnavailable, attempts: int, elapsed: float) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"{exc} (gave up after {attempts} attempts in {elapsed:.1f} s; ATB_DB_RETRY_S sets how "
        "long a lost connection is retried)"
    )


@contextmanager
def borrowed(db: pw.Database | None = None) -> Iterator[pw.Database]:
    """Give the block the thread's connection and return it to the pool afterwards if the block
    opened it: with autoconnect a bare query would otherwise keep it checked out for good."""
    db = db if db is not None else bound_database()
    opened_here = is_postgres(db) and db.is_closed()
    try:
        yield db
    finally:
        if opened_here and not db.is_closed():
            db.close()


def checkout_alive(db: pw.Database) -> bool:
    """Check a live connection out for a caller-driven transaction (no retry can cover it).

    A connection the thread already holds (outside a transaction) that died is dropped first, and
    a pooled one that fails a `SELECT 1` is replaced once. True when this call opened it.
    """
    if not is_postgres(db) or db.in_transaction():
        return False
    if not db.is_closed() and _connection_is_dead(db):
        _discard_dead_connection(db)
    if not db.is_closed():
        return False
    db.connect()
    try:
        db.execute_sql("SELECT 1")
    except (pw.OperationalError, pw.InterfaceError) as exc:
        if not _is_connection_failure(exc) or not _discard_dead_connection(db):
            raise
        if not db.is_closed():
            db.close()
        db.connect()
    return True


def _discard_dead_connection(db: pw.Database, *, dead: bool = False) -> bool:
    """Drop the calling thread's dead connection (`dead`: known to be); True when a retry
    makes sense."""
    if not is_postgres(db):
        return False
    if db.is_closed():
        return True  # failed while connecting: nothing was sent
    if not dead and not _connection_is_dead(db):
        return False
    try:
        db.manual_close()  # type: ignore[attr-defined]  # a pool method
    except Exception:
        log.debug("manual_close failed", exc_info=True)
    return True


def ping(timeout_ms: int = 5000) -> float:
    """Round-trip `SELECT 1`; returns the latency in milliseconds or raises DatabaseUnavailable."""
    started = time.perf_counter()
    run(lambda: bound_database().execute_sql("SELECT 1").fetchone(), transaction=False)
    return (time.perf_counter() - started) * 1000.0
