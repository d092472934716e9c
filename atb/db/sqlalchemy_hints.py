"""What a SQLAlchemy user meets on the database `get_session()` yields: a Peewee database, not a
`Session`. The Session methods people reach for by habit (`session.query(Trade)`, `session.add`)
raise an AttributeError that names the Peewee way instead of a bare "has no attribute".
"""

from __future__ import annotations

import peewee as pw

__all__ = ["HintedSqliteDatabase", "SqlAlchemyHints"]

_README = "see README.md, 'Querying the models'"
_HINTS = {
    "query": "query the model itself: Trade.select().where(Trade.source == TradeSource.LIVE)",
    "add": "create rows through the model: Trade.create(...), or instance.save()",
    "add_all": "insert many rows at once: Trade.insert_many(rows).execute()",
    "merge": "update through the model: instance.save(), or Trade.update(...).where(...).execute()",
    "delete": "delete through the model: instance.delete_instance(), or Trade.delete().where(...)",
    "flush": "Peewee writes each statement at once; there is nothing to flush",
    "refresh": "read the row again: Trade.get_by_id(trade.id)",
    "expunge": "Peewee keeps no identity map; there is nothing to expunge",
    "scalar": "ask the query: Trade.select(fn.COUNT(Trade.id)).scalar()",
    "scalars": "iterate the query itself: for trade in Trade.select(): ...",
    "bulk_save_objects": "insert many rows at once: Trade.insert_many(rows).execute()",
}


class _Hint:
    """A class attribute whose every read raises AttributeError with the Peewee equivalent."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None):
        raise AttributeError(
            f"{self.name}(): get_session() yields a Peewee database, not a SQLAlchemy Session; "
            f"{_HINTS[self.name]} ({_README})"
        )


class SqlAlchemyHints:
    """Mixed into atb's database classes; `hasattr(db, 'query')` stays False."""

    query = _Hint()
    add = _Hint()
    add_all = _Hint()
    merge = _Hint()
    delete = _Hint()
    flush = _Hint()
    refresh = _Hint()
    expunge = _Hint()
    scalar = _Hint()
    scalars = _Hint()
    bulk_save_objects = _Hint()


class HintedSqliteDatabase(SqlAlchemyHints, pw.SqliteDatabase):
    """`pw.SqliteDatabase` with the SQLAlchemy hints (unit tests, `sqlite://` URLs)."""
