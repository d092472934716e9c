"""JSON payloads on both backends: numbers stored and read back exactly, and what JSON cannot
hold refused with a ValidationError naming the path, nothing written."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atb.db import ValidationError
from atb.db.manager import DatabaseManager
from atb.db.models import SystemEvent


def _stored_details(manager: DatabaseManager, details) -> object:
    event_id = manager.log_event("TEST", "json", details=details)
    return SystemEvent.get_by_id(event_id).details


@pytest.mark.parametrize(
    ("given_", "read_back"),
    [
        (D("1e400"), D("1E+400")),
        (D("1e-400"), D("1E-400")),
        (D(2**53 + 1), 2**53 + 1),
        (D("12345678901234567890.123456789"), D("12345678901234567890.123456789")),
        (D("0.1"), 0.1),
        (D("12.50"), 12.5),
        (10**5000, 10**5000),
        (float("nan"), None),
    ],
    ids=["1e400", "1e-400", "2^53+1", "long-decimal", "0.1", "12.50", "5000-digit-int", "nan"],
)
def test_numbers_are_stored_and_read_back_exactly(manager, given_, read_back):
    assert _stored_details(manager, {"x": given_}) == {"x": read_back}


@pytest.mark.parametrize(
    ("details", "path", "reason"),
    [
        ({"a": b"raw"}, "details.a", "bytes are not JSON"),
        ({"a": [1, object()]}, "details.a[1]", "object is not JSON"),
        ({1: "int", "1": "str"}, "details.1", "same JSON key"),
        ({"a": "nul\x00inside"}, "details.a", "NUL"),
        ({"a": "lone \ud800"}, "details.a", "surrogate"),
        ({"k\x00": 1}, "details", "NUL"),
        ({"c": 1 + 2j}, "details.c", "complex is not JSON"),
    ],
)
def test_what_json_cannot_hold_is_refused_naming_the_path(manager, details, path, reason):
    with pytest.raises(ValidationError, match=reason) as caught:
        manager.log_event("TEST", "json", details=details)

    assert caught.value.field == path
    assert SystemEvent.select().count() == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


def _exact(number) -> D:
    return D(repr(number)) if isinstance(number, float) else D(number)


def _same_number(a, b) -> bool:
    return isinstance(b, (int, float, D)) and not isinstance(b, bool) and _exact(a) == _exact(b)


def _equivalent(given_, stored) -> bool:
    if isinstance(given_, bool) or given_ is None or isinstance(given_, str):
        return given_ == stored
    if isinstance(given_, (int, float, D)):
        return _same_number(given_, stored)
    if isinstance(given_, list):
        return len(given_) == len(stored) and all(map(_equivalent, given_, stored))
    return set(given_) == set(stored) and all(_equivalent(v, stored[k]) for k, v in given_.items())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
def test_any_json_value_is_stored_exactly_or_refused(manager, value):
    try:
        stored = _stored_details(manager, {"v": value})
    except ValidationError as refused:
        assert refused.field.startswith("details")  # a NUL or surrogate in generated text
        return
    assert _equivalent(value, stored["v"]), (value, stored["v"])
