"""Column types and the migration path on SQLite (fast logic checks; PostgreSQL has its own tests)."""

import datetime as dt
import json
import math
from decimal import Decimal

import peewee as pw
import pytest
from helpers import make_session

from atb.db.enums import EventType, PositionSide, TradeSource
from atb.db.fields import dumps_json, to_json_safe
from atb.db.migrate import HISTORY_TABLE, available_migrations, migration_state
from atb.db.models import ALL_MODELS, SystemEvent, TradingSession


def test_the_sqlite_fixture_builds_the_schema_through_the_migrations(sqlite_db):
    tables = set(sqlite_db.get_tables())
    assert {m._meta.table_name for m in ALL_MODELS} | {HISTORY_TABLE} <= tables
    assert migration_state().applied == available_migrations()
    assert migration_state().pending == ()


def test_sqlite_enforces_the_enum_check_for_raw_sql(sqlite_db):
    with pytest.raises(pw.IntegrityError):
        sqlite_db.execute_sql(
            "INSERT INTO trading_sessions (start_time, mode, initial_balance, strategy_name, symbol,"
            " timeframe) VALUES ('2026-01-01', 'lol', 1, 's', 'x', '1h')"
        )
    assert TradingSession.select().count() == 0


def test_enum_columns_read_back_as_members(sqlite_db):
    row = make_session(mode="PAPER")
    mode = TradingSession.get_by_id(row.id).mode
    assert mode is TradeSource.PAPER


def test_money_columns_round_half_even_to_eight_places(sqlite_db):
    row = make_session(initial_balance=Decimal("1.123456785"))
    assert TradingSession.get_by_id(row.id).initial_balance == Decimal("1.12345678")


def test_a_float_money_value_is_stored_as_its_shortest_decimal(sqlite_db):
    row = make_session(initial_balance=0.1 + 0.2)
    assert TradingSession.get_by_id(row.id).initial_balance == Decimal("0.30000000")


def test_naive_datetimes_are_taken_as_utc_and_aware_ones_converted(sqlite_db):
    naive = make_session(start_time=dt.datetime(2026, 3, 1, 9, 30))
    tokyo = make_session(
        start_time=dt.datetime(2026, 3, 1, 18, 30, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    )
    assert TradingSession.get_by_id(naive.id).start_time == dt.datetime(
        2026, 3, 1, 9, 30, tzinfo=dt.UTC
    )
    assert TradingSession.get_by_id(tokyo.id).start_time == dt.datetime(
        2026, 3, 1, 9, 30, tzinfo=dt.UTC
    )


def test_unset_json_is_sql_null_not_the_text_null(sqlite_db):
    make_session()
    value = sqlite_db.execute_sql(
        "SELECT strategy_config IS NULL FROM trading_sessions"
    ).fetchone()[0]
    assert value == 1


def test_json_payloads_are_sanitised_before_storage(sqlite_db):
    session = make_session()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    SystemEvent.create(
        timestamp=when,
        event_type=EventType.TEST,
        message="m",
        details={
            "price": Decimal("1.5"),
            "n": Decimal("3"),
            "bad": float("nan"),
            "at": when,
            "side": PositionSide.LONG,
        },
        session=session,
    )
    raw = sqlite_db.execute_sql("SELECT details FROM system_events").fetchone()[0]
    assert json.loads(raw) == {
        "price": 1.5,
        "n": 3,
        "bad": None,
        "at": "2026-01-02T02:04:05+00:00",
        "side": "LONG",
    }


class FakeNumpyScalar:
    def __init__(self, value):
        self.value = value

    def item(self):
        return self.value


class FakeNumpyArray:
    def tolist(self):
        return [1.0, float("inf"), 2]


def test_to_json_safe_handles_numpy_like_values_and_nesting():
    assert to_json_safe(
        {"a": FakeNumpyScalar(2.5), "b": FakeNumpyArray(), "c": (Decimal("NaN"),)}
    ) == {
        "a": 2.5,
        "b": [1.0, None, 2],
        "c": [None],
    }


def test_dumps_json_never_writes_nan_or_infinity():
    text = dumps_json({"x": math.inf, "y": -math.inf, "z": math.nan})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": None, "y": None, "z": None}
