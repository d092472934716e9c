"""Apply and report peewee-migrate migrations: the schema's only source of truth.

`apply_pending_migrations()` runs in one transaction holding a transaction-scoped advisory lock
(`pg_advisory_xact_lock`), so two processes starting at once do not race: one applies, the other
waits, then finds nothing left to do. Transaction-scoped because a session lock outlives the client
under PgBouncer's transaction pooling (the unlock lands on another server connection); the commit
or rollback releases it wherever the transaction ran, and the history table appears only together
with the migrations it records.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import peewee as pw

from .connection import (
    _driver_error,
    borrowed,
    bound_database,
    call_deadline,
    is_postgres,
    translated_errors,
)
from .errors import MigrationError

if TYPE_CHECKING:
    from peewee_migrate import Router

log = logging.getLogger("atb.db.migrate")
# peewee-migrate logs a failed migration's whole traceback itself; with no logging configured
# Python would print it to stderr before our one-line MigrationError. Its records stay here.
_router_log = logging.getLogger("atb.db.migrate.router")
_router_log.propagate = False
_router_log.addHandler(logging.NullHandler())

# An arbitrary, fixed 64-bit key: "atb-migrate" as bytes, so other apps' locks never collide.
ADVISORY_LOCK_KEY = int.from_bytes(b"atbmigr8", "big") & 0x7FFF_FFFF_FFFF_FFFF
# peewee-migrate's history table and migration file names (peewee_migrate.models.MIGRATE_TABLE,
# Router.filemask; a unit test keeps them equal). Written out so that importing atb.db does not
# import peewee_migrate's router, which pulls in unittest.mock, asyncio and ssl (~25 ms).
HISTORY_TABLE = "migratehistory"
MIGRATION_FILE = re.compile(r"[\d]{3}_[^\.]+\.py$")


def migrations_dir() -> Path:
    """The folder of migration files: $ATB_MIGRATIONS_DIR, the installed package, or the checkout."""
    override = os.environ.get("ATB_MIGRATIONS_DIR")
    if override:
        return Path(override)
    try:
        import atb.migrations as packaged

        return Path(packaged.__file__).resolve().parent
    except ImportError:  # running from a source tree that was not installed
        return Path(__file__).resolve().parents[2] / "migrations"


@dataclass(frozen=True)
class MigrationState:
    """Which migration files exist and which the database has applied."""

    applied: tuple[str, ...]
    available: tuple[str, ...]

    @property
    def pending(self) -> tuple[str, ...]:
        done = set(self.applied)
        return tuple(name for name in self.available if name not in done)

    @property
    def unknown(self) -> tuple[str, ...]:
        """Applied in the database but missing from the files (a newer release ran here)."""
        available = set(self.available)
        return tuple(name for name in self.applied if name not in available)

    @property
    def head(self) -> str | None:
        return self.applied[-1] if self.applied else None


def make_router(db: pw.Database | None = None, directory: Path | None = None) -> Router:
    """A peewee-migrate Router over our migration folder and the bound database."""
    from peewee_migrate import Router

    return Router(
        db or bound_database(), migrate_dir=directory or migrations_dir(), logger=_router_log
    )


def available_migrations(directory: Path | None = None) -> tuple[str, ...]:
    directory = directory or migrations_dir()
    if not directory.is_dir():
        raise MigrationError(f"migration folder {directory} does not exist")
    return tuple(sorted(p.stem for p in directory.iterdir() if MIGRATION_FILE.match(p.name)))


def applied_migrations(db: pw.Database | None = None) -> tuple[str, ...]:
    """Names recorded in the history table, oldest first; empty when the table does not exist."""
    db = db or bound_database()
    with translated_errors(), borrowed(db):
        if not db.table_exists(HISTORY_TABLE):
            return ()
        cursor = db.execute_sql(f'SELECT name FROM "{HISTORY_TABLE}" ORDER BY id')
        return tuple(row[0] for row in cursor.fetchall())


def migration_state(db: pw.Database | None = None, directory: Path | None = None) -> MigrationState:
    """Read-only: never creates the history table."""
    return MigrationState(applied=applied_migrations(db), available=available_migrations(directory))


def apply_pending_migrations(
    *,
    fake: bool = False,
    lock_wait_seconds: float = 300.0,
    db: pw.Database | None = None,
    directory: Path | None = None,
    to: str | None = None,
) -> list[str]:
    """Apply every pending migration, or those up to and including `to` (or only record them with
    `fake`); returns the names applied."""
    return _under_migration_lock(db, lock_wait_seconds, lambda db: _apply(db, directory, fake, to))


def _under_migration_lock(
    db: pw.Database | None, lock_wait_seconds: float, work: Callable[[pw.Database], list[str]]
) -> list[str]:
    """Run `work` the way every schema change runs: on PostgreSQL in one transaction holding the
    transaction-scoped advisory lock, with no statement timeout; the connection is discarded after."""
    db = db or bound_database()
    # Migrations may run long: no client-side call bound; the server's lock_timeout bounds the wait.
    with translated_errors(), call_deadline(None):
        db.connect(reuse_if_open=True)
        try:
            if not is_postgres(db):
                return work(db)
            with db.atomic():
                _acquire_lock(db, lock_wait_seconds)
                # SET LOCAL: ends with the transaction, never left on a pooled server connection.
                db.execute_sql("SET LOCAL statement_timeout = 0")
                return work(db)
        finally:
            _discard_session(db)


def unknown_migrations_error(unknown: Sequence[str]) -> MigrationError:
    """The one message status, migrate, migrate --plan and rollback give for a newer database."""
    return MigrationError(
        f"the database has {len(unknown)} migration(s) this version of atb does not know: "
        f"{', '.join(unknown)} (a newer atb migrated it); upgrade atb, nothing was changed"
    )


def pending_until(state: MigrationState, to: str | None = None) -> tuple[str, ...]:
    """The pending migrations in order, up to and including `to` (all when None); refuses unknown
    names and a database holding migrations the files do not know."""
    if state.unknown:
        raise unknown_migrations_error(state.unknown)
    if to is None:
        return state.pending
    if to not in state.available:
        raise MigrationError(
            f"--to {to!r} is not a migration of this version; known: "
            f"{', '.join(state.available) or '(none)'}"
        )
    if to in state.applied:
        return ()
    pending = state.pending
    return pending[: pending.index(to) + 1]


def _apply(db: pw.Database, directory: Path | None, fake: bool, to: str | None = None) -> list[str]:
    refuse_foreign_schema(db)  # before the Router, which creates the history table on access
    state = migration_state(db, directory)
    if not pending_until(state, to):
        return []
    router = make_router(db, directory)
    with _sqlite_foreign_keys_off(db):
        try:
            return router.run(to, fake=fake)
        except Exception as exc:
            raise MigrationError(f"migration failed: {exc}".splitlines()[0]) from exc


ZERO = "zero"
"""`rollback --to zero`: roll back every applied migration."""


def rollback_plan(
    state: MigrationState, *, to: str | None = None, steps: int | None = None
) -> tuple[str, ...]:
    """The migrations a rollback would undo, newest first: back to `to` (which stays applied;
    `zero` undoes all), or the last `steps` (default 1)."""
    if to is not None and steps is not None:
        raise MigrationError("give --to NAME or --steps N, not both")
    if state.unknown:
        raise unknown_migrations_error(state.unknown)
    applied = state.applied
    if to == ZERO:
        return tuple(reversed(applied))
    if to is not None:
        if to not in applied:
            raise MigrationError(
                f"--to {to!r} is not an applied migration; applied: "
                f"{', '.join(applied) or '(none)'} (or --to {ZERO} to undo all)"
            )
        return tuple(reversed(applied[applied.index(to) + 1 :]))
    if steps is None and not applied:
        return ()
    count = 1 if steps is None else steps
    if count < 1:
        raise MigrationError(f"--steps must be 1 or more, not {count}")
    if count > len(applied):
        raise MigrationError(
            f"--steps {count}: only {len(applied)} migration(s) are applied "
            f"({', '.join(applied) or 'none'})"
        )
    return tuple(reversed(applied[len(applied) - count :]))


def rollback_migrations(
    *,
    to: str | None = None,
    steps: int | None = None,
    lock_wait_seconds: float = 300.0,
    db: pw.Database | None = None,
    directory: Path | None = None,
) -> list[str]:
    """Run the `rollback()` of the last applied migrations (see `rollback_plan`), newest first,
    all or none, under the same lock and transaction as migrating; returns the names undone."""
    return _under_migration_lock(
        db, lock_wait_seconds, lambda db: _rollback(db, directory, to, steps)
    )


def _rollback(
    db: pw.Database, directory: Path | None, to: str | None, steps: int | None
) -> list[str]:
    refuse_foreign_schema(db)
    names = rollback_plan(migration_state(db, directory), to=to, steps=steps)
    if not names:
        return []
    router = make_router(db, directory)
    done: list[str] = []
    # On SQLite too the steps share one transaction (inside the foreign-keys-off window, which
    # cannot change within a transaction), so a failed step undoes the earlier ones.
    with _sqlite_foreign_keys_off(db), db.atomic():
        migrator = router.migrator
        for name in names:
            try:
                router.run_one(name, migrator, fake=False, downgrade=True)
            except Exception as exc:
                raise MigrationError(
                    f"rollback of {name} failed (nothing was rolled back): {exc}".splitlines()[0]
                ) from exc
            done.append(name)
    return done


@contextmanager
def _sqlite_foreign_keys_off(db: pw.Database) -> Iterator[None]:
    """SQLite rebuilds tables to alter them; with foreign keys on, dropping the old copy deletes
    child rows. Enforcement is switched off around the run (it cannot change inside a
    transaction) and every reference is checked afterwards."""
    if not isinstance(db, pw.SqliteDatabase):
        yield
        return
    db.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        yield
        broken = db.execute_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            tables = sorted({row[0] for row in broken})
            raise MigrationError(
                f"after migrating, {len(broken)} row(s) in {', '.join(tables)} reference missing rows"
            )
    finally:
        db.execute_sql("PRAGMA foreign_keys = ON")


def _acquire_lock(db: pw.Database, wait_seconds: float) -> None:
    """Take the transaction-scoped migration lock, waiting at most `wait_seconds` (server-side)."""
    got, configured = db.execute_sql(
        "SELECT pg_try_advisory_xact_lock(%s), current_setting('lock_timeout')",
        (ADVISORY_LOCK_KEY,),
    ).fetchone()
    if got:
        return
    log.info("another process is migrating; waiting up to %.0fs for it", wait_seconds)
    if wait_seconds > 0:
        db.execute_sql("SAVEPOINT atb_migrate_lock")
        try:
            db.execute_sql(
                "SELECT set_config('lock_timeout', %s, true)", (f"{int(wait_seconds * 1000)}ms",)
            )
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
            db.execute_sql("SELECT set_config('lock_timeout', %s, true)", (configured,))
            db.execute_sql("RELEASE SAVEPOINT atb_migrate_lock")
            return
        except pw.OperationalError as exc:
            if getattr(_driver_error(exc), "pgcode", None) != "55P03":  # lock_not_available
                raise
    raise MigrationError(
        f"another process has held the migration lock for {wait_seconds:.0f}s; "
        "is a migration still running?"
    )


def _discard_session(db: pw.Database) -> None:
    """Close the migration's connection outright: its session settings must not reach the pool."""
    if not is_postgres(db):
        return
    try:
        if hasattr(db, "manual_close"):
            db.manual_close()
        else:
            db.close()
    except pw.PeeweeException:
        log.debug("closing the migration connection failed", exc_info=True)


def schema_is_empty(db: pw.Database | None = None) -> bool:
    """True when the database holds none of atb's tables and no migration history."""
    db = db or bound_database()
    with translated_errors(), borrowed(db):
        tables = set(db.get_tables())
    from .models import ALL_MODELS

    ours = {model._meta.table_name for model in ALL_MODELS} | {HISTORY_TABLE}
    return not (tables & ours)


def refuse_foreign_schema(db: pw.Database | None = None) -> None:
    """Raise `ForeignSchemaError` when the database holds the earlier layer's tables (not atb's):
    nothing may be built over them until `atb db adopt` converted them."""
    from .admin.adopt import refuse_foreign_schema as refuse

    refuse(db)


def ensure_schema(apply: bool | None = None) -> list[str]:
    """Bring the schema to head: always when `apply`, only on an empty database when None."""
    if apply is False:
        return []
    refuse_foreign_schema()
    if apply is None and not schema_is_empty():
        state = migration_state()
        if state.pending:
            log.warning(
                "%d migration(s) pending (%s); run `atb db migrate`",
                len(state.pending),
                ", ".join(state.pending),
            )
        return []
    return apply_pending_migrations()
