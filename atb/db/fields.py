"""Column types with the database-level guarantees atb relies on.

Every backend difference in column definitions lives here:
- `EnumField`: VARCHAR plus a CHECK constraint, so raw SQL cannot store a value outside the enum.
- `MoneyField`: exact numeric(18,8); reads return `Decimal`.
- `ExactSumField`: numeric without precision or scale, for rollups' exact sums.
- `JsonField`: jsonb on PostgreSQL, JSON text on SQLite; unset is SQL NULL; numbers are stored
  exactly, NaN/inf become null, numpy scalars numbers, datetimes ISO 8601, and what JSON cannot
  hold is refused (atb/db/jsoncodec.py).
- `UTCDateTimeField`: timestamptz on PostgreSQL; aware values are converted to UTC, naive ones are
  taken as UTC, reads return aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from typing import Any

import peewee as pw

from . import jsoncodec

UTC = dt.UTC
MONEY_DIGITS = 18
MONEY_PLACES = 8


def server_default(sql: str) -> pw.SQL:
    """A DEFAULT clause that the database applies to raw INSERTs too."""
    return pw.SQL(f"DEFAULT {sql}")


def _with_default(kwargs: dict, sql: str | None) -> dict:
    if sql is not None:
        kwargs["constraints"] = [*kwargs.get("constraints", ()), server_default(sql)]
    return kwargs


class EnumField(pw.CharField):
    """A VARCHAR holding an enum member name, guarded by a CHECK constraint listing the members."""

    def __init__(self, enum_class: type[enum.Enum], *args: Any, **kwargs: Any):
        self.enum_class = enum_class
        names = [member.value for member in enum_class]
        kwargs.setdefault("max_length", max(len(name) for name in names))
        default = kwargs.pop("server_default", None)
        self.server_default = None if default is None else enum_class(default).value
        if self.server_default is not None:
            _with_default(kwargs, f"'{self.server_default}'")
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> dict[str, str]:
        """Constructor arguments beyond peewee's, as source code (for generated migrations)."""
        params = {"enum_class": f"enums.{self.enum_class.__name__}"}
        if self.server_default is not None:
            params["server_default"] = repr(self.server_default)
        return params

    def bind(self, model, name, set_attribute=True):
        super().bind(model, name, set_attribute)
        allowed = ", ".join(f"'{member.value}'" for member in self.enum_class)
        self.constraints = [
            *(self.constraints or ()),
            pw.Check(f'"{self.column_name}" IN ({allowed})'),
        ]

    def db_value(self, value):
        if value is None or isinstance(value, pw.Node):
            return value
        return self.enum_class(value).value

    def python_value(self, value):
        if value is None:
            return None
        return self.enum_class(value)


class MoneyField(pw.DecimalField):
    """Exact numeric(18,8): prices, quantities, P&L, ratios. Never a float."""

    def __init__(self, *args: Any, server_default: str | None = None, **kwargs: Any):
        kwargs.setdefault("max_digits", MONEY_DIGITS)
        kwargs.setdefault("decimal_places", MONEY_PLACES)
        kwargs.setdefault("auto_round", True)
        kwargs.setdefault("rounding", decimal.ROUND_HALF_EVEN)
        if server_default is not None:
            kwargs.setdefault("default", decimal.Decimal(server_default))
        self.server_default = server_default
        super().__init__(*args, **_with_default(kwargs, server_default))

    def deconstruct(self) -> dict[str, str]:
        return {} if self.server_default is None else {"server_default": repr(self.server_default)}

    def db_value(self, value):
        if isinstance(value, float):
            # A float's repr is its shortest exact decimal; never let binary noise through.
            value = decimal.Decimal(repr(value))
        return super().db_value(value)


class ExactSumField(pw.DecimalField):
    """Unconstrained numeric (PostgreSQL): sums of money, of squares and of quotients kept to
    their last digit, so figures combined from them equal the figures over the rows themselves."""

    field_type = "NUMERIC"

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("auto_round", False)
        super().__init__(*args, **kwargs)

    def get_modifiers(self) -> list[int]:
        return []  # no (precision, scale)

    def deconstruct(self) -> dict[str, str]:
        return {}


def to_json_safe(value: Any) -> Any:
    """A payload as plain JSON values, numbers exact (see atb/db/jsoncodec.py); raises
    `jsoncodec.JsonRefused` (a ValueError naming the path) for what JSON cannot hold."""
    return jsoncodec.sanitize(value)


def dumps_json(value: Any) -> str:
    """Serialise a payload compactly with exact numbers; never writes NaN or Infinity."""
    return jsoncodec.dumps(value)


class JsonField(pw.JSONField):
    """jsonb on PostgreSQL, JSON text on SQLite. None is SQL NULL, not the JSON text `null`."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("dumps", dumps_json)
        kwargs.setdefault("loads", jsoncodec.loads)  # SQLite; PostgreSQL: connection.py
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> dict[str, str]:
        return {}


def as_utc(value: dt.datetime) -> dt.datetime:
    """Aware datetimes are converted to UTC; naive ones are taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


class UTCDateTimeField(pw.DateTimeField):
    """timestamptz on PostgreSQL (text on SQLite). Always UTC in, aware UTC out."""

    field_type = "TIMESTAMPTZ"

    def __init__(self, *args: Any, server_now: bool = False, **kwargs: Any):
        self.server_now = server_now
        if server_now:
            kwargs.setdefault("default", utc_now)
            _with_default(kwargs, "CURRENT_TIMESTAMP")
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> dict[str, str]:
        return {"server_now": "True"} if self.server_now else {}

    def db_value(self, value):
        if isinstance(value, dt.datetime):
            value = as_utc(value)
            db = self.model._meta.database
            if not isinstance(getattr(db, "obj", db), pw.PostgresqlDatabase):
                # SQLite compares timestamps as text: store one canonical naive-UTC form.
                value = value.replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, dt.datetime):
            return as_utc(value)
        return value


class FlagField(pw.BooleanField):
    """A boolean with a server-side default, so raw INSERTs get false/true rather than NULL."""

    def __init__(self, *args: Any, server_default: bool = False, **kwargs: Any):
        kwargs.setdefault("default", server_default)
        self.server_default = server_default
        super().__init__(*args, **_with_default(kwargs, "true" if server_default else "false"))

    def deconstruct(self) -> dict[str, str]:
        return {"server_default": repr(self.server_default)}


class CountField(pw.IntegerField):
    """An integer counter with a server-side default (0 unless told otherwise)."""

    def __init__(self, *args: Any, server_default: int = 0, **kwargs: Any):
        kwargs.setdefault("default", server_default)
        self.server_default = server_default
        super().__init__(*args, **_with_default(kwargs, str(int(server_default))))

    def deconstruct(self) -> dict[str, str]:
        return {"server_default": repr(self.server_default)}
