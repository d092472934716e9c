"""Streaming bulk inserts: any number of rows, given as a generator, in bounded memory.

PostgreSQL: rows are sent in chunks of `CHUNK_ROWS` with COPY FROM STDIN (text format), the
fastest way into a table. A chunk first takes its ids from the table's sequence (one `SELECT
nextval(...) FROM generate_series`), so every id is known, in input order, without RETURNING.
Each round trip is a statement of its own, so `statement_timeout` bounds a chunk, and each gets
the call time bound afresh: a stream of a million rows is never cancelled for its total length,
only a chunk that stalls is. SQLite (unit tests): multi-row INSERTs of `SQLITE_BATCH` rows.
The caller runs this inside its transaction: all rows or none.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import islice
from typing import Any

import peewee as pw

from .. import connection
from ..fields import EnumField, JsonField, MoneyField, UTCDateTimeField, as_utc
from .statements import column_writer, insert_rows

CHUNK_ROWS = 5_000
SQLITE_BATCH = 1_000
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """`rows` in lists of `size` (the last one shorter), read lazily."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def insert_stream(
    model: type[pw.Model], chunked_rows: Iterable[Sequence[Mapping[str, Any]]]
) -> list[int]:
    """Insert every row (dicts keyed by field name, all with the keys of the first one, values
    in column form as validate.py gives them); the new ids in input order.

    On PostgreSQL one COPY at a time runs in a helper thread on this call's connection while
    this thread validates and spells out the next chunk (pulling `chunked_rows` is what
    validates it), so the server's work and Python's overlap; this thread touches the
    connection only between two COPYs."""
    if not connection.is_postgres():
        ids: list[int] = []
        for chunk in chunked_rows:
            for start in range(0, len(chunk), SQLITE_BATCH):
                ids.extend(insert_rows(model, chunk[start : start + SQLITE_BATCH]))
        return ids
    db = connection.bound_database()
    copier = _Copier(db)
    try:
        return _copy_stream(db, copier, model, chunked_rows)
    finally:
        copier.wait(raise_error=False)  # never leave a COPY running on the connection


def _copy_stream(
    db: pw.Database, copier: _Copier, model: type[pw.Model],
    chunked_rows: Iterable[Sequence[Mapping[str, Any]]],
) -> list[int]:  # fmt: skip
    ids: list[int] = []
    table = model._meta.table_name
    for chunk in chunked_rows:
        if not chunk:
            continue
        names = tuple(chunk[0])
        writers = _text_writers(model, names)
        lines = [
            "\t".join([write(row[name]) for name, write in zip(names, writers, strict=True)])
            for row in chunk
        ]
        copier.wait()  # the previous chunk is in: the connection is ours again
        connection.renew_call_bound()
        new_ids = [row[0] for row in db.execute_sql(_NEXT_IDS, (table, len(chunk))).fetchall()]
        text = "".join(f"{new_id}\t{line}\n" for new_id, line in zip(new_ids, lines, strict=True))
        copier.start(_copy_sql(model, names), text)
        ids.extend(new_ids)
    copier.wait()
    connection.renew_call_bound()  # for the COMMIT that follows
    return ids


class _Copier:
    """Runs one COPY at a time in a helper thread on the calling thread's connection."""

    def __init__(self, db: pw.Database):
        self._db = db
        self._conn = db.connection()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, sql: str, text: str) -> None:
        def run() -> None:
            try:  # the helper thread's round trip gets the default call bound from now
                self._db.copy_from(sql, io.StringIO(text), conn=self._conn)  # type: ignore[attr-defined]
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                self._error = exc

        self._thread = threading.Thread(target=run, name="atb-db-copy", daemon=True)
        self._thread.start()

    def wait(self, *, raise_error: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error


_NEXT_IDS = (
    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s) ORDER BY 1"
)


@lru_cache(maxsize=64)
def _copy_sql(model: type[pw.Model], names: tuple[str, ...]) -> str:
    fields = model._meta.fields
    columns = ", ".join(f'"{fields[name].column_name}"' for name in ("id", *names))
    return f'COPY "{model._meta.table_name}" ({columns}) FROM STDIN'


@lru_cache(maxsize=64)
def _text_writers(
    model: type[pw.Model], names: tuple[str, ...]
) -> tuple[Callable[[Any], str], ...]:
    return tuple(_text_writer(model, name) for name in names)


def _text_writer(model: type[pw.Model], name: str) -> Callable[[Any], str]:
    """The COPY text of a field's value: the column value (as the INSERT path would send it)
    spelled as PostgreSQL's text format reads it. The common kinds skip the generic path."""
    field = model._meta.fields[name]
    if isinstance(field, JsonField):
        dumps = field._dumps  # type: ignore[attr-defined]  # the JSON text jsonb parses
        return lambda value: "\\N" if value is None else dumps(value).translate(_ESCAPES)
    if isinstance(field, MoneyField | pw.IntegerField | pw.ForeignKeyField):
        return _plain  # Decimal (validate quantised it; numeric reads its exponent form) or int
    if isinstance(field, UTCDateTimeField):
        return _timestamp_text
    if isinstance(field, EnumField):  # the member's value: upper-case words, nothing to escape
        return lambda value: "\\N" if value is None else field.db_value(value)
    if isinstance(field, pw.CharField | pw.TextField):
        return lambda value: "\\N" if value is None else str(value).translate(_ESCAPES)
    convert = column_writer(model, name, True)
    return lambda value: _text(convert(value))


def _timestamp_text(value: Any) -> str:
    if value is None:
        return "\\N"
    # validate.py gives aware UTC datetimes: no conversion needed (a call less per column)
    return (value if value.tzinfo is dt.UTC else as_utc(value)).isoformat()


def _plain(value: Any) -> str:
    return "\\N" if value is None else str(value)


def _text(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)  # Decimal (numeric reads its exponent form too), float
