"""JSON payloads, stored exactly or refused: what may go in, how numbers are written and read.

jsonb (and SQLite's JSON text) hold numbers of any precision, so atb writes a Decimal or a huge
integer as its exact digits, and reads back a number as a float only when the float is exactly
that number (otherwise as a Decimal). What JSON cannot hold is refused with the path of the
offending value: bytes, arbitrary objects, keys that collide once made strings, NUL characters
and lone surrogates (PostgreSQL refuses those; SQLite would store them). NaN and infinity
become null, as ML payloads expect.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import re
from collections.abc import Mapping
from typing import Any

UTC = dt.UTC
_SAFE_INT_BITS = 13_000  # ~3,900 digits: below Python's 4,300-digit int/str conversion limit
# A number literal this long may not survive a float (16+ significant digits, |exponent| >= 100).
_MAYBE_INEXACT = re.compile(r"[\d.]{16,}|[eE][+-]?\d{3}")


class JsonRefused(ValueError):
    """A value JSON cannot hold exactly; `path` locates it inside the payload ('' = the top)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


class _Number:
    """Exact number text, written into the JSON as it is (a Decimal's or a huge int's digits)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _check_text(text: str, path: str) -> str:
    if "\x00" in text:
        raise JsonRefused(path, "contains a NUL character, which JSON in PostgreSQL cannot hold")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRefused(path, "contains a lone surrogate (not valid Unicode)") from None
    return text


def _key(key: Any, path: str) -> str:
    """A mapping key as json.dumps would write it; other key types are refused."""
    if isinstance(key, str):
        return _check_text(key, path)
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float) and math.isfinite(key):
        return repr(key)
    raise JsonRefused(path, f"key {key!r} ({type(key).__name__}) is not a JSON object key")


def _decimal(value: decimal.Decimal) -> Any:
    if not value.is_finite():
        return None
    if value == value.to_integral_value() and abs(value) < 2**53:
        return int(value)
    as_float = float(value)
    if math.isfinite(as_float) and decimal.Decimal(repr(as_float)) == value:
        return as_float
    return _Number(str(value))


def sanitize(value: Any, path: str = "") -> Any:
    """Plain JSON values (exact numbers kept as `_Number`), or JsonRefused naming the path."""
    return _sanitize(value, path, [])


def _sanitize(value: Any, path: str, exact: list[_Number]) -> Any:
    """`sanitize`, appending every exact number it keeps to `exact`."""
    if isinstance(value, _Number):
        exact.append(value)
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _check_text(value, path)
    if isinstance(value, int):
        if value.bit_length() > _SAFE_INT_BITS:
            return _sanitize(_Number(format(decimal.Decimal(value), "f")), path, exact)
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return _sanitize(_decimal(value), path, exact)
    if isinstance(value, enum.Enum):
        return _sanitize(value.value, path, exact)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _key(key, path)
            here = f"{path}.{name}" if path else name
            if name in out:
                raise JsonRefused(here, f"two keys become the same JSON key {name!r}")
            out[name] = _sanitize(item, here, exact)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_sanitize(item, f"{path}[{i}]", exact) for i, item in enumerate(value)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise JsonRefused(path, "bytes are not JSON (decode them, or store them as base64 text)")
    # numpy scalars and arrays, without importing numpy.
    if hasattr(value, "tolist") and callable(value.tolist):
        return _sanitize(value.tolist(), path, exact)
    if hasattr(value, "item") and callable(value.item):
        return _sanitize(value.item(), path, exact)
    raise JsonRefused(path, f"a {type(value).__name__} is not JSON")


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, _Number):
        out.append(value.text)
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(key))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        out.append(json.dumps(value, allow_nan=False))


def dumps(value: Any) -> str:
    """Compact JSON text of a payload, numbers exact; JsonRefused for what JSON cannot hold."""
    exact: list[_Number] = []
    clean = _sanitize(value, "", exact)
    if not exact:  # no digits a float would lose: the C encoder
        return json.dumps(clean, separators=(",", ":"), allow_nan=False)
    out: list[str] = []
    _encode(clean, out)
    return "".join(out)


def _float_or_decimal(text: str) -> float | decimal.Decimal:
    number = float(text)
    if math.isfinite(number) and decimal.Decimal(repr(number)) == decimal.Decimal(text):
        return number
    return decimal.Decimal(text)


def _int_or_decimal(text: str) -> int | decimal.Decimal:
    try:
        return int(text)
    except ValueError:  # over Python's int/str digit limit
        return decimal.Decimal(text)


def loads(text: str | bytes) -> Any:
    """Parse JSON; a number a float cannot hold exactly comes back as a Decimal."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    if not _MAYBE_INEXACT.search(text):
        return json.loads(text)  # every number in it is exact as a float: the fast path
    return json.loads(text, parse_float=_float_or_decimal, parse_int=_int_or_decimal)
