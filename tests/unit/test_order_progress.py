"""Orders never move backwards: statuses only advance, stale fill reports change nothing, and
price and commission describe the largest cumulative fill seen (SQLite; the multi-process race
is in tests/integration/test_order_race_pg.py)."""

from __future__ import annotations

import decimal

import pytest
from helpers import log_position

from atb.db import DatabaseManager
from atb.db.enums import OrderStatus
from atb.db.models import Order

D = decimal.Decimal


@pytest.fixture
def order_id(manager: DatabaseManager) -> int:
    sid = manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "paper", "1000")
    return manager.create_order(
        log_position(manager, session_id=sid), "entry", "BTCUSDT", "buy", 10, "ml_basic"
    )


def _state(order_id: int) -> tuple:
    o = Order.get_by_id(order_id)
    return (o.status.value, o.filled_quantity, o.average_fill_price, o.commission)


def test_a_late_lower_fill_report_changes_nothing_at_all(manager, order_id):
    assert manager.update_order_status(order_id, "partially_filled", filled_quantity=7,
                                       filled_price=101, commission="0.7")  # fmt: skip
    before = Order.get_by_id(order_id).last_update

    assert manager.update_order_status(order_id, "partially_filled", filled_quantity=5,
                                       filled_price=100, commission="0.5") is False  # fmt: skip

    assert _state(order_id) == ("PARTIALLY_FILLED", D(7), D(101), D("0.7"))
    assert Order.get_by_id(order_id).last_update == before


@pytest.mark.parametrize("late", ["open", "pending"])
def test_a_late_earlier_status_does_not_move_the_order_back(manager, order_id, late):
    manager.update_order_status(order_id, "partially_filled", filled_quantity=3, filled_price=99)

    assert manager.update_order_status(order_id, late) is False

    assert _state(order_id)[:2] == ("PARTIALLY_FILLED", D(3))


def test_open_after_pending_and_equal_fill_reports_are_fine(manager, order_id):
    assert manager.update_order_status(order_id, "open")
    assert manager.update_order_status(order_id, "open")  # a repeated report is no regression
    assert manager.update_order_status(order_id, "partially_filled", filled_quantity=4,
                                       filled_price=100)  # fmt: skip
    assert manager.update_order_status(order_id, "partially_filled", filled_quantity=4,
                                       filled_price=100, commission="0.4")  # fmt: skip
    assert _state(order_id) == ("PARTIALLY_FILLED", D(4), D(100), D("0.4"))


def test_filled_below_the_quantity_is_stored_as_partially_filled(manager, order_id):
    assert manager.update_order_status(order_id, "filled", filled_quantity=3, filled_price=100)

    stored = Order.get_by_id(order_id)
    assert (stored.status, stored.filled_quantity, stored.filled_at) == (
        OrderStatus.PARTIALLY_FILLED, D(3), None,
    )  # fmt: skip
    assert manager.update_order_status(order_id, "filled", filled_quantity=10, filled_price=102)
    stored = Order.get_by_id(order_id)
    assert (stored.status, stored.filled_quantity) == (OrderStatus.FILLED, D(10))
    assert stored.filled_at is not None


def test_cancelling_a_partly_filled_order_keeps_its_fill(manager, order_id):
    manager.update_order_status(order_id, "partially_filled", filled_quantity=2, filled_price=100)

    assert manager.update_order_status(order_id, "cancelled")

    assert _state(order_id)[:2] == ("CANCELLED", D(2))
