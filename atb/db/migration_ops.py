"""What migration files call at run time: frozen enums, index drops by columns, SQLite rebuilds.

Generated migrations (`atb db makemigrations`, see atb/db/codegen.py) import this module and
nothing heavier, so applying migrations does not load the generator. Keep the signatures
stable: migration files already written call them.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from typing import Any, cast

import peewee as pw

from .errors import MigrationError


@functools.cache
def frozen_enum(name: str, values: tuple[str, ...]) -> type[enum.StrEnum]:
    """An enum with exactly `values`, as a migration recorded them (the live enum may have moved on)."""
    return cast("type[enum.StrEnum]", enum.StrEnum(name, [(value, value) for value in values]))


def _index_column_names(meta: pw.Metadata, names: Sequence[str]) -> list[str]:
    found = []
    for name in names:
        field = meta.fields.get(name) or meta.combined.get(name)
        found.append(field.column_name if field is not None else name)
    return found


def _live_indexes(db: pw.Database, table: str) -> list[tuple[str, list[str]]]:
    """(name, columns) of the secondary indexes of `table` (not primary keys or constraints)."""
    if isinstance(db, pw.PostgresqlDatabase):
        rows = db.execute_sql(
            """
            SELECT i.relname,
                   ARRAY(SELECT a.attname
                         FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
                         ORDER BY k.ord)
            FROM pg_index ix
            JOIN pg_class t ON t.oid = ix.indrelid
            JOIN pg_class i ON i.oid = ix.indexrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = current_schema() AND t.relname = %s AND NOT ix.indisprimary
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid)
            """,
            (table,),
        ).fetchall()
        return [(name, list(columns)) for name, columns in rows]
    return [(idx.name, list(idx.columns)) for idx in db.get_indexes(table) if idx.sql]


def drop_index(migrator: Any, table: str, *names: str) -> None:
    """Drop the index on exactly these fields/columns, whatever it is called in the database.

    Index names differ between databases created with `legacy_table_names` on and off, so
    peewee-migrate's guessed name is unreliable; the model state is updated the same way.
    """
    model = migrator.orm[table]
    meta = model._meta
    columns = _index_column_names(meta, names)
    if len(names) == 1 and names[0] in meta.fields:
        field = meta.fields[names[0]]
        field.index = field.unique = False

    def keeps(entry: Any) -> bool:
        if isinstance(entry, pw.ModelIndex):  # a partial index (add_partial_index)
            fields = entry._expressions  # type: ignore[attr-defined]
            return [f.column_name for f in fields if isinstance(f, pw.Field)] != columns
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            parts = [part.split()[0] if isinstance(part, str) else part for part in entry[0]]
            parts = [p.name if isinstance(p, pw.Field) else p for p in parts]
            return _index_column_names(meta, parts) != columns
        return True

    meta.indexes = [entry for entry in meta.indexes if keeps(entry)]
    database = migrator.__database__

    def run() -> None:
        for name, indexed in _live_indexes(database, table):
            if indexed == columns:
                database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')

    run.__name__ = f"drop_index_{table}_{'_'.join(columns)}"
    migrator.run(run)


def add_partial_index(
    migrator: Any, table: str, *names: str, where: pw.SQL, unique: bool = False
) -> None:
    """Create an index over these fields of the rows matching `where` (peewee-migrate's
    add_index keeps no predicate in the model state, and a table created in the same migration
    would get a plain index of the same name first). The model state records it as declared."""
    model = migrator.orm[table]
    index = pw.ModelIndex(model, [model._meta.fields[name] for name in names], unique, where=where)
    model._meta.indexes.append(index)
    database = migrator.__database__

    def run() -> None:
        # IF NOT EXISTS: a create_model of the same migration has already made it from the state.
        database.execute_sql(*database.get_sql_context().sql(index.safe(True)).query())

    run.__name__ = f"add_partial_index_{table}_{'_'.join(names)}"
    migrator.run(run)


def sqlite_foreign_keys_off(migrator: Any, database: pw.Database, *, fake: bool = False) -> None:
    """On SQLite, run the rest of this migration with foreign-key enforcement off, then check.

    peewee's SqliteMigrator rebuilds a table (copy, DROP, rename) to change a column. With foreign
    keys on, the DROP deletes the rows first and fires ON DELETE CASCADE / SET NULL in every
    child table. SQLite ignores `PRAGMA foreign_keys` inside a transaction and peewee-migrate runs
    each migration inside one, so this ends that (still empty) transaction, switches enforcement
    off, begins again, and hooks the transaction's end: `PRAGMA foreign_key_check` must come back
    empty before the commit (else everything rolls back), and enforcement is switched back on
    whatever the outcome. A no-op on PostgreSQL, in fake runs, or when enforcement is off already.
    """
    if fake or not isinstance(database, pw.SqliteDatabase):
        return
    if not database.pragma("foreign_keys"):
        return
    top = database.top_transaction()
    if database.transaction_depth() != 1 or not isinstance(top, pw._transaction):
        raise MigrationError(
            "this migration rebuilds SQLite tables, which needs foreign keys off; SQLite allows "
            "that only outside a transaction: run migrations on their own, not inside atomic()"
        )
    database.commit()  # nothing has been written in this transaction yet
    database.pragma("foreign_keys", 0)
    top._begin()  # type: ignore[attr-defined]
    commit, rollback = top.commit, top.rollback

    def check_then_commit(begin: bool = True) -> None:
        try:
            problems = database.execute_sql("PRAGMA foreign_key_check").fetchall()
            if problems:
                table, rowid, parent, _ = problems[0]
                raise MigrationError(
                    f"migration left {len(problems)} row(s) violating foreign keys "
                    f"(first: {table} rowid {rowid} -> {parent}); rolled back"
                )
            commit(begin)
        finally:
            if not database.in_transaction():
                database.pragma("foreign_keys", 1)

    def rollback_then_restore(begin: bool = True) -> None:
        try:
            rollback(begin)
        finally:
            database.pragma("foreign_keys", 1)

    top.commit, top.rollback = check_then_commit, rollback_then_restore  # type: ignore[method-assign]
