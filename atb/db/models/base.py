"""The database proxy every atb model is bound to, and the base class that refreshes `updated_at`-style columns."""

from __future__ import annotations

from typing import Any, ClassVar

import peewee as pw

from atb.db.connection import database
from atb.db.fields import utc_now

__all__ = ["REQUEST_ID_LENGTH", "BaseModel", "database", "request_key"]

REQUEST_ID_LENGTH = 100


class BaseModel(pw.Model):
    """Common base: bound to `database`; fields named in `_touch_on_update` are set to now on every UPDATE."""

    # Names of the fields reset to the current UTC time whenever a row is updated through the ORM
    # (the reference's `onupdate=datetime.utcnow`).
    _touch_on_update: ClassVar[tuple[str, ...]] = ()
    # Every table's key; peewee would add the same field implicitly, but unnamed for type checkers.
    id = pw.AutoField()

    class Meta:
        database = database
        legacy_table_names = False

    def save(self, force_insert: bool = False, only: Any = None) -> Any:
        has_key = self._pk is not None  # type: ignore[attr-defined]  # peewee-private
        if self._touch_on_update and has_key and not force_insert:
            now = utc_now()
            for name in self._touch_on_update:
                setattr(self, name, now)
            if only is not None:
                only = [*only, *(self._meta.fields[name] for name in self._touch_on_update)]
        return super().save(force_insert=force_insert, only=only)

    @classmethod
    def update(cls, __data=None, **update):
        # Bulk `Model.update(...)` queries touch too, unless the caller sets the column explicitly.
        data = cls._normalize_data(__data, update)  # type: ignore[attr-defined]
        if cls._touch_on_update and isinstance(data, dict):
            now = utc_now()
            for name in cls._touch_on_update:
                data.setdefault(cls._meta.fields[name], now)
        return pw.ModelUpdate(cls, data)


def request_key() -> pw.CharField:
    """The `request_id` column of a table the manager logs to: the caller's (or the manager's
    generated) key of the call that wrote the row. Unique, so a repeated call (a caller's retry,
    or the manager's own after a lost connection) finds the row instead of adding a second one;
    NULL for rows written before the column existed or outside the manager."""
    return pw.CharField(max_length=REQUEST_ID_LENGTH, null=True, unique=True)
