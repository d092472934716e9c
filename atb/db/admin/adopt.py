"""Take over a database the earlier SQLAlchemy layer built: `atb db adopt`, and the guard that
stops every other command from building over it.

The target is never written down here a second time. Inside the adopt transaction the first
migration (`001_initial`) is run into a scratch schema; the catalogs of that schema and of the
live one are read the same way and compared, and the differences become the plan: column types
(`timestamp` read as UTC, the float balances as numeric(18,8), json as jsonb, wider VARCHARs),
nullability, server defaults, the CHECK constraints of enum columns, indexes (duplicates dropped,
atb's names given to the ones kept, missing ones built), foreign keys with atb's ON DELETE rules,
missing columns and tables. Each table is rewritten once (one ALTER TABLE with every column
change). Then `001_initial` is recorded as applied and any later migration runs through the
normal migrate path, in the same transaction, under the same advisory lock; a failure anywhere
rolls everything back. `--plan` does the same work in a transaction that is always rolled back.

Nothing the earlier layer has and atb does not know is dropped: extra tables, extra columns and
`alembic_version` stay as they are (the latter gets a comment saying it was adopted, which is how
the guard tells an adopted database from one that was migrated over by mistake).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import peewee as pw

from atb.db import migrate
from atb.db.connection import (
    bound_database,
    call_deadline,
    is_postgres,
    translated_errors,
)
from atb.db.errors import MigrationError, ValidationError

__all__ = [
    "ADOPTED_COMMENT",
    "ALEMBIC_TABLE",
    "AdoptPlan",
    "AdoptResult",
    "Change",
    "ForeignSchema",
    "ForeignSchemaError",
    "adopt_database",
    "detect_foreign_schema",
    "parse_mappings",
    "plan_adoption",
    "refuse_foreign_schema",
]

ALEMBIC_TABLE = "alembic_version"
ADOPTED_COMMENT = "adopted by atb: this database now follows atb's migrations (migratehistory)"
TARGET_MIGRATION = "001_initial"
SCRATCH_SCHEMA = "atb_adopt_target"
EXAMPLES = 5


class ForeignSchemaError(MigrationError):
    """The database holds tables atb did not create (the earlier layer's): run `atb db adopt`."""


# --------------------------------------------------------------------------------------------------
# Detection: the guard of migrate, status, verify and DatabaseManager()


@dataclass(frozen=True)
class ForeignSchema:
    """What makes a database foreign to atb."""

    atb_tables: tuple[str, ...]  # atb's table names present
    alembic_revision: str | None  # the revision stamped in alembic_version, if any
    has_alembic: bool
    history_rows: int  # migrations recorded in migratehistory (0: none, or no table)

    def describe(self) -> str:
        parts = []
        if self.atb_tables:
            parts.append(f"{len(self.atb_tables)} of atb's tables")
        if self.has_alembic:
            revision = self.alembic_revision or "none stamped"
            parts.append(f"an {ALEMBIC_TABLE} table (Alembic revision {revision})")
        if self.history_rows:
            where = f"{self.history_rows} atb migration(s) recorded over it without converting it"
        else:
            where = "no atb migration history"
        return f"the earlier SQLAlchemy layer's schema ({', '.join(parts)}; {where})"

    def message(self) -> str:
        return (
            f"this database holds {self.describe()}; atb will not build over it: run "
            "`atb db adopt --plan` to see the conversion, then `atb db adopt`; nothing was written"
        )


def _table_names(db: pw.Database) -> set[str]:
    if is_postgres(db):
        rows = db.execute_sql(
            "SELECT c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
        ).fetchall()
        return {row[0] for row in rows}
    return set(db.get_tables())


def _alembic_state(db: pw.Database) -> tuple[str | None, bool]:
    """(the stamped revision(s), whether adopt marked the table)."""
    rows = db.execute_sql(f'SELECT version_num FROM "{ALEMBIC_TABLE}" ORDER BY 1').fetchall()
    revision = ", ".join(str(row[0]) for row in rows) or None
    marked = False
    if is_postgres(db):
        (comment,) = db.execute_sql(
            "SELECT obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = %s",
            (ALEMBIC_TABLE,),
        ).fetchone()
        marked = comment == ADOPTED_COMMENT
    return revision, marked


def detect_foreign_schema(db: pw.Database | None = None) -> ForeignSchema | None:
    """Read-only. A `ForeignSchema` when atb's tables exist without atb's migration history
    table, or an `alembic_version` table that adopt did not mark; None for an empty database
    or one atb built."""
    from atb.db.connection import borrowed
    from atb.db.models import ALL_MODELS

    db = db or bound_database()
    with translated_errors(), borrowed(db):
        tables = _table_names(db)
        ours = tuple(m._meta.table_name for m in ALL_MODELS if m._meta.table_name in tables)
        history_rows = 0
        has_history = migrate.HISTORY_TABLE in tables
        if has_history:
            (history_rows,) = db.execute_sql(
                f'SELECT count(*) FROM "{migrate.HISTORY_TABLE}"'
            ).fetchone()
        has_alembic = ALEMBIC_TABLE in tables
        revision, marked = _alembic_state(db) if has_alembic else (None, False)
    # No history table next to atb's table names, or an Alembic stamp adopt did not mark (which
    # also catches atb migrations recorded over the earlier schema by mistake). An empty history
    # table next to atb's tables is atb's own, partly migrated database: not foreign.
    foreign = (not has_history and bool(ours)) or (has_alembic and not marked)
    if not foreign:
        return None
    return ForeignSchema(ours, revision, has_alembic, int(history_rows))


def refuse_foreign_schema(db: pw.Database | None = None) -> None:
    """Raise `ForeignSchemaError` (one line naming `atb db adopt`) for a foreign database."""
    found = detect_foreign_schema(db)
    if found is not None:
        raise ForeignSchemaError(found.message())


# --------------------------------------------------------------------------------------------------
# --map TABLE.COLUMN:OLD=NEW

_MAP_RE = re.compile(
    r"^(?P<table>[A-Za-z_][A-Za-z0-9_]*)\.(?P<column>[A-Za-z_][A-Za-z0-9_]*):"
    r"(?P<old>[^=]*)=(?P<new>.+)$"
)


def parse_mappings(specs: Iterable[str]) -> dict[tuple[str, str], dict[str, str]]:
    """`orders.status:PENDING_SUBMIT=PENDING` -> {("orders", "status"): {"PENDING_SUBMIT": "PENDING"}}."""
    result: dict[tuple[str, str], dict[str, str]] = {}
    for spec in specs:
        match = _MAP_RE.match(spec)
        if not match:
            raise ValidationError(
                "--map", f"{spec!r} is not TABLE.COLUMN:OLD=NEW (e.g. orders.status:NEW=OPEN)"
            )
        key = (match["table"], match["column"])
        old, new = match["old"], match["new"]
        if result.get(key, {}).get(old, new) != new:
            raise ValidationError("--map", f"{key[0]}.{key[1]}:{old} is mapped twice")
        result.setdefault(key, {})[old] = new
    return result


def _known_spelling(table: str, column: str, value: str, allowed: frozenset[str]) -> str | None:
    """The earlier layer's spellings atb already accepts: any case, and validate.py's aliases."""
    from atb.db import validate
    from atb.db.enums import OrderStatus, PositionSide
    from atb.db.fields import EnumField
    from atb.db.models import MODELS_BY_TABLE

    key = value.strip().upper()
    if key in allowed:
        return key
    model = MODELS_BY_TABLE.get(table)
    fld = model._meta.columns.get(column) if model else None
    enum_class = fld.enum_class if isinstance(fld, EnumField) else None
    aliases: Mapping = {}
    if enum_class is PositionSide:
        aliases = validate.SIDE_ALIASES
    elif enum_class is OrderStatus:
        aliases = validate.ORDER_STATUS_ALIASES
    member = aliases.get(key)
    if member is not None and member.value in allowed:
        return str(member.value)
    return None


# --------------------------------------------------------------------------------------------------
# Catalogs


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class _Column:
    name: str
    type: str
    not_null: bool
    default: str | None


@dataclass
class _Index:
    name: str
    columns: tuple[str, ...]
    unique: bool
    primary: bool
    partial: bool
    definition: str
    constraint: str | None  # the UNIQUE/PRIMARY KEY constraint it backs


@dataclass
class _Table:
    name: str
    columns: dict[str, _Column] = field(default_factory=dict)
    checks: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)  # name, cols, def
    indexes: list[_Index] = field(default_factory=list)
    fks: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)  # name, cols, def


def _read_schema(db: pw.Database, schema: str) -> dict[str, _Table]:
    tables: dict[str, _Table] = {}
    for (name,) in db.execute_sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.oid",
        (schema,),
    ).fetchall():
        tables[name] = _Table(name)
    for table, column, pg_type, not_null, default in db.execute_sql(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
        (schema,),
    ).fetchall():
        tables[table].columns[column] = _Column(column, pg_type, bool(not_null), default)
    for table, name, contype, definition, columns in db.execute_sql(
        "SELECT c.relname, con.conname, con.contype, pg_get_constraintdef(con.oid), "
        "ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord) "
        "      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum "
        "      ORDER BY k.ord) "
        "FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND con.contype IN ('c', 'f') ORDER BY c.relname, con.conname",
        (schema,),
    ).fetchall():
        target = tables[table].checks if contype == "c" else tables[table].fks
        target.append((name, tuple(columns), definition))
    for table, name, unique, primary, columns, partial, definition, constraint in db.execute_sql(
        "SELECT t.relname, i.relname, ix.indisunique, ix.indisprimary, "
        "ARRAY(SELECT a.attname FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
        "      JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum "
        "      WHERE k.ord <= ix.indnkeyatts ORDER BY k.ord), "
        "ix.indexprs IS NOT NULL OR ix.indpred IS NOT NULL, pg_get_indexdef(ix.indexrelid), "
        "(SELECT con.conname FROM pg_constraint con WHERE con.conindid = ix.indexrelid "
        " AND con.conrelid = ix.indrelid AND con.contype IN ('u', 'p', 'x') LIMIT 1) "
        "FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid "
        "JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s ORDER BY t.relname, i.relname",
        (schema,),
    ).fetchall():
        tables[table].indexes.append(
            _Index(
                name,
                tuple(columns),
                bool(unique),
                bool(primary),
                bool(partial),
                definition,
                constraint,
            )
        )
    return tables


# --------------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class Change:
    """One change adopt makes, as the plan prints it."""

    kind: str  # type, not_null, default, column, check, map, index_drop, index_rename, index_add,
    #            foreign_key, table
    where: str  # "trades.exit_time", "trades", "trades(order_id, session_id)"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Problem:
    """Something that stops adopt until it is fixed (or mapped with --map)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class AdoptPlan:
    found: ForeignSchema | None
    changes: list[Change] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # what stays untouched, as sentences
    later_migrations: list[str] = field(default_factory=list)
    kept_indexes: list[tuple[str, str]] = field(default_factory=list)  # (table, index)
    duration_s: float = 0.0
    _phases: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def statements(self) -> list[str]:
        return [sql for phase in _PHASES for sql in self._phases.get(phase, [])]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "found": self.found.describe() if self.found else None,
            "alembic_revision": self.found.alembic_revision if self.found else None,
            "changes": [
                {"kind": c.kind, "where": c.where, "message": c.message} for c in self.changes
            ],
            "problems": [{"where": p.where, "message": p.message} for p in self.problems],
            "kept": list(self.kept),
            "then_applied": [TARGET_MIGRATION, *self.later_migrations],
            "duration_s": round(self.duration_s, 3),
        }


_PHASES = (
    "drop_fk",
    "drop_index",
    "create_table",
    "drop_fk_moved",
    "alter",
    "rename",
    "add_index",
    "add_fk",
)


@dataclass(frozen=True)
class AdoptResult:
    plan: AdoptPlan
    applied: list[str]
    duration_s: float


def _enum_values(definition: str) -> frozenset[str]:
    from atb.db.admin.verify import check_values

    return check_values(definition)


def _using(column: str, old: str, new: str) -> str:
    col = _q(column)
    if old == "timestamp without time zone" and new == "timestamp with time zone":
        return f"{col} AT TIME ZONE 'UTC'"
    return f"{col}::{new}"


def _numeric_limits(pg_type: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"numeric\((\d+),(\d+)\)", pg_type)
    return (int(match[1]), int(match[2])) if match else None


class _Planner:
    def __init__(
        self,
        db: pw.Database,
        schema: str,
        live: dict[str, _Table],
        target: dict[str, _Table],
        mappings: Mapping[tuple[str, str], Mapping[str, str]],
    ):
        self.db = db
        self.schema = schema
        self.live = live
        self.target = target
        self.mappings = mappings
        self.plan = AdoptPlan(found=None)

    # helpers
    def add(self, phase: str, sql: str) -> None:
        self.plan._phases.setdefault(phase, []).append(sql)

    def change(self, kind: str, where: str, message: str) -> None:
        self.plan.changes.append(Change(kind, where, message))

    def problem(self, where: str, message: str) -> None:
        self.plan.problems.append(Problem(where, message))

    def qualified(self, table: str) -> str:
        return f"{_q(self.schema)}.{_q(table)}"

    def retarget(self, definition: str) -> str:
        """A definition read from the scratch schema, pointing at the live schema instead."""
        return definition.replace(f"{_q(SCRATCH_SCHEMA)}.", f"{_q(self.schema)}.").replace(
            f"{SCRATCH_SCHEMA}.", f"{_q(self.schema)}."
        )

    def rows(self, sql: str, params: Sequence | None = None) -> list[tuple]:
        return list(self.db.execute_sql(sql, params).fetchall())

    # the comparison
    def build(self) -> AdoptPlan:
        self._check_mappings()
        for name, want in self.target.items():
            if name == migrate.HISTORY_TABLE:
                continue
            have = self.live.get(name)
            if have is None:
                self._create_table(want)
                continue
            self._columns(have, want)
            self._indexes(have, want)
            self._foreign_keys(have, want)
        for name in sorted(set(self.live) - set(self.target)):
            if name == ALEMBIC_TABLE:
                self.plan.kept.append(
                    f"{ALEMBIC_TABLE}: kept as it is (marked as adopted with a comment)"
                )
            elif name != migrate.HISTORY_TABLE:
                self.plan.kept.append(f"{name}: table unknown to atb, kept untouched")
        for (name,) in self.rows(
            "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = %s AND t.typtype = 'e' ORDER BY 1",
            (self.schema,),
        ):
            self.plan.kept.append(f"type {name}: enum type unused by atb, kept untouched")
        return self.plan

    def _check_mappings(self) -> None:
        for (table, column), pairs in self.mappings.items():
            want = self.target.get(table)
            if want is None or column not in want.columns:
                raise ValidationError("--map", f"{table}.{column} is not a column of atb's schema")
            allowed = self._enum_check(want, column)
            if allowed is None:
                raise ValidationError("--map", f"{table}.{column} is not an enum column")
            for old, new in pairs.items():
                if new not in allowed:
                    raise ValidationError(
                        "--map",
                        f"{table}.{column}:{old}={new}: {new!r} is not allowed; allowed: "
                        + ", ".join(sorted(allowed)),
                    )

    @staticmethod
    def _enum_check(table: _Table, column: str) -> frozenset[str] | None:
        for _name, columns, definition in table.checks:
            if columns == (column,) and (" = ANY " in definition or " IN " in definition):
                return _enum_values(definition)
        return None

    def _create_table(self, want: _Table) -> None:
        self.change("table", want.name, "table is missing: created as atb defines it (empty)")
        self.add(
            "create_table",
            f"ALTER TABLE {_q(SCRATCH_SCHEMA)}.{_q(want.name)} SET SCHEMA {_q(self.schema)}",
        )
        for name, _cols, _definition in want.fks:
            self.add(
                "drop_fk_moved",
                f"ALTER TABLE {self.qualified(want.name)} DROP CONSTRAINT {_q(name)}",
            )
        for name, _cols, definition in want.fks:
            self.add(
                "add_fk",
                f"ALTER TABLE {self.qualified(want.name)} ADD CONSTRAINT "
                f"{_q(name)} {self.retarget(definition)}",
            )

    def _columns(self, have: _Table, want: _Table) -> None:
        table = want.name
        clauses: list[str] = []
        # Enum values outside atb's CHECK: problems, or rewritten within the table's one ALTER.
        rewrites: dict[str, str] = {}
        have_checks = {(cols, definition) for _n, cols, definition in have.checks}
        new_checks = [c for c in want.checks if (c[1], c[2]) not in have_checks]
        for _name, columns, definition in new_checks:
            if len(columns) == 1 and columns[0] in have.columns:
                expression = self._check_enum_values(table, columns[0], _enum_values(definition))
                if expression is not None:
                    rewrites[columns[0]] = expression
        for column, target in want.columns.items():
            where = f"{table}.{column}"
            current = have.columns.get(column)
            if current is None:
                clause = f"ADD COLUMN {_q(column)} {target.type}"
                if target.default and "nextval(" not in target.default:
                    clause += f" DEFAULT {target.default}"
                if target.not_null:
                    (count,) = self.rows(f"SELECT count(*) FROM {self.qualified(table)}")[0]
                    if count and not target.default:
                        self.problem(
                            where,
                            f"column is missing and NOT NULL without a default; "
                            f"{count} existing row(s) would have no value",
                        )
                    clause += " NOT NULL"
                clauses.append(clause)
                self.change(
                    "column",
                    where,
                    f"column added: {target.type}"
                    + (f" DEFAULT {target.default}" if target.default else "")
                    + (" NOT NULL" if target.not_null else ""),
                )
                continue
            if column in rewrites:
                clauses.append(
                    f"ALTER COLUMN {_q(column)} TYPE {target.type} "
                    f"USING ({rewrites[column]})::{target.type}"
                )
            elif current.type != target.type:
                clauses.append(
                    f"ALTER COLUMN {_q(column)} TYPE {target.type} "
                    f"USING {_using(column, current.type, target.type)}"
                )
            if current.type != target.type:
                note = ""
                if target.type == "timestamp with time zone" and current.type.startswith(
                    "timestamp without"
                ):
                    note = " (the stored values read as UTC)"
                if current.type == "json" and target.type == "jsonb":
                    note = " (as jsonb: duplicate keys keep the last value, key order normalised)"
                self.change("type", where, f"type {current.type} -> {target.type}{note}")
                self._check_fits(table, column, current.type, target.type)
                self._check_dependent_views(table, column)
            if target.not_null and not current.not_null:
                (nulls,) = self.rows(
                    f"SELECT count(*) FROM {self.qualified(table)} WHERE {_q(column)} IS NULL"
                )[0]
                if nulls:
                    self.problem(where, f"atb requires NOT NULL but {nulls} row(s) are NULL")
                clauses.append(f"ALTER COLUMN {_q(column)} SET NOT NULL")
                self.change("not_null", where, "NOT NULL added")
            elif current.not_null and not target.not_null:
                clauses.append(f"ALTER COLUMN {_q(column)} DROP NOT NULL")
                self.change("not_null", where, "NOT NULL dropped (atb allows NULL)")
            want_default = (
                target.default if target.default and "nextval(" not in target.default else None
            )
            have_default = (
                current.default if current.default and "nextval(" not in current.default else None
            )
            if want_default != have_default and not (
                current.default
                and target.default
                and "nextval(" in current.default
                and "nextval(" in target.default
            ):
                if want_default is None:
                    clauses.append(f"ALTER COLUMN {_q(column)} DROP DEFAULT")
                    self.change("default", where, f"server default {have_default} dropped")
                else:
                    clauses.append(f"ALTER COLUMN {_q(column)} SET DEFAULT {want_default}")
                    self.change("default", where, f"server default {want_default}")
        for column in have.columns:
            if column not in want.columns:
                info = have.columns[column]
                note = ""
                if info.not_null and not info.default:
                    note = " (NOT NULL without a default: rows atb inserts will need a value)"
                self.plan.kept.append(
                    f"{table}.{column}: column unknown to atb ({info.type}), kept untouched{note}"
                )
        # CHECK constraints (enum columns), validated after the rewrite.
        for name, columns, definition in new_checks:
            clauses.append(f"ADD CONSTRAINT {_q(name)} {definition}")
            self.change("check", f"{table}.{', '.join(columns)}", f"{definition} added")
        if clauses:
            self.add("alter", f"ALTER TABLE {self.qualified(table)} " + ", ".join(clauses))

    def _check_fits(self, table: str, column: str, old: str, new: str) -> None:
        limits = _numeric_limits(new)
        where = f"{table}.{column}"
        col = _q(column)
        if limits and old in ("double precision", "real"):
            precision, scale = limits
            bound = f"1e{precision - scale}"
            bad = self.rows(
                f"SELECT count(*), (array_agg({col}::text ORDER BY {col}::text))[1:{EXAMPLES}] "
                f"FROM {self.qualified(table)} WHERE CASE WHEN {col} IN "
                "('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) THEN true "
                f"ELSE abs(round({col}::numeric, {scale})) >= {bound} END"
            )[0]
            if bad[0]:
                self.problem(
                    where,
                    f"{bad[0]} value(s) do not fit {new} (at most {precision - scale} digits "
                    f"before the point, no NaN/Infinity), e.g. {', '.join(bad[1])}; fix them first",
                )
        elif limits and old.startswith("numeric"):
            precision, scale = limits
            (count,) = self.rows(
                f"SELECT count(*) FROM {self.qualified(table)} "
                f"WHERE abs(round({col}, {scale})) >= 1e{precision - scale} OR {col} = 'NaN'"
            )[0]
            if count:
                self.problem(where, f"{count} value(s) do not fit {new}")
        length = re.fullmatch(r"character varying\((\d+)\)", new)
        if length and old.startswith(("character varying", "text")):
            (count,) = self.rows(
                f"SELECT count(*) FROM {self.qualified(table)} "
                f"WHERE char_length({col}) > {int(length[1])}"
            )[0]
            if count:
                self.problem(where, f"{count} value(s) are longer than {new}")

    def _check_dependent_views(self, table: str, column: str) -> None:
        """PostgreSQL cannot change the type of a column a view or rule uses."""
        views = self.rows(
            "SELECT DISTINCT v.relname FROM pg_depend d "
            "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
            "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
            "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass "
            "AND a.attname = %s AND v.oid <> d.refobjid ORDER BY 1",
            (self.qualified(table), column),
        )
        if views:
            names = ", ".join(row[0] for row in views)
            self.problem(
                f"{table}.{column}",
                f"used by view(s) {names}, so its type cannot change; drop them before adopt "
                "and re-create them afterwards",
            )

    def _check_enum_values(self, table: str, column: str, allowed: frozenset[str]) -> str | None:
        """Problems for values outside `allowed`; the SQL expression rewriting the mapped ones
        (used in the table's one ALTER: no separate UPDATE pass), or None."""
        col = _q(column)
        found = self.rows(
            f"SELECT {col}, count(*) FROM {self.qualified(table)} "
            f"WHERE {col} IS NOT NULL AND NOT ({col} = ANY(%s)) GROUP BY {col} ORDER BY 2 DESC, 1",
            (sorted(allowed),),
        )
        if not found:
            return None
        where = f"{table}.{column}"
        explicit = self.mappings.get((table, column), {})
        mapping: dict[str, str] = {}
        unmapped: list[tuple[str, int]] = []
        for value, count in found:
            new = explicit.get(value) or _known_spelling(table, column, value, allowed)
            if new is None:
                unmapped.append((value, int(count)))
            else:
                mapping[value] = new
                how = "--map" if value in explicit else "known spelling"
                self.change("map", where, f"{count} row(s) {value!r} -> {new!r} ({how})")
        if unmapped:
            rows = sum(count for _v, count in unmapped)
            examples = ", ".join(f"{v!r} ({c})" for v, c in unmapped[:EXAMPLES])
            more = f" and {len(unmapped) - EXAMPLES} more" if len(unmapped) > EXAMPLES else ""
            first = unmapped[0][0]
            self.problem(
                where,
                f"{rows} row(s) hold {len(unmapped)} value(s) atb does not allow: {examples}{more}; "
                f"allowed: {', '.join(sorted(allowed))}; map them with "
                f"--map {table}.{column}:{first}=<ALLOWED VALUE>",
            )
        if not mapping:
            return None
        cases = " ".join("WHEN %s THEN %s" for _ in mapping)
        params: list[str] = []
        for old, new in mapping.items():
            params += [old, new]
        expression = f"CASE {col} {cases} ELSE {col} END"
        return self.db.cursor().mogrify(expression, params).decode()

    def _indexes(self, have: _Table, want: _Table) -> None:
        table = want.name
        live = [ix for ix in have.indexes if not ix.primary and not ix.partial]
        claimed: set[str] = set()
        drops: list[_Index] = []
        for target in want.indexes:
            if target.primary or target.partial:
                continue
            signature = f"{table}({', '.join(target.columns)})"
            kind = "unique index" if target.unique else "index"
            candidates = [
                ix
                for ix in live
                if ix.columns == target.columns
                and ix.unique == target.unique
                and ix.name not in claimed
            ]
            candidates.sort(key=lambda ix: (ix.constraint is not None, ix.name != target.name))
            keep = candidates[0] if candidates and candidates[0].constraint is None else None
            for ix in candidates:
                claimed.add(ix.name)
                if ix is not keep:
                    drops.append(ix)
            if keep is None:
                self.add("add_index", self.retarget(target.definition))
                replaced = (
                    f" (replacing constraint {candidates[0].constraint})" if candidates else ""
                )
                self.change("index_add", signature, f"{kind} {target.name} created{replaced}")
            elif keep.name != target.name:
                self.add(
                    "rename",
                    f"ALTER INDEX {_q(self.schema)}.{_q(keep.name)} RENAME TO {_q(target.name)}",
                )
                self.change("index_rename", signature, f"{kind} {keep.name} renamed {target.name}")
        wanted = {(t.columns, t.unique) for t in want.indexes if not t.primary}
        wanted_columns = {t.columns for t in want.indexes if not t.primary}
        seen: set[tuple[tuple[str, ...], bool]] = set()
        for ix in live:
            if ix.name in claimed:
                continue
            wanted_key = (ix.columns, ix.unique)
            if (
                wanted_key in wanted
                or wanted_key in seen
                or (not ix.unique and ix.columns in wanted_columns)
            ):
                drops.append(ix)
            else:
                seen.add(wanted_key)
                self.plan.kept_indexes.append((table, ix.name))
                self.plan.kept.append(
                    f"{table}: index {ix.name} on ({', '.join(ix.columns)}) is not atb's, kept"
                )
        for ix in drops:
            where = f"{table}({', '.join(ix.columns)})"
            if ix.constraint:
                self.add(
                    "drop_index",
                    f"ALTER TABLE {self.qualified(table)} DROP CONSTRAINT {_q(ix.constraint)}",
                )
                self.change(
                    "index_drop",
                    where,
                    f"constraint {ix.constraint} dropped (duplicates atb's index)",
                )
            else:
                self.add("drop_index", f"DROP INDEX {_q(self.schema)}.{_q(ix.name)}")
                self.change("index_drop", where, f"index {ix.name} dropped (duplicates atb's)")

    def _foreign_keys(self, have: _Table, want: _Table) -> None:
        table = want.name
        live = {(cols, d): name for name, cols, d in have.fks}
        live_definitions = {cols: (name, d) for name, cols, d in have.fks}
        wanted_columns = set()
        for name, columns, definition in want.fks:
            wanted_columns.add(columns)
            target_def = self.retarget(definition)
            where = f"{table}.{', '.join(columns)}"
            current_name = live.get((columns, definition.replace(f"{SCRATCH_SCHEMA}.", "")))
            if current_name is not None:
                if current_name != name:
                    self.add(
                        "rename",
                        f"ALTER TABLE {self.qualified(table)} RENAME CONSTRAINT "
                        f"{_q(current_name)} TO {_q(name)}",
                    )
                    self.change("foreign_key", where, f"constraint {current_name} renamed {name}")
                continue
            previous = live_definitions.get(columns)
            if previous is None:
                self._check_orphans(table, columns, definition)
            if previous is not None:
                self.add(
                    "drop_fk",
                    f"ALTER TABLE {self.qualified(table)} DROP CONSTRAINT {_q(previous[0])}",
                )
                before = f" (was {previous[1]})"
            else:
                before = ""
            self.add(
                "add_fk",
                f"ALTER TABLE {self.qualified(table)} ADD CONSTRAINT {_q(name)} {target_def}",
            )
            self.change("foreign_key", where, f"{self._unqualify(target_def)}{before}")
        for name, columns, definition in have.fks:
            if columns not in wanted_columns:
                self.add(
                    "drop_fk", f"ALTER TABLE {self.qualified(table)} DROP CONSTRAINT {_q(name)}"
                )
                self.change(
                    "foreign_key",
                    f"{table}.{', '.join(columns)}",
                    f"{name} dropped: atb has no foreign key here ({definition})",
                )

    def _check_orphans(self, table: str, columns: tuple[str, ...], definition: str) -> None:
        """Rows a new foreign key would reject (the database had none on these columns)."""
        match = re.search(r"REFERENCES (?:[^.(]+\.)?([^(]+)\(([^)]+)\)", definition)
        if not match or len(columns) != 1 or match[1].strip('"') not in self.live:
            return
        parent, ref = match[1].strip('"'), match[2].strip('"')
        col = _q(columns[0])
        count, examples = self.rows(
            f"SELECT count(*), (array_agg(DISTINCT c.{col}::text))[1:{EXAMPLES}] "
            f"FROM {self.qualified(table)} c WHERE c.{col} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {self.qualified(parent)} p WHERE p.{_q(ref)} = c.{col})"
        )[0]
        if count:
            self.problem(
                f"{table}.{columns[0]}",
                f"{count} row(s) reference missing {parent}.{ref} values (e.g. "
                f"{', '.join(examples)}); atb adds a foreign key here: delete or fix them first",
            )

    def _unqualify(self, definition: str) -> str:
        return definition.replace(f"{_q(self.schema)}.", "")


# --------------------------------------------------------------------------------------------------
# Running it


class _Rollback(Exception):
    pass


def _build_target(db: pw.Database, directory: Path | None) -> dict[str, _Table]:
    """Run the first migration into the scratch schema and read what it built."""
    router = migrate.make_router(db, directory)
    names = migrate.available_migrations(directory)
    if TARGET_MIGRATION not in names:
        raise MigrationError(f"migration {TARGET_MIGRATION} is missing from the migration folder")
    # Never ours to drop if it exists: adopt's own scratch schema only lives inside its
    # transaction, so one that exists belongs to somebody else.
    if db.execute_sql(
        "SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCRATCH_SCHEMA,)
    ).fetchone():
        raise MigrationError(
            f"a schema named {SCRATCH_SCHEMA} exists; adopt builds atb's target schema under that "
            "name for a moment: rename that schema first (nothing was changed)"
        )
    db.execute_sql(f"CREATE SCHEMA {_q(SCRATCH_SCHEMA)}")
    (search_path,) = db.execute_sql("SELECT current_setting('search_path')").fetchone()
    db.execute_sql("SELECT set_config('search_path', %s, true)", (_q(SCRATCH_SCHEMA),))
    try:
        migration, _rollback = router.read(TARGET_MIGRATION)
        from peewee_migrate.migrator import Migrator

        migrator = Migrator(db)
        migration(migrator, db, fake=False)
        migrator()
    finally:
        db.execute_sql("SELECT set_config('search_path', %s, true)", (search_path,))
    return _read_schema(db, SCRATCH_SCHEMA)


def _prepare(db: pw.Database, mappings, directory: Path | None) -> AdoptPlan:
    started = time.perf_counter()
    found = detect_foreign_schema(db)
    (schema,) = db.execute_sql("SELECT current_schema()").fetchone()
    if schema is None:
        raise MigrationError("the database has no current schema (check search_path)")
    live = _read_schema(db, schema)
    if not found:
        raise MigrationError(
            "nothing to adopt: this database holds no schema of the earlier layer (it is atb's, "
            "or empty); use `atb db migrate` and `atb db verify`"
        )
    target = _build_target(db, directory)
    planner = _Planner(db, schema, live, target, mappings)
    plan = planner.build()
    plan.found = found
    applied_later = [n for n in migrate.available_migrations(directory) if n != TARGET_MIGRATION]
    plan.later_migrations = applied_later
    plan.duration_s = time.perf_counter() - started
    return plan


def _session(db: pw.Database):
    if not is_postgres(db):
        raise MigrationError("atb db adopt supports PostgreSQL only")
    return call_deadline(None)


def plan_adoption(
    db: pw.Database | None = None,
    *,
    mappings: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
    directory: Path | None = None,
) -> AdoptPlan:
    """Everything adopt would change and every problem that would stop it; changes nothing
    (the scratch schema is built in a transaction that is rolled back)."""
    db = db or bound_database()
    result: list[AdoptPlan] = []
    with _session(db), translated_errors():
        db.connect(reuse_if_open=True)
        try:
            with db.atomic():
                db.execute_sql("SET LOCAL statement_timeout = 0")
                result.append(_prepare(db, mappings or {}, directory))
                raise _Rollback
        except _Rollback:
            pass
        finally:
            migrate._discard_session(db)
    return result[0]


def adopt_database(
    db: pw.Database | None = None,
    *,
    mappings: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
    directory: Path | None = None,
    lock_wait_seconds: float = 300.0,
    before_commit: Callable[[], None] | None = None,
) -> AdoptResult:
    """Convert the database in one transaction under the migration lock, record `001_initial`,
    apply the later migrations; on any failure (a problem, an error, an interrupt) roll back."""
    db = db or bound_database()
    started = time.perf_counter()
    with _session(db), translated_errors():
        db.connect(reuse_if_open=True)
        try:
            with db.atomic():
                migrate._acquire_lock(db, lock_wait_seconds)
                db.execute_sql("SET LOCAL statement_timeout = 0")
                plan = _prepare(db, mappings or {}, directory)
                if not plan.ok:
                    raise MigrationError(
                        f"adopt stopped by {len(plan.problems)} problem(s), nothing was changed: "
                        + "; ".join(str(p) for p in plan.problems[:3])
                        + (" ..." if len(plan.problems) > 3 else "")
                        + " (see `atb db adopt --plan`)"
                    )
                _execute(db, plan)
                applied = [TARGET_MIGRATION]
                _record_initial(db, directory)
                if plan.found and plan.found.has_alembic:
                    db.execute_sql(
                        f"COMMENT ON TABLE {_q(ALEMBIC_TABLE)} IS %s", (ADOPTED_COMMENT,)
                    )
                later = migrate._apply(db, directory, fake=False)
                applied += later
                if later:
                    _drop_new_duplicates(db, plan)
                if before_commit is not None:
                    before_commit()
        finally:
            migrate._discard_session(db)
    return AdoptResult(plan=plan, applied=applied, duration_s=time.perf_counter() - started)


def _execute(db: pw.Database, plan: AdoptPlan) -> None:
    """Run the plan's statements phase by phase; the scratch schema goes once the tables atb
    lacked were moved out of it (and their foreign keys to it dropped)."""
    for phase in _PHASES:
        for sql in plan._phases.get(phase, []):
            try:
                db.execute_sql(sql)
            except pw.PeeweeException as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise MigrationError(
                    f"adopt failed, nothing was changed: {first} (while running: {sql[:200]})"
                ) from exc
        if phase == "drop_fk_moved":
            db.execute_sql(f"DROP SCHEMA {_q(SCRATCH_SCHEMA)} CASCADE")


def _drop_new_duplicates(db: pw.Database, plan: AdoptPlan) -> None:
    """A later migration may have built an index the earlier layer already had under its own
    name (kept as "not atb's" by the plan): drop the earlier layer's copy."""
    (schema,) = db.execute_sql("SELECT current_schema()").fetchone()
    live = _read_schema(db, schema)
    for table, name in plan.kept_indexes:
        indexes = live[table].indexes if table in live else []
        mine = next((ix for ix in indexes if ix.name == name), None)
        if mine is None or mine.constraint:
            continue
        twin = next(
            (
                ix
                for ix in indexes
                if ix.name != name
                and ix.columns == mine.columns
                and ix.unique == mine.unique
                and not ix.partial
                and (table, ix.name) not in plan.kept_indexes
            ),
            None,
        )
        if twin is not None:
            db.execute_sql(f"DROP INDEX {_q(schema)}.{_q(name)}")
            plan.changes.append(
                Change(
                    "index_drop",
                    f"{table}({', '.join(mine.columns)})",
                    f"index {name} dropped (duplicates {twin.name}, built by a later migration)",
                )
            )


def _record_initial(db: pw.Database, directory: Path | None) -> None:
    """Create the history table as peewee-migrate does and record `001_initial` in it."""
    router = migrate.make_router(db, directory)
    if not router.model.select().where(router.model.name == TARGET_MIGRATION).exists():
        router.model.create(name=TARGET_MIGRATION)
