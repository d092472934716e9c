"""The one place caller input becomes clean values or a `ValidationError` — before any SQL runs.

Every coercer takes the field name first so the error names it, and returns the value in the form
the column stores (Decimal quantised to 8 places, enum member, aware UTC datetime, ...).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import functools
import math
import numbers
import re
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Literal, TypeVar, overload

import peewee as pw

from .enums import OrderStatus, PartialOperationType, PositionSide, TradeSource
from .errors import ValidationError
from .fields import (
    MONEY_DIGITS,
    MONEY_PLACES,
    EnumField,
    JsonField,
    MoneyField,
    as_utc,
    to_json_safe,
)
from .jsoncodec import JsonRefused

E = TypeVar("E", bound=enum.Enum)

_QUANTUM = decimal.Decimal(1).scaleb(-MONEY_PLACES)
_MONEY_LIMIT = decimal.Decimal(10) ** (MONEY_DIGITS - MONEY_PLACES)

# Spellings other systems use for our enum members.
SIDE_ALIASES = {"BUY": PositionSide.LONG, "SELL": PositionSide.SHORT}
ORDER_STATUS_ALIASES = {
    "REJECTED": OrderStatus.FAILED,
    "EXPIRED": OrderStatus.CANCELLED,
    "CANCELED": OrderStatus.CANCELLED,
    "NEW": OrderStatus.OPEN,
    "PARTIALLY-FILLED": OrderStatus.PARTIALLY_FILLED,
    "PARTIAL": OrderStatus.PARTIALLY_FILLED,
}


def _allowed(enum_class: type[enum.Enum], aliases: Mapping[str, Any] | None) -> str:
    names = [m.value for m in enum_class]
    text = ", ".join(names)
    if aliases:
        text += " (also " + ", ".join(f"{k.lower()}→{v.value}" for k, v in aliases.items()) + ")"
    return text


@overload
def enum_value(
    field: str,
    value: Any,
    enum_class: type[E],
    *,
    aliases: Mapping[str, E] | None = None,
    optional: Literal[False] = False,
) -> E: ...
@overload
def enum_value(
    field: str,
    value: Any,
    enum_class: type[E],
    *,
    aliases: Mapping[str, E] | None = None,
    optional: bool,
) -> E | None: ...
def enum_value(
    field: str,
    value: Any,
    enum_class: type[E],
    *,
    aliases: Mapping[str, E] | None = None,
    optional: bool = False,
) -> E | None:
    """An enum member from a member, its name/value in any case, or a listed alias."""
    if value is None:
        if optional:
            return None
        raise ValidationError(field, f"is required; allowed: {_allowed(enum_class, aliases)}")
    if isinstance(value, enum_class):
        return value
    if isinstance(value, enum.Enum):
        value = value.value if isinstance(value.value, str) else value.name
    if isinstance(value, str):
        key = value.strip().upper()
        try:
            return enum_class(key)
        except ValueError:
            pass
        if key in enum_class.__members__:
            return enum_class[key]
        if aliases and key in aliases:
            return aliases[key]
    raise ValidationError(
        field, f"{value!r} is not allowed; allowed: {_allowed(enum_class, aliases)}"
    )


def side(value: Any, field: str = "side") -> PositionSide:
    return enum_value(field, value, PositionSide, aliases=SIDE_ALIASES)


def order_status(value: Any, field: str = "status") -> OrderStatus:
    return enum_value(field, value, OrderStatus, aliases=ORDER_STATUS_ALIASES)


def trade_source(value: Any, field: str = "source") -> TradeSource:
    return enum_value(field, value, TradeSource)


def operation_type(value: Any, field: str = "operation_type") -> PartialOperationType:
    return enum_value(field, value, PartialOperationType)


@overload
def money(
    field: str,
    value: Any,
    *,
    optional: Literal[False] = False,
    positive: bool = False,
    non_negative: bool = False,
) -> decimal.Decimal: ...
@overload
def money(
    field: str,
    value: Any,
    *,
    optional: bool,
    positive: bool = False,
    non_negative: bool = False,
) -> decimal.Decimal | None: ...
def money(
    field: str,
    value: Any,
    *,
    optional: bool = False,
    positive: bool = False,
    non_negative: bool = False,
) -> decimal.Decimal | None:
    """An exact Decimal rounded half-even to 8 places, within numeric(18,8); finite only."""
    if value is None:
        if optional:
            return None
        raise ValidationError(field, "is required (a finite number)")
    # The exact common types first: the ABC checks (numbers.Number, ...) are slow.
    kind = type(value)
    if kind is decimal.Decimal:
        number = value
    elif kind is int:
        number = decimal.Decimal(value)
    elif kind is float:
        number = decimal.Decimal(repr(value))  # a float's repr is its shortest exact decimal
    elif kind is not str and (
        kind is bool or not isinstance(value, (numbers.Number, str, decimal.Decimal))
    ):
        if hasattr(value, "item") and callable(value.item):  # numpy scalar
            return money(
                field, value.item(), optional=optional, positive=positive, non_negative=non_negative
            )
        raise ValidationError(field, f"{value!r} is not a number")
    else:
        number = _to_decimal(field, value)
    if not number.is_finite():
        raise ValidationError(field, f"{value!r} is not finite (NaN and infinity are refused)")
    try:
        number = number.quantize(_QUANTUM, rounding=decimal.ROUND_HALF_EVEN)
    except decimal.InvalidOperation:
        raise ValidationError(field, f"{value!r} is outside numeric(18,8)") from None
    if abs(number) >= _MONEY_LIMIT:
        raise ValidationError(
            field, f"{value!r} is outside numeric(18,8) (absolute value below 10^10 required)"
        )
    if positive and number <= 0:
        raise ValidationError(field, f"{value!r} must be greater than 0")
    if non_negative and number < 0:
        raise ValidationError(field, f"{value!r} must not be negative")
    return number + 0  # normalise -0 to 0


# A number as text: ASCII digits, optional sign, point and exponent (NaN/inf are judged later).
_NUMBER_TEXT = re.compile(
    r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)\s*",
    re.IGNORECASE | re.ASCII,
)


def _to_decimal(field: str, value: Any) -> decimal.Decimal:
    """money()'s conversion of text and of numbers other than exact Decimal/int/float."""
    if isinstance(value, str) and not _NUMBER_TEXT.fullmatch(value):
        # Decimal() would also take '١٢٣' (other scripts' digits) and '1_000'.
        raise ValidationError(field, f"{value!r} is not a number (ASCII digits only)")
    try:
        if isinstance(value, float):
            return decimal.Decimal(repr(value))
        if isinstance(value, numbers.Rational) and not isinstance(value, int):
            return decimal.Decimal(int(value.numerator)) / decimal.Decimal(int(value.denominator))
        return decimal.Decimal(value.strip() if isinstance(value, str) else value)
    except (decimal.InvalidOperation, ValueError, TypeError):
        raise ValidationError(field, f"{value!r} is not a number") from None


@overload
def integer(
    field: str,
    value: Any,
    *,
    optional: Literal[False] = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int: ...
@overload
def integer(
    field: str,
    value: Any,
    *,
    optional: bool,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None: ...
def integer(
    field: str,
    value: Any,
    *,
    optional: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """A whole number (int, integral float/Decimal, or digits) within the column's range."""
    if value is None:
        if optional:
            return None
        raise ValidationError(field, "is required (a whole number)")
    if isinstance(value, bool):
        raise ValidationError(field, f"{value!r} is not a whole number")
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (int, float)):
        value = value.item()
    try:
        if isinstance(value, int):
            number = value
        elif isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                raise ValueError
            number = int(value)
        elif isinstance(value, (str, decimal.Decimal)):
            d = decimal.Decimal(value.strip() if isinstance(value, str) else value)
            if not d.is_finite() or d != d.to_integral_value():
                raise ValueError
            number = int(d)
        else:
            raise ValueError
    except (ValueError, decimal.InvalidOperation, TypeError):
        raise ValidationError(field, f"{value!r} is not a whole number") from None
    low = -(2**31) if minimum is None else minimum
    high = 2**31 - 1 if maximum is None else maximum
    if not low <= number <= high:
        raise ValidationError(field, f"{number} is outside the allowed range {low}..{high}")
    return number


@overload
def text(
    field: str,
    value: Any,
    max_length: int | None = None,
    *,
    optional: Literal[False] = False,
    allow_empty: bool = False,
) -> str: ...
@overload
def text(
    field: str,
    value: Any,
    max_length: int | None = None,
    *,
    optional: bool,
    allow_empty: bool = False,
) -> str | None: ...
def text(
    field: str,
    value: Any,
    max_length: int | None = None,
    *,
    optional: bool = False,
    allow_empty: bool = False,
) -> str | None:
    """A string no longer than its column, without NUL characters (PostgreSQL refuses them)."""
    if value is None:
        if optional:
            return None
        raise ValidationError(field, "is required (text)")
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(value, str):
        raise ValidationError(field, f"{value!r} is not text")
    if "\x00" in value:
        raise ValidationError(field, "contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(field, "contains a lone surrogate (not valid Unicode)") from None
    if not allow_empty and not value.strip():
        if optional:
            return None
        raise ValidationError(field, "must not be empty")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(
            field, f"is {len(value)} characters long; at most {max_length} allowed"
        )
    return value


# Room on both sides for time-zone shifts and the day arithmetic of daily metrics.
_EARLIEST, _LATEST = dt.datetime(1900, 1, 1), dt.datetime(9999, 1, 1)


@overload
def timestamp(field: str, value: Any, *, optional: Literal[False] = False) -> dt.datetime: ...
@overload
def timestamp(field: str, value: Any, *, optional: bool) -> dt.datetime | None: ...
def timestamp(field: str, value: Any, *, optional: bool = False) -> dt.datetime | None:
    """An aware UTC datetime: aware inputs converted, naive ones taken as UTC, ISO strings parsed."""
    if value is None:
        if optional:
            return None
        raise ValidationError(field, "is required (a datetime)")
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(field, f"{value!r} is not an ISO 8601 datetime") from None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, dt.datetime):
        if not (_EARLIEST <= value.replace(tzinfo=None) <= _LATEST):
            raise ValidationError(
                field,
                f"{value.isoformat()} is outside the supported range (1900-01-01 to 9999-01-01)",
            )
        return as_utc(value)
    raise ValidationError(field, f"{value!r} is not a datetime")


@overload
def flag(field: str, value: Any, *, optional: Literal[False] = False) -> bool: ...
@overload
def flag(field: str, value: Any, *, optional: bool) -> bool | None: ...
def flag(field: str, value: Any, *, optional: bool = False) -> bool | None:
    """True or False (a numpy bool too); anything else is refused."""
    if value is None:
        if optional:
            return None
        raise ValidationError(field, "is required (true or false)")
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and callable(value.item):
        return flag(field, value.item(), optional=optional)
    raise ValidationError(field, f"{value!r} is not true or false")


def json_payload(field: str, value: Any, *, optional: bool = True) -> Any:
    """A JSON-safe copy (numbers exact, NaN/inf → null, datetimes → ISO); None stays SQL NULL.

    Bytes, arbitrary objects, colliding keys, NUL characters and lone surrogates are refused,
    naming the path inside the payload (e.g. `details.prices[3]`)."""
    if value is None:
        if optional:
            return None
        raise ValidationError(field, "is required (a JSON object or list)")
    try:
        return to_json_safe(value)
    except RecursionError:
        raise ValidationError(field, "is nested too deeply to store as JSON") from None
    except JsonRefused as refused:
        where = f"{field}.{refused.path}" if refused.path else field
        raise ValidationError(where, refused.reason) from None


@overload
def choice(
    field: str,
    value: Any,
    allowed: tuple[str, ...],
    *,
    optional: Literal[False] = False,
) -> str: ...
@overload
def choice(
    field: str,
    value: Any,
    allowed: tuple[str, ...],
    *,
    optional: bool,
) -> str | None: ...
def choice(
    field: str,
    value: Any,
    allowed: tuple[str, ...],
    *,
    optional: bool = False,
) -> str | None:
    """One of a soft vocabulary (severity, period, ...), matched case-insensitively, stored as listed."""
    if value is None:
        if optional:
            return None
        raise ValidationError(field, f"is required; allowed: {', '.join(allowed)}")
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        key = value.strip().lower()
        for option in allowed:
            if option.lower() == key:
                return option
    raise ValidationError(field, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")


# ---- validation read from the models ------------------------------------------------------------


_ENUM_ALIASES: dict[type[enum.Enum], Mapping[str, Any]] = {
    PositionSide: SIDE_ALIASES,
    OrderStatus: ORDER_STATUS_ALIASES,
}


def column(field: pw.Field, value: Any, *, name: str | None = None, **rules: Any) -> Any:
    """`value` cleaned for one model column: the kind, max_length and nullability come from the
    field; `rules` add what the model cannot say (positive=True, non_negative=True, minimum=...,
    aliases=..., allow_empty=True, optional=True for an argument with a default). Errors name
    `name`, else the column (`position_id` for a foreign key)."""
    return column_check(field, name=name, **rules)(value)


# Checks already made, keyed by the field's identity, the label and the rules (the field is kept
# in the value and compared by identity: peewee fields overload ==, and an id can be reused).
_CHECKS: dict[Hashable, tuple[pw.Field, Callable[[Any], Any]]] = {}


def column_check(field: pw.Field, *, name: str | None = None, **rules: Any) -> Callable[[Any], Any]:
    """`column` for one field and rules with every decision about the field made once: the
    function that cleans one value. Made once per (field, name, rules) and kept, so a call
    that cleans a few values pays a dict lookup, not the choice of checks."""
    try:
        key: Hashable = (id(field), name, frozenset(rules.items()))
        found = _CHECKS.get(key)
    except TypeError:  # an unhashable rule value: made for this call only
        return _make_check(field, name, rules)
    if found is not None and found[0] is field:
        return found[1]
    check = _make_check(field, name, dict(rules))
    _CHECKS[key] = (field, check)
    return check


def _make_check(field: pw.Field, name: str | None, rules: dict[str, Any]) -> Callable[[Any], Any]:
    # functools.partial, not a lambda: called once per column per row, it binds the label and
    # the rules in C (0.3 µs a column less; log_trades runs 20 of them a row).
    label = name or (field.column_name if isinstance(field, pw.ForeignKeyField) else field.name)
    rules["optional"] = rules.pop("optional", field.null)
    if isinstance(field, EnumField):
        rules.setdefault("aliases", _ENUM_ALIASES.get(field.enum_class))
        return functools.partial(enum_value, label, enum_class=field.enum_class, **rules)
    if isinstance(field, (pw.CharField, pw.TextField)):
        return functools.partial(text, label, max_length=getattr(field, "max_length", None), **rules)
    check: Callable[..., Any]
    if isinstance(field, MoneyField):
        check = money
    elif isinstance(field, JsonField):
        check = json_payload
    elif isinstance(field, pw.DateTimeField):
        check = timestamp
    elif isinstance(field, pw.BooleanField):
        check = flag
    elif isinstance(field, pw.ForeignKeyField):
        rules["minimum"] = rules.pop("minimum", 1)
        check = integer
    elif isinstance(field, pw.IntegerField):
        check = integer
    else:
        raise TypeError(f"no validation for {type(field).__name__} {field.name}")
    return functools.partial(check, label, **rules)


class Cleaner:
    """How one model's rows are validated: each value cleaned as its column declares it (see
    `column`), plus `rules` for what the model cannot say, keyed by field name. Made once per
    write path at import (`_EVENT_ROW = Cleaner(SystemEvent, rules)`); each column's check is
    chosen on first use and kept. Field names the model lacks are a programming error
    (KeyError)."""

    def __init__(self, model: type[pw.Model], rules: Mapping[str, Mapping[str, Any]] | None = None):
        self._fields = model._meta.fields
        self._rules = rules or {}
        self._checks: dict[str, Callable[[Any], Any]] = {}

    def __call__(self, **values: Any) -> dict[str, Any]:
        return self.clean(values)

    def clean(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` (keyed by field name) cleaned: a new dict, in the same order."""
        checks = self._checks
        try:
            return {name: checks[name](value) for name, value in values.items()}
        except KeyError:
            pass  # a field seen for the first time (checks are pure: running them again is safe)
        for name in values:
            if name not in checks:
                checks[name] = column_check(self._fields[name], **self._rules.get(name, {}))
        return {name: checks[name](value) for name, value in values.items()}
