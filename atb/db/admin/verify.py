"""Compare a live PostgreSQL database with the models: what `atb db verify` reports.

Reads the catalogs (pg_class, pg_attribute, pg_constraint, pg_index) of the current schema once
each, so the check stays fast however large the tables are; row counts are exact below
`LARGE_TABLE_ROWS` and the planner's estimate above it. Nothing is modified unless
`apply_migrations=True`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import peewee as pw

from atb.db import migrate
from atb.db.codegen import index_columns
from atb.db.connection import is_postgres, translated_errors
from atb.db.errors import ConfigurationError
from atb.db.fields import EnumField

__all__ = [
    "LARGE_TABLE_ROWS",
    "Problem",
    "TableCount",
    "VerifyReport",
    "expected_column_type",
    "expected_indexes",
    "verify_database",
]

LARGE_TABLE_ROWS = 100_000
"""Above this many (estimated) rows a table's count comes from pg_class.reltuples, not COUNT(*)."""

_DELETE_RULES = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


@dataclass(frozen=True)
class Problem:
    """One difference between the database and what the models expect."""

    kind: str  # migration, table, column, type, nullability, check, index, foreign_key, trigger
    where: str  # "positions.side", "positions" or "migrations"
    message: str
    expected: str | None = None
    found: str | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class TableCount:
    rows: int
    estimated: bool


@dataclass
class VerifyReport:
    """Everything `atb db verify` prints; `to_dict()` has the stable keys of `--json`."""

    server_version: str
    server_version_num: int
    latency_ms: float
    pending_migrations: list[str]
    unknown_migrations: list[str]
    applied_migrations: list[str]  # every migration the database records as applied, oldest first
    tables: dict[str, TableCount]
    problems: list[Problem] = field(default_factory=list)
    migrated_now: list[str] = field(
        default_factory=list
    )  # applied by this run (--apply-migrations)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def server_major(self) -> int:
        return self.server_version_num // 10000

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": [asdict(problem) for problem in self.problems],
            "server_version": self.server_version,
            "latency_ms": round(self.latency_ms, 3),
            "pending_migrations": list(self.pending_migrations),
            "unknown_migrations": list(self.unknown_migrations),
            "applied_migrations": list(self.applied_migrations),
            "migrated_now": list(self.migrated_now),
            "tables": {name: asdict(count) for name, count in self.tables.items()},
        }


# --------------------------------------------------------------------------------------------------
# What the models expect


def expected_column_type(field: pw.Field) -> str:
    """The PostgreSQL type, as `format_type()` spells it, that a column of `field` must have."""
    if isinstance(field, pw.ForeignKeyField):
        return expected_column_type(field.rel_field)
    if isinstance(field, pw.BigAutoField):
        return "bigint"
    if isinstance(field, pw.AutoField):
        return "integer"
    if isinstance(field, pw.DecimalField):
        modifiers = field.get_modifiers()  # none: unconstrained numeric (ExactSumField)
        return f"numeric({','.join(map(str, modifiers))})" if modifiers else "numeric"
    if isinstance(field, pw.FixedCharField):
        return f"character({field.max_length})"
    if isinstance(field, pw.CharField):
        return f"character varying({field.max_length})"
    if isinstance(field, pw.DateTimeField):
        if str(field.field_type).upper() in {"TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"}:
            return "timestamp with time zone"
        return "timestamp without time zone"
    if isinstance(field, pw.JSONField):
        return "jsonb"  # peewee maps JSON to JSONB on PostgreSQL
    simple = (
        (pw.TextField, "text"),
        (pw.BigIntegerField, "bigint"),
        (pw.SmallIntegerField, "smallint"),
        (pw.IntegerField, "integer"),
        (pw.BooleanField, "boolean"),
        (pw.TimeField, "time without time zone"),
        (pw.DateField, "date"),
        (pw.DoubleField, "double precision"),
        (pw.FloatField, "real"),
        (pw.UUIDField, "uuid"),
        (pw.BlobField, "bytea"),
    )
    for field_class, pg_type in simple:
        if isinstance(field, field_class):
            return pg_type
    return str(field.field_type).lower()


def expected_indexes(model: type[pw.Model]) -> list[tuple[tuple[str, ...], bool]]:
    """(columns, unique) of every index the model defines (field flags and Meta.indexes)."""
    found = []
    for index in model._meta.fields_to_index():
        signature = (index_columns(index, strict=False), bool(index._unique))
        if signature not in found:
            found.append(signature)
    return found


# --------------------------------------------------------------------------------------------------
# What the database has


@contextmanager
def _session(db: pw.Database) -> Iterator[None]:
    """One connection for the whole check (returned to the pool afterwards if we opened it)."""
    opened_here = db.is_closed()
    with translated_errors():
        if opened_here:
            db.connect()
        try:
            yield
        finally:
            if opened_here and not db.is_closed():
                db.close()


def _rows(db: pw.Database, sql: str, params: Sequence | None = None) -> list[tuple]:
    return list(db.execute_sql(sql, params).fetchall())


_SCHEMA_FILTER = "n.nspname = current_schema()"

_TABLES_SQL = f"""
SELECT c.relname, c.reltuples::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_SCHEMA_FILTER} AND c.relkind IN ('r', 'p')
"""

_COLUMNS_SQL = f"""
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_SCHEMA_FILTER} AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""

_CHECKS_SQL = f"""
SELECT c.relname, con.conname, pg_get_constraintdef(con.oid),
       ARRAY(SELECT a.attname FROM pg_attribute a
             WHERE a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey) ORDER BY a.attnum)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_SCHEMA_FILTER} AND con.contype = 'c'
"""

_INDEXES_SQL = f"""
SELECT t.relname, i.relname, ix.indisunique, ix.indisprimary,
       ARRAY(SELECT a.attname
             FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= ix.indnkeyatts
             ORDER BY k.ord),
       ix.indexprs IS NOT NULL
FROM pg_index ix
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE {_SCHEMA_FILTER}
"""

_FOREIGN_KEYS_SQL = f"""
SELECT c.relname, a.attname, rc.relname, ra.attname, con.confdeltype
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class rc ON rc.oid = con.confrelid
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = con.confkey[1]
WHERE {_SCHEMA_FILTER} AND con.contype = 'f' AND cardinality(con.conkey) = 1
"""


def check_values(definition: str) -> frozenset[str]:
    """The quoted literals of a CHECK definition: the values an `IN (...)` check allows."""
    return frozenset(match.replace("''", "'") for match in _QUOTED.findall(definition))


def _fmt(values: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(values)) + "}"


# --------------------------------------------------------------------------------------------------
# The comparison


def _compare_table(model: type[pw.Model], catalog: dict) -> list[Problem]:
    table = model._meta.table_name
    problems: list[Problem] = []
    columns = catalog["columns"].get(table, {})
    for fld in model._meta.sorted_fields:
        where = f"{table}.{fld.column_name}"
        if fld.column_name not in columns:
            problems.append(
                Problem(
                    "column",
                    where,
                    f"column is missing (expected {expected_column_type(fld)})",
                    expected_column_type(fld),
                    None,
                )
            )
            continue
        found_type, not_null = columns[fld.column_name]
        want_type = expected_column_type(fld)
        if found_type != want_type:
            problems.append(
                Problem(
                    "type",
                    where,
                    f"type expected {want_type}, found {found_type}",
                    want_type,
                    found_type,
                )
            )
        want_null = bool(fld.null) and not fld.primary_key
        if want_null == not_null:
            want = "NULL allowed" if want_null else "NOT NULL"
            found = "NOT NULL" if not_null else "NULL allowed"
            problems.append(
                Problem("nullability", where, f"expected {want}, found {found}", want, found)
            )
        if isinstance(fld, EnumField):
            problems.extend(_compare_enum_check(where, fld, catalog["checks"].get(table, [])))
        if isinstance(fld, pw.ForeignKeyField):
            problems.extend(_compare_foreign_key(where, fld, catalog["fks"].get(table, {})))

    found_indexes = catalog["indexes"].get(table, set())
    for columns_, unique in expected_indexes(model):
        if (columns_, unique) in found_indexes:
            continue
        kind = "unique index" if unique else "index"
        other = "non-unique" if unique else "unique"
        hint = f" (a {other} one exists)" if (columns_, not unique) in found_indexes else ""
        problems.append(
            Problem(
                "index",
                f"{table}({', '.join(columns_)})",
                f"{kind} is missing{hint}",
                f"{kind} on ({', '.join(columns_)})",
                None,
            )
        )
    return problems


def _compare_enum_check(where: str, fld: EnumField, checks: list) -> list[Problem]:
    allowed = frozenset(member.value for member in fld.enum_class)
    on_column = [
        check_values(definition) for columns, definition in checks if columns == [fld.column_name]
    ]
    if allowed in on_column:
        return []
    if not on_column:
        return [
            Problem(
                "check",
                where,
                f"CHECK constraint is missing (expected values {_fmt(allowed)})",
                _fmt(allowed),
                None,
            )
        ]
    found = on_column[0]
    return [
        Problem(
            "check",
            where,
            f"CHECK expected values {_fmt(allowed)}, found {_fmt(found)}",
            _fmt(allowed),
            _fmt(found),
        )
    ]


def _compare_foreign_key(where: str, fld: pw.ForeignKeyField, fks: dict) -> list[Problem]:
    target = f"{fld.rel_model._meta.table_name}.{fld.rel_field.column_name}"
    rule = (fld.on_delete or "NO ACTION").upper()
    want = f"REFERENCES {target} ON DELETE {rule}"
    found = fks.get(fld.column_name)
    if found is None:
        return [Problem("foreign_key", where, "foreign key is missing", want, None)]
    if found != want:
        return [Problem("foreign_key", where, f"expected {want}, found {found}", want, found)]
    return []


def _read_catalog(db: pw.Database) -> dict:
    columns: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, pg_type, not_null in _rows(db, _COLUMNS_SQL):
        columns.setdefault(table, {})[column] = (pg_type, bool(not_null))
    checks: dict[str, list[tuple[list[str], str]]] = {}
    for table, _name, definition, check_columns in _rows(db, _CHECKS_SQL):
        checks.setdefault(table, []).append((list(check_columns), definition))
    indexes: dict[str, set[tuple[tuple[str, ...], bool]]] = {}
    # A partial index counts for its columns (models declare some: positions' open ones); an
    # expression index describes no columns.
    for table, _name, unique, primary, columns_of_index, expression in _rows(db, _INDEXES_SQL):
        if primary or expression:
            continue
        indexes.setdefault(table, set()).add((tuple(columns_of_index), bool(unique)))
    fks: dict[str, dict[str, str]] = {}
    for table, column, ref_table, ref_column, rule in _rows(db, _FOREIGN_KEYS_SQL):
        text = f"REFERENCES {ref_table}.{ref_column} ON DELETE {_DELETE_RULES.get(rule, rule)}"
        fks.setdefault(table, {})[column] = text
    tables = {name: int(estimate) for name, estimate in _rows(db, _TABLES_SQL)}
    return {"tables": tables, "columns": columns, "checks": checks, "indexes": indexes, "fks": fks}


def _count_rows(db: pw.Database, table: str, estimate: int, threshold: int) -> TableCount:
    # reltuples is -1 for a table never analysed (PostgreSQL 14+): count it exactly.
    if estimate > threshold:
        return TableCount(rows=estimate, estimated=True)
    (count,) = db.execute_sql(f'SELECT count(*) FROM "{table}"').fetchone()
    return TableCount(rows=int(count), estimated=False)


ROLLUP_MIGRATION = "005_metric_rollups"  # builds the triggers `_check_rollup_triggers` expects


def _check_rollup_triggers(db: pw.Database) -> list[Problem]:
    """Every trigger that keeps the metric rollups honest exists and is enabled: without one, a
    later write to an already rolled-up day would not show in get_performance_metrics."""
    from atb.db.models.rollups import ROLLUP_TRIGGERS

    found = dict(
        _rows(
            db,
            "SELECT t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND NOT t.tgisinternal",
        )
    )
    problems = []
    for name in ROLLUP_TRIGGERS:
        table = name.split("_rollups_")[0]
        if name not in found:
            problems.append(Problem("trigger", table, f"trigger {name} is missing", name, None))
        elif found[name] == "D":
            problems.append(Problem("trigger", table, f"trigger {name} is disabled", name, "D"))
    return problems


def verify_database(
    db: pw.Database,
    models: Sequence[type[pw.Model]] | None = None,
    *,
    apply_migrations: bool = False,
    large_table_rows: int = LARGE_TABLE_ROWS,
    directory: Path | None = None,
) -> VerifyReport:
    """Check `db` against `models` (default: every atb model); raise only when it cannot be reached."""
    if not is_postgres(db):
        raise ConfigurationError(
            "atb db verify supports PostgreSQL only (it reads pg_catalog); SQLite is for unit tests"
        )
    if models is None:
        from atb.db.models import ALL_MODELS

        models = ALL_MODELS
    migrate.refuse_foreign_schema(db)  # the earlier layer's schema: `atb db adopt` first
    applied: list[str] = []
    if apply_migrations:
        applied = migrate.apply_pending_migrations(db=db, directory=directory)
    with _session(db):
        started = time.perf_counter()
        db.execute_sql("SELECT 1").fetchone()
        latency_ms = (time.perf_counter() - started) * 1000.0
        version, version_num = db.execute_sql(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
        ).fetchone()
        state = migrate.migration_state(db, directory)
        catalog = _read_catalog(db)
        problems: list[Problem] = []
        for name in state.pending:
            problems.append(Problem("migration", "migrations", f"{name} is not applied"))
        for name in state.unknown:
            problems.append(
                Problem(
                    "migration",
                    "migrations",
                    f"{name} is applied but unknown to this version of atb (upgrade atb)",
                )
            )
        tables: dict[str, TableCount] = {}
        for model in models:
            table = model._meta.table_name
            if table not in catalog["tables"]:
                problems.append(Problem("table", table, "table is missing", table, None))
                continue
            problems.extend(_compare_table(model, catalog))
            tables[table] = _count_rows(db, table, catalog["tables"][table], large_table_rows)
        if ROLLUP_MIGRATION in state.applied:  # (a schema regenerated from the models has none)
            problems.extend(_check_rollup_triggers(db))
    return VerifyReport(
        server_version=str(version),
        server_version_num=int(version_num),
        latency_ms=latency_ms,
        pending_migrations=list(state.pending),
        unknown_migrations=list(state.unknown),
        applied_migrations=list(state.applied),
        tables=tables,
        problems=problems,
        migrated_now=applied,
    )
