"""Bad input is a ValidationError naming the field, the same on PostgreSQL and SQLite, with
nothing written (issue: surrogates, dates out of range, non-ASCII digits, session-less ids)."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import log_trade

from atb.db import DuplicateError, ValidationError
from atb.db.models import PerformanceMetrics, SystemEvent, Trade


def test_a_lone_surrogate_in_text_is_refused(manager):
    with pytest.raises(ValidationError, match="surrogate") as caught:
        manager.log_event("TEST", "broken \ud800 text")
    assert caught.value.field == "message"
    assert SystemEvent.select().count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("exit_time", dt.date(9999, 12, 31)), ("entry_time", dt.date(1800, 1, 1)),
     ("exit_time", dt.datetime(9999, 6, 1, tzinfo=dt.UTC))],
)  # fmt: skip
def test_dates_outside_the_range_are_refused_with_a_session_too(manager, field, value):
    sid = manager.create_trading_session("s", "BTCUSDT", "1h", "paper", 1000)
    with pytest.raises(ValidationError, match="outside the supported range") as caught:
        log_trade(manager, session_id=sid, **{field: value})
    assert caught.value.field == field
    assert (Trade.select().count(), PerformanceMetrics.select().count()) == (0, 0)


@pytest.mark.parametrize("text", ["١٢٣", "1_000", "１２"])
def test_money_text_must_be_ascii_digits(manager, text):
    with pytest.raises(ValidationError, match="not a number") as caught:
        log_trade(manager, pnl=text)
    assert caught.value.field == "pnl"
    assert Trade.select().count() == 0


def test_the_same_exchange_order_id_cannot_be_logged_twice_without_a_session(manager):
    log_trade(manager, order_id="ex-42")
    with pytest.raises(DuplicateError):
        log_trade(manager, order_id="ex-42")
    assert Trade.select().where(Trade.order_id == "ex-42").count() == 1


def test_the_same_internal_order_id_cannot_be_used_twice_without_a_session(manager):
    from helpers import log_position

    position_id = log_position(manager)
    manager.create_order(position_id, "entry", "BTCUSDT", "buy", 1, "s", internal_order_id="i-1")
    with pytest.raises(DuplicateError):
        manager.create_order(position_id, "full_exit", "BTCUSDT", "sell", 1, "s",
                             internal_order_id="i-1")  # fmt: skip
