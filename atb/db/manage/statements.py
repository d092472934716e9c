"""Fixed-shape SQL statements built once, and rows read back as plain dicts: the hot paths every
domain module shares.

Rows leave the manager as plain dicts keyed by column name (`session_id`, not `session`): money as
`Decimal`, enum columns as their plain string, datetimes aware UTC, JSON decoded. `select_rows` does
that with one cursor, no per-row model objects, and on PostgreSQL no conversion where psycopg2
already returns the right type.

Writes go through `insert_rows` / `update_rows`: peewee builds a statement's SQL anew on every
call, which costs more than the database round trip for a 30-column row, so the SQL text is built
once per shape (table, columns, backend) and only the parameters change. Values still pass
through each field's `db_value` (validated Decimals skip a second rounding), so the column types'
guarantees are unchanged. Needs SQLite 3.35+ for RETURNING (the unit tests' SQLite).
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import peewee as pw

from .. import connection
from ..fields import EnumField, JsonField, MoneyField, UTCDateTimeField, as_utc, utc_now

# `%%` is a literal percent sign in a DB-API "format" query; `%s` a parameter.
_FORMAT_PLACEHOLDER = re.compile(r"%%|%s")


@lru_cache(maxsize=64)
def _readers(
    model: type[pw.Model], postgres: bool
) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    return tuple(
        (field.column_name, _reader(field, postgres)) for field in model._meta.sorted_fields
    )


@lru_cache(maxsize=128)
def _row_layout(
    model: type[pw.Model], postgres: bool, utc_session: bool = False
) -> tuple[tuple[str, ...], tuple[tuple[int, str, Callable[[Any], Any]], ...]]:
    """Column names in SELECT order, and (position, name, reader) of the columns needing one.

    `utc_session`: the PostgreSQL session's time zone is UTC, so psycopg2 already returns
    timestamptz values as aware UTC datetimes and `as_utc` would hand back the same object.
    """
    readers = _readers(model, postgres)
    names = tuple(name for name, _ in readers)
    converted = tuple(
        (index, name, read)
        for index, (name, read) in enumerate(readers)
        if read is not None and not (utc_session and read is as_utc)
    )
    return names, converted


# Session time zones whose offset is always zero: timestamptz arrives as "+00", which psycopg2
# turns into datetime.timezone.utc itself. Any other zone gets the as_utc conversion.
_UTC_ZONES = frozenset(
    {"UTC", "Etc/UTC", "UCT", "Etc/UCT", "GMT", "Etc/GMT", "Universal", "Etc/Universal", "Zulu",
     "Etc/Zulu"}
)  # fmt: skip


def _utc_session(cursor: Any) -> bool:
    """True when the PostgreSQL connection behind `cursor` reports a UTC session time zone."""
    try:
        return cursor.connection.get_parameter_status("TimeZone") in _UTC_ZONES
    except Exception:  # not psycopg2, or no status known: convert as usual
        return False


def _reader(field: pw.Field, postgres: bool) -> Callable[[Any], Any] | None:
    if isinstance(field, EnumField):
        return None  # CHECK-constrained: the stored text already is the plain value
    if not postgres or isinstance(field, JsonField):
        return field.python_value
    if isinstance(field, UTCDateTimeField):
        return as_utc  # psycopg2 gives aware datetimes in the session's time zone
    # psycopg2 already returns str, int, bool and Decimal (numeric) as the columns hold them.
    return None


@lru_cache(maxsize=512)
def _select_sql(model: type[pw.Model], where: str, order_by: str, limit: bool, param: str) -> str:
    names = ", ".join(f'"{field.column_name}"' for field in model._meta.sorted_fields)
    sql = f'SELECT {names} FROM "{model._meta.table_name}"'
    sql += f" WHERE {where}" if where else ""
    sql += f" ORDER BY {order_by}" if order_by else ""
    sql += " LIMIT {p}" if limit else ""
    return sql.replace("{p}", param)


def select_rows(
    model: type[pw.Model],
    where: str = "",
    params: Sequence[Any] = (),
    *,
    order_by: str = "",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Every column of the matching rows as plain dicts keyed by column name.

    `where` and `order_by` are SQL with `{p}` placeholders; the statement text is built once per
    shape (peewee would rebuild it on every call, which costs more than a small query).
    """
    db = connection.bound_database()
    sql = _select_sql(model, where, order_by, limit is not None, db.param)
    args = [*params, limit] if limit is not None else list(params)
    postgres = connection.is_postgres(db)
    cursor = db.execute_sql(sql, args)
    names, converted = _row_layout(model, postgres, postgres and _utc_session(cursor))
    if not converted:
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    rows = []
    for row in cursor.fetchall():
        # dict(zip()) runs in C; only the few columns with a reader are touched again.
        found = dict(zip(names, row, strict=True))
        for index, name, read in converted:
            value = row[index]
            if value is not None:
                found[name] = read(value)
        rows.append(found)
    return rows


def placeholders(count: int) -> str:
    """`{p}, {p}, ...` for an IN list of `count` values."""
    return ", ".join(["{p}"] * count)


@lru_cache(maxsize=256)
def _insert_parts(
    model: type[pw.Model], names: tuple[str, ...], param: str, postgres: bool
) -> tuple[str, str, tuple[Callable[[Any], Any], ...]]:
    fields = tuple(model._meta.fields[name] for name in names)
    quoted = ", ".join(f'"{field.column_name}"' for field in fields)
    head = f'INSERT INTO "{model._meta.table_name}" ({quoted}) VALUES '
    row = "(" + ", ".join([param] * len(fields)) + ")"
    return head, row, tuple(_writer(field, postgres) for field in fields)


def _insert_sql(
    model: type[pw.Model], names: tuple[str, ...], rows: int, db: pw.Database
) -> tuple[str, tuple[Callable[[Any], Any], ...]]:
    head, row, converters = _insert_parts(model, names, db.param, connection.is_postgres(db))
    return head + ", ".join([row] * rows) + ' RETURNING "id"', converters


def _writer(field: pw.Field, postgres: bool) -> Callable[[Any], Any]:
    convert = field.db_value
    if isinstance(field, MoneyField):
        # validate.money already quantised it; MoneyField.db_value would do it all over again.
        return lambda value: value if type(value) is decimal.Decimal else convert(value)
    if isinstance(field, JsonField) and not postgres:
        # On SQLite db_value wraps the text in a json() call, which cannot be a bare parameter;
        # the JSON text itself is what that call would store.
        dumps = field._dumps
        return lambda value: None if value is None else dumps(value)
    return convert


@lru_cache(maxsize=512)
def _column_writer(model: type[pw.Model], name: str, postgres: bool) -> Callable[[Any], Any]:
    # Keyed by model and name: peewee fields overload `==`, so they make unsafe cache keys.
    return _writer(model._meta.fields[name], postgres)


def insert_rows(model: type[pw.Model], rows: Sequence[dict[str, Any]]) -> list[int]:
    """INSERT rows (dicts keyed by field name, all with the same keys) in one statement; their ids.

    Values are expected in column form already (validate.py's output: Decimals quantised).
    """
    if not rows:
        return []
    db = connection.bound_database()
    names = tuple(rows[0])
    sql, converters = _insert_sql(model, names, len(rows), db)
    params = [value for row in rows for value in _row_params(names, converters, row)]
    return [found[0] for found in db.execute_sql(sql, params).fetchall()]


def insert_row(model: type[pw.Model], row: dict[str, Any]) -> int:
    """INSERT one row (a dict keyed by field name) and return its id."""
    return insert_rows(model, [row])[0]


def _row_params(
    names: tuple[str, ...], converters: tuple[Callable[[Any], Any], ...], row: dict[str, Any]
) -> list[Any]:
    return [convert(row[name]) for name, convert in zip(names, converters, strict=True)]


def insert_with_statement(
    model: type[pw.Model], row: dict[str, Any], sql: str, params: Sequence[Any]
) -> int:
    """INSERT a row and run one more independent statement (`{p}` placeholders), atomically.

    PostgreSQL: one statement and one round trip (a data-modifying CTE), atomic on its own.
    SQLite: the two statements in one transaction. Returns the new row's id.
    """
    db = connection.bound_database()
    names = tuple(row)
    insert, converters = _insert_sql(model, names, 1, db)
    values = _row_params(names, converters, row)
    if connection.is_postgres(db):
        both = _cte_pair(insert, _with_param(sql, db.param))
        return connection.run(
            lambda: db.execute_sql(both, [*values, *params]).fetchone()[0], transaction=False
        )

    def work() -> int:
        new_id = db.execute_sql(insert, values).fetchone()[0]
        db.execute_sql(_with_param(sql, db.param), params)
        return new_id

    return connection.run(work)


@lru_cache(maxsize=64)
def _cte_pair(insert: str, other: str) -> str:
    return f"WITH inserted AS ({insert}), other AS ({other}) SELECT id FROM inserted"


def insert_with_child(
    parent: type[pw.Model],
    row: dict[str, Any],
    child: type[pw.Model],
    child_row: dict[str, Any],
    link: str,
) -> int:
    """INSERT a parent row and one child row pointing at it (`link` is the child's FK field).

    PostgreSQL: one statement (the child's VALUES read the parent's id from a CTE); SQLite: two
    statements in one transaction. Either way atomic; returns the parent's id.
    """
    db = connection.bound_database()
    names, child_names = tuple(row), tuple(child_row)
    insert, converters = _insert_sql(parent, names, 1, db)
    values = _row_params(names, converters, row)
    if connection.is_postgres(db):
        sql, child_converters = _child_insert_sql(insert, child, child_names, link, db.param)
        params = [*values, *_row_params(child_names, child_converters, child_row)]
        return connection.run(lambda: db.execute_sql(sql, params).fetchone()[0], transaction=False)

    def work() -> int:
        parent_id = db.execute_sql(insert, values).fetchone()[0]
        insert_row(child, {link: parent_id, **child_row})
        return parent_id

    return connection.run(work)


@lru_cache(maxsize=64)
def _child_insert_sql(
    insert: str, child: type[pw.Model], names: tuple[str, ...], link: str, param: str
) -> tuple[str, tuple[Callable[[Any], Any], ...]]:
    """PostgreSQL only: a data-modifying CTE inserting the parent, then the child."""
    fields = tuple(child._meta.fields[name] for name in names)
    quoted = ", ".join(f'"{field.column_name}"' for field in (child._meta.fields[link], *fields))
    marks = ", ".join(["(SELECT id FROM parent)"] + [param] * len(fields))
    sql = (
        f'WITH parent AS ({insert}) INSERT INTO "{child._meta.table_name}" ({quoted}) '
        f'VALUES ({marks}) RETURNING "{child._meta.fields[link].column_name}"'
    )
    return sql, tuple(_writer(field, True) for field in fields)


@dataclass(frozen=True)
class Expr:
    """A SQL expression to SET a column to, with `{p}` placeholders and database-ready params."""

    sql: str
    params: tuple[Any, ...] = ()


def update_rows(
    model: type[pw.Model], changes: dict[str, Any], where: str, where_params: Sequence[Any]
) -> int:
    """UPDATE `model` SET the changes (values or `Expr`s) WHERE `where`; returns rows changed.

    Columns the model touches on update (`updated_at`, ...) are set to now unless given. Like
    `insert_rows`, the SQL text is built once per shape; plain values pass through `db_value`.
    """
    db = connection.bound_database()
    postgres = connection.is_postgres(db)
    now = utc_now()
    changes = {**{name: now for name in getattr(model, "_touch_on_update", ())}, **changes}
    shape = tuple(
        (name, value.sql if isinstance(value, Expr) else None) for name, value in changes.items()
    )
    params: list[Any] = []
    for name, value in changes.items():
        if isinstance(value, Expr):
            params.extend(value.params)
        else:
            params.append(_column_writer(model, name, postgres)(value))
    params.extend(where_params)
    return db.execute_sql(_update_sql(model, shape, where, db.param), params).rowcount


@lru_cache(maxsize=256)
def _update_sql(
    model: type[pw.Model], shape: tuple[tuple[str, str | None], ...], where: str, param: str
) -> str:
    assignments = ", ".join(
        f'"{model._meta.fields[name].column_name}" = {expression or param}'
        for name, expression in shape
    )
    sql = f'UPDATE "{model._meta.table_name}" SET {assignments} WHERE {where}'
    return sql.replace("{p}", param)


def execute_template(sql: str, params: Sequence[Any]) -> Any:
    """Run hand-written SQL whose placeholders are written `{p}`; returns the cursor."""
    db = connection.bound_database()
    return db.execute_sql(_with_param(sql, db.param), params)


def _with_param(sql: str, param: str) -> str:
    return sql.replace("{p}", param)


def to_qmark(sql: str) -> str:
    """Rewrite DB-API `%s` placeholders (and `%%`) for SQLite's `?` style."""
    return _FORMAT_PLACEHOLDER.sub(lambda m: "%" if m.group(0) == "%%" else "?", sql)
