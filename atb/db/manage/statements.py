"""Peewee queries compiled once per statement shape and re-run with new parameters; rows read
back as plain dicts. The one way the manager makes SQL (`execute_query` alone stays raw).

A statement is an ordinary peewee query whose varying values are `Slot`s: nodes that render as
the backend's parameter marker. Its SQL is compiled once per backend (`query.sql()` costs more
than the round trip for a 30-column row) and each call only binds the slots' values. WHERE and
CASE clauses are peewee expressions (`Position.status == PositionStatus.OPEN`), so a renamed
column or enum member fails at import, not at run time. Values bound to a column pass through
that field's `db_value` (validated Decimals skip a second rounding), so the column types'
guarantees are unchanged.

Rows leave the manager as plain dicts keyed by column name (`session_id`, not `session`): money
as `Decimal`, enum columns as their plain string, datetimes aware UTC, JSON decoded. `Rows` does
that with one cursor, no per-row model objects, and on PostgreSQL no conversion where psycopg2
already returns the right type. Needs SQLite 3.35+ for RETURNING (the unit tests' SQLite).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import peewee as pw

from .. import connection
from ..errors import DatabaseError
from ..fields import UTC, EnumField, JsonField, MoneyField, UTCDateTimeField, as_utc, utc_now
from ..models.base import REQUEST_ID_LENGTH

# `%%` is a literal percent sign in a DB-API "format" query; `%s` a parameter.
_FORMAT_PLACEHOLDER = re.compile(r"%%|%s")

Converter = Callable[[Any], Any]


class Slot(pw.ColumnBase):
    """A parameter of a statement compiled once: renders as the backend's marker.

    `name` keys the value in the mapping (or indexes the sequence) given at run time; `field`
    converts it with the column's `db_value`; `default` supplies it when the mapping has none.
    """

    def __init__(
        self,
        name: Hashable,
        field: pw.Field | None = None,
        default: Callable[[], Any] | None = None,
    ):
        super().__init__()
        self.name = name
        self.field = field
        self.default = default

    def __sql__(self, ctx: pw.Context) -> pw.Context:
        ctx._values.append(self)  # type: ignore[attr-defined]  # peewee-private, not in the stubs
        return ctx.literal(ctx.state.param or "?")


def literal(sql: str) -> pw.SQL:
    """A number written into the SQL text, not bound.

    SQLite binds a Decimal parameter as text, and text compares greater than any number; in
    comparisons and CASE results constants stay literals.
    """
    return pw.SQL(sql)


class _Compiled:
    """The SQL text of one statement on one backend, and how to turn values into its params."""

    __slots__ = ("sql", "_args", "_slots")

    def __init__(self, sql: str, params: Sequence[Any], postgres: bool):
        self.sql = sql
        self._args = [None if isinstance(value, Slot) else value for value in params]
        self._slots = tuple(
            (
                index,
                value.name,
                None if value.field is None else _writer(value.field, postgres),
                value.default,
            )
            for index, value in enumerate(params)
            if isinstance(value, Slot)
        )

    def params(self, values: Any) -> list[Any]:
        args = self._args.copy()
        for index, name, convert, default in self._slots:
            if default is not None and name not in values:
                value = default()
            else:
                value = values[name]
            args[index] = value if convert is None or value is None else convert(value)
        return args


class Statement:
    """A peewee query (built by `build`, with `Slot`s) compiled once per backend."""

    def __init__(self, build: Callable[[], pw.Node]):
        self._build = build
        self._compiled: dict[type, _Compiled] = {}

    def compiled(self, db: pw.Database) -> _Compiled:
        """The statement's SQL on `db`'s backend, compiled on first use."""
        found = self._compiled.get(type(db))
        if found is None:
            sql, params = db.get_sql_context().sql(self._build()).query()
            found = self._compiled[type(db)] = _Compiled(sql, params, connection.is_postgres(db))
        return found

    def execute(self, values: Any = (), /, **named: Any) -> Any:
        """Run it with the slots' values (a mapping or sequence, or keywords); the cursor."""
        db = connection.bound_database()
        compiled = self.compiled(db)
        return db.execute_sql(compiled.sql, compiled.params(named or values))

    def rowcount(self, values: Any = (), /, **named: Any) -> int:
        """Run it; the number of rows it changed."""
        return self.execute(values, **named).rowcount

    def scalar(self, values: Any = (), /, **named: Any) -> Any:
        """Run it; the first column of the first row, or None."""
        row = self.execute(values, **named).fetchone()
        return None if row is None else row[0]


_shapes: dict[Hashable, Any] = {}
_shapes_lock = threading.Lock()
_MAX_SHAPES = 512


def shape(key: Hashable, build: Callable[[], Any]) -> Any:
    """The statement for a shape that varies at run time (columns given, IN-list length, ...),
    built by `build` the first time `key` is seen."""
    found = _shapes.get(key)
    if found is None:
        with _shapes_lock:
            if len(_shapes) >= _MAX_SHAPES:
                _shapes.clear()
            found = _shapes.setdefault(key, build())
    return found


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


def _writer(field: pw.Field, postgres: bool) -> Callable[[Any], Any]:
    # Values validate.py cleaned are already in column form; the checks below pass them through
    # and send anything else (a caller's own raw value) through the field's db_value.
    convert = field.db_value
    if isinstance(field, MoneyField):
        # validate.money already quantised it; MoneyField.db_value would do it all over again.
        return lambda value: value if type(value) is decimal.Decimal else convert(value)
    if isinstance(field, EnumField):
        members = field.enum_class
        return lambda value: value.value if type(value) is members else convert(value)
    if isinstance(field, UTCDateTimeField) and postgres:
        # validate.timestamp returns aware UTC datetimes, which psycopg2 sends as they are.
        return lambda value: (
            value if type(value) is dt.datetime and value.tzinfo is UTC else convert(value)
        )
    if isinstance(field, JsonField) and not postgres:
        # On SQLite db_value wraps the text in a json() call, which cannot be a bare parameter;
        # the JSON text itself is what that call would store.
        dumps = field._dumps  # type: ignore[attr-defined]
        return lambda value: None if value is None else dumps(value)
    for kind, plain in _PLAIN_KINDS:
        # Fields whose db_value is peewee's own, which hands a value of this type back as is.
        if isinstance(field, kind) and type(field).db_value is kind.db_value:
            return lambda value: value if type(value) is plain else convert(value)
    return convert


_PLAIN_KINDS: tuple[tuple[type[pw.Field], type], ...] = (
    (pw.ForeignKeyField, int),
    (pw.BooleanField, bool),
    (pw.IntegerField, int),
    (pw.CharField, str),
    (pw.TextField, str),
)


@lru_cache(maxsize=512)
def column_writer(model: type[pw.Model], name: str, postgres: bool) -> Callable[[Any], Any]:
    # Keyed by model and name: peewee fields overload `==`, so they make unsafe cache keys.
    return _writer(model._meta.fields[name], postgres)


class _InsertGiven(pw.ModelInsert):
    """INSERT of exactly the given columns: the model's Python defaults would be compiled into
    the SQL once and for all (a `created_at` frozen at the first call); the server's apply."""

    def get_default_data(self) -> dict:
        return {}


def insert_query(
    model: type[pw.Model],
    names: Sequence[str],
    rows: int = 1,
    *,
    first_slot: int = 0,
    fixed: Mapping[str, pw.Node] | None = None,
    after: pw.CTE | None = None,
) -> pw.ModelInsert:
    """INSERT INTO model (names) VALUES (slots) x rows RETURNING id. The slots are numbered from
    `first_slot` over the rows' values laid end to end; `fixed` columns get an expression.

    A row carrying `request_id` is written at most once: ON CONFLICT (request_id) DO NOTHING,
    so a repeat returns no id (`stored_id` finds it). With `after` (a data-modifying CTE of the
    same statement) the one row is inserted only if that CTE inserted its row (INSERT ...
    SELECT ... FROM it): the effects of a repeated request are skipped with it.
    """
    fields = [model._meta.fields[name] for name in names]
    width = len(fields)
    constant = {model._meta.fields[name]: node for name, node in (fixed or {}).items()}
    query: pw.ModelInsert
    if after is not None:
        if rows != 1:
            raise ValueError("an insert after another one writes one row")
        slots = [Slot(first_slot + i, field) for i, field in enumerate(fields)]
        source = pw.Select((after,), [*slots, *constant.values()])
        query = _InsertGiven(model, insert=source, columns=[*fields, *constant])
    else:
        data = [
            {
                **constant,
                **{
                    field: Slot(first_slot + row * width + i, field)
                    for i, field in enumerate(fields)
                },
            }
            for row in range(rows)
        ]
        query = _InsertGiven(model, data)
    if "request_id" in names:
        query = query.on_conflict(
            action="nothing", conflict_target=[model._meta.fields["request_id"]]
        )
    return query.returning(model._meta.primary_key)


def _find_stored(model: type[pw.Model], request_id: str) -> int | None:
    """The id of the row stored with this request id, None when there is none."""
    return shape(("stored", model), lambda: _stored_statement(model)).scalar([request_id])


def stored_id(model: type[pw.Model], request_id: str) -> int:
    """The id of the row an earlier call with this request id wrote (its insert found it)."""
    found = _find_stored(model, request_id)
    if found is None:  # the conflicting row went away between the two statements
        raise DatabaseError(
            f"{model._meta.table_name}: request_id {request_id!r} was taken, then its row vanished"
        )
    return found


def stored_ids(model: type[pw.Model], request_ids: Sequence[str]) -> list[int | None]:
    """The ids of the rows written with these request ids (None where there is none), in order."""
    found: dict[str, int] = {}
    for start in range(0, len(request_ids), 1_000):
        chunk = list(request_ids[start : start + 1_000])
        query = model.select(model._meta.fields["request_id"], model._meta.primary_key).where(
            model._meta.fields["request_id"].in_(chunk)
        )
        rows: Iterable[tuple[str, int]] = query.tuples()  # type: ignore[assignment]
        found.update(rows)
    return [found.get(key) for key in request_ids]


# A batch call's request id leaves room for each row's `#<index>` suffix.
BATCH_REQUEST_ID_LENGTH = REQUEST_ID_LENGTH - 12


def stored_batch(
    model: type[pw.Model], rows: Sequence[Mapping[str, Any]], *, known_repeat: bool = False
) -> list[int] | None:
    """The ids of a batch an earlier call with the same request id wrote, None when it is new.

    A batch is written in one transaction, so its first row's request id tells for all of them.
    `known_repeat`: these rows continue a batch already found stored (a later chunk of a
    stream), so every one of them must be stored too.
    """
    if not known_repeat and _find_stored(model, rows[0]["request_id"]) is None:
        return None
    ids = stored_ids(model, [row["request_id"] for row in rows])
    if any(found is None for found in ids):
        raise DatabaseError(
            f"{model._meta.table_name}: a batch with this request_id was stored with other rows "
            "(a repeat must send the same rows)"
        )
    return [found for found in ids if found is not None]


def _stored_statement(model: type[pw.Model]) -> Statement:
    request = model._meta.fields["request_id"]
    return Statement(lambda: model.select(model._meta.primary_key).where(request == Slot(0)))


def _insert_statement(model: type[pw.Model], names: tuple[str, ...], rows: int) -> Statement:
    return shape(
        ("insert", model, names, rows), lambda: Statement(lambda: insert_query(model, names, rows))
    )


def _values(names: tuple[str, ...], rows: Iterable[Mapping[str, Any]]) -> list[Any]:
    return [row[name] for row in rows for name in names]


def insert_rows(model: type[pw.Model], rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """INSERT rows (dicts keyed by field name, all with the same keys) in one statement; their ids.

    Values are expected in column form already (validate.py's output: Decimals quantised).
    """
    if not rows:
        return []
    names = tuple(rows[0])
    cursor = _insert_statement(model, names, len(rows)).execute(_values(names, rows))
    return [found[0] for found in cursor.fetchall()]


def insert_new_row(model: type[pw.Model], row: Mapping[str, Any]) -> int | None:
    """INSERT one row (a dict keyed by field name); its id, or None when its request_id is
    already stored (nothing written)."""
    names = tuple(row)
    return _insert_statement(model, names, 1).scalar([row[name] for name in names])


def insert_row(model: type[pw.Model], row: Mapping[str, Any]) -> int:
    """INSERT one row (a dict keyed by field name) and return its id; a row whose request_id
    is already stored is not written again, and the stored row's id is returned."""
    new_id = insert_new_row(model, row)
    if new_id is None:
        return stored_id(model, row["request_id"])
    return new_id


# A child column computed from the parent's new id: (PostgreSQL: an expression of the id and of
# the column's slot; SQLite: a function of the id and the column's value). Kept at module level:
# its identity keys the statement's shape.
FromParent = tuple[Callable[[pw.Node, Slot], pw.Node], Callable[[int, Any], Any]]


def insert_with_child(
    parent: type[pw.Model],
    row: Mapping[str, Any],
    child: type[pw.Model],
    child_row: Mapping[str, Any],
    link: str,
    from_parent: Mapping[str, FromParent] | None = None,
) -> int:
    """INSERT a parent row and one child row pointing at it (`link` is the child's FK field;
    `from_parent` child columns are computed from the parent's id).

    PostgreSQL: one statement (a data-modifying CTE; the child's row selects the parent's id);
    SQLite: two statements in one transaction. Either way atomic; returns the parent's id. A
    parent whose request_id is stored already is not written again, nor is its child: the
    stored parent's id is returned.
    """
    derived = from_parent or {}
    names = tuple(row)
    plain = tuple(name for name in child_row if name not in derived)
    computed = tuple(name for name in child_row if name in derived)
    if connection.is_postgres():
        values = [*(row[name] for name in names), *(child_row[name] for name in plain),
                  *(child_row[name] for name in computed)]  # fmt: skip

        def build() -> pw.Node:
            inserted = insert_query(parent, names).cte("parent")
            parent_id = inserted.c.id
            first = len(names) + len(plain)
            fields = child._meta.fields
            fixed: dict[str, pw.Node] = {link: parent_id}
            for index, name in enumerate(computed):
                fixed[name] = derived[name][0](parent_id, Slot(first + index, fields[name]))
            return (
                insert_query(child, plain, first_slot=len(names), fixed=fixed, after=inserted)
                .with_cte(inserted)
                .returning(child._meta.fields[link])
            )

        key = ("with child", parent, names, child, plain, link,
               tuple((name, id(derived[name])) for name in computed))  # fmt: skip
        both = shape(key, lambda: Statement(build))

        def one_statement() -> int:
            new_id = both.scalar(values)
            return stored_id(parent, row["request_id"]) if new_id is None else new_id

        return connection.run(one_statement, transaction=False, idempotent=True)

    def work() -> int:
        parent_id = insert_new_row(parent, row)
        if parent_id is None:
            return stored_id(parent, row["request_id"])
        values = {name: derived[name][1](parent_id, child_row[name]) for name in computed}
        insert_row(child, {link: parent_id, **child_row, **values})
        return parent_id

    return connection.run(work, idempotent=True)


class Update:
    """UPDATE `model` SET the given columns WHERE `where`: one compiled statement per set of
    columns changed. Columns the model touches on update (`updated_at`, ...) are set to now
    unless given. A change is a value (bound through its field) or a peewee expression, kept
    alive at module level (its identity keys the shape), whose `Slot`s are run()'s keywords.
    """

    def __init__(self, model: type[pw.Model], where: pw.Node):
        self.model = model
        self.where = where
        self._touched = (
            tuple(name for name in model._touch_on_update)
            if hasattr(model, "_touch_on_update")
            else ()
        )

    def run(self, changes: Mapping[str, Any], **params: Any) -> int:
        """Run it; the number of rows changed. `params` fill the WHERE's and expressions' slots."""
        key = tuple(
            (name, id(value) if isinstance(value, pw.Node) else None)
            for name, value in changes.items()
        )
        statement = shape(("update", self, key), lambda: self._statement(changes))
        values: dict[Any, Any] = dict(params)
        for name, value in changes.items():
            if not isinstance(value, pw.Node):
                values[("set", name)] = value
        return statement.rowcount(values)

    def _statement(self, changes: Mapping[str, Any]) -> Statement:
        fields = self.model._meta.fields
        data: dict[pw.Field, Any] = {
            fields[name]: Slot(("set", name), fields[name], default=utc_now)
            for name in self._touched
            if name not in changes
        }
        for name, value in changes.items():
            data[fields[name]] = (
                value if isinstance(value, pw.Node) else Slot(("set", name), fields[name])
            )
        # pw.ModelUpdate, not Model.update: that one would fold a touch time into the SQL text.
        return Statement(lambda: pw.ModelUpdate(self.model, data).where(self.where))


def session_scoped(
    make: Callable[[pw.Node | None], Statement], model: type[pw.Model]
) -> dict[bool, Any]:
    """A statement in its two shapes, keyed by whether a session is given: `make(None)` for
    every session, `make(condition)` with `model.session == Slot("session")`."""
    return {False: make(None), True: make(model._meta.fields["session"] == Slot("session"))}


def both(*conditions: pw.Node | None) -> pw.Node | None:
    """The given conditions ANDed (None when none is given)."""
    given = [condition for condition in conditions if condition is not None]
    if not given:
        return None
    combined: Any = given[0]
    for condition in given[1:]:
        combined = combined & condition
    return combined


class Rows(Statement):
    """A SELECT of every column of `model` (`tail` adds WHERE/ORDER BY/LIMIT with slots), read
    back as plain dicts."""

    def __init__(
        self,
        model: type[pw.Model],
        tail: Callable[[pw.ModelSelect], pw.ModelSelect] | None = None,
        *,
        build: Callable[[], pw.Node] | None = None,
    ):
        self.model = model
        if build is None:
            finish = tail or (lambda query: query)
            build = lambda: finish(model.select(*model._meta.sorted_fields))  # noqa: E731
        super().__init__(build)

    def fetch(self, values: Any = (), /, **named: Any) -> list[dict[str, Any]]:
        """The matching rows as dicts keyed by column name."""
        cursor = self.execute(values, **named)
        return rows_as_dicts(cursor, self.model)


def rows_as_dicts(cursor: Any, model: type[pw.Model], start: int = 0) -> list[dict[str, Any]]:
    """The cursor's rows as dicts of `model`'s columns, read from column `start` on."""
    to_dict = row_reader(cursor, model, start)
    return [to_dict(row) for row in cursor.fetchall()]


def row_reader(
    cursor: Any, model: type[pw.Model], start: int = 0
) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A function turning one of the cursor's rows into a dict of `model`'s columns (those
    from column `start` on)."""
    postgres = connection.is_postgres()
    names, converted = _row_layout(model, postgres, postgres and _utc_session(cursor))
    end = start + len(names)

    def read(row: Sequence[Any]) -> dict[str, Any]:
        # dict(zip()) runs in C; only the few columns with a reader are touched again.
        found = dict(zip(names, row[start:end] if start or end != len(row) else row, strict=True))
        for index, name, convert in converted:
            value = row[start + index]
            if value is not None:
                found[name] = convert(value)
        return found

    return read


def to_qmark(sql: str) -> str:
    """Rewrite DB-API `%s` placeholders (and `%%`) for SQLite's `?` style (execute_query)."""
    return _FORMAT_PLACEHOLDER.sub(lambda m: "%" if m.group(0) == "%%" else "?", sql)
