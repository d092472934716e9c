"""Exactly-once writes by request id, the same on SQLite and PostgreSQL: a logging call repeated
with a request id already stored returns what the first call returned and writes nothing, side
effects included (no second daily-metrics count, no second event, no second position move).

The repeats here are the caller's; the manager's own retries after a lost connection reuse the
call's request id in the same way (tests/integration/test_exactly_once_pg.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from helpers import T0, log_position, log_trade

from atb.db import DuplicateError, ValidationError
from atb.db.models import (
    AccountBalance,
    AccountHistory,
    DynamicPerformanceMetrics,
    OptimizationCycle,
    Order,
    PartialTrade,
    Position,
    RiskAdjustment,
    StrategyExecution,
    SystemEvent,
    Trade,
    TradingSession,
)


def counts(*models) -> list[int]:
    return [model.select().count() for model in models]


def test_log_trade_repeated_returns_the_first_id_and_counts_the_trade_once(manager, session_id):
    first = log_trade(manager, request_id="fill-1")
    again = log_trade(manager, request_id="fill-1", pnl="99")  # the content is not compared

    assert again == first
    assert Trade.select().count() == 1
    metrics = manager.get_performance_metrics(session_id=session_id)
    assert (metrics["total_trades"], metrics["total_pnl"]) == (1, 10)
    assert Trade.get_by_id(first).request_id == "fill-1"


def test_log_trade_without_a_request_id_gets_one_of_its_own(manager, session_id):
    first, second = log_trade(manager), log_trade(manager)

    keys = [trade.request_id for trade in Trade.select().order_by(Trade.id)]
    assert first != second and len(set(keys)) == 2 and all(len(key) == 32 for key in keys)


def test_a_taken_order_id_under_a_new_request_id_is_still_a_duplicate(manager, session_id):
    log_trade(manager, order_id="x-1", request_id="a")
    with pytest.raises(DuplicateError):
        log_trade(manager, order_id="x-1", request_id="b")
    assert Trade.select().count() == 1


def test_log_trades_repeated_returns_the_same_ids_and_writes_nothing(manager, session_id):
    rows = [
        {"symbol": "BTCUSDT", "side": "LONG", "entry_price": "100", "exit_price": "110",
         "size": "0.1", "entry_time": T0 - dt.timedelta(hours=1), "exit_time": T0, "pnl": str(i),
         "exit_reason": "tp", "strategy_name": "ml_basic"}
        for i in range(1, 4)
    ]  # fmt: skip
    first = manager.log_trades(rows, request_id="batch-7")
    again = manager.log_trades(rows, request_id="batch-7")

    assert again == first and len(first) == 3
    assert Trade.select().count() == 3
    assert manager.get_performance_metrics(session_id=session_id)["total_trades"] == 3
    keys = [Trade.get_by_id(i).request_id for i in first]
    assert keys == ["batch-7#0", "batch-7#1", "batch-7#2"]


def test_a_batch_request_id_leaves_room_for_the_row_suffix(manager, session_id):
    with pytest.raises(ValidationError, match="request_id"):
        manager.log_trades([], request_id="x" * 89)


def test_session_repeated_is_the_same_session_with_one_start_event(manager):
    first = manager.create_trading_session("s", "BTCUSDT", "1h", "paper", 1000, request_id="run-1")
    manager._current_session_id = None
    again = manager.create_trading_session("s", "BTCUSDT", "1h", "paper", 1000, request_id="run-1")

    assert again == first and manager._current_session_id == first
    assert counts(TradingSession, SystemEvent) == [1, 1]


def test_position_repeated_has_one_entry_order(manager, session_id):
    first = log_position(manager, request_id="open-1")
    assert log_position(manager, request_id="open-1") == first
    assert counts(Position, Order) == [1, 1]


def test_create_order_by_client_order_id_is_exactly_once(manager, session_id):
    position = log_position(manager)
    first = manager.create_order(position, "partial_exit", "BTCUSDT", "long", "0.005", "ml_basic",
                                 client_order_id="cli-42")  # fmt: skip
    again = manager.create_order(position, "partial_exit", "BTCUSDT", "long", "0.005", "ml_basic",
                                 client_order_id="cli-42")  # fmt: skip

    assert again == first
    assert Order.get_by_id(first).internal_order_id == "cli-42"
    assert Order.select().where(Order.order_type == "PARTIAL_EXIT").count() == 1


def test_create_order_takes_one_key_not_two(manager, session_id):
    position = log_position(manager)
    with pytest.raises(ValidationError, match="request_id"):
        manager.create_order(position, "partial_exit", "BTCUSDT", "long", "0.005", "ml_basic",
                             client_order_id="c", request_id="r")  # fmt: skip
    with pytest.raises(ValidationError, match="internal_order_id"):
        manager.create_order(position, "partial_exit", "BTCUSDT", "long", "0.005", "ml_basic",
                             client_order_id="c", internal_order_id="other")  # fmt: skip
    assert Order.select().count() == 1  # the entry order only


def test_create_order_by_request_id_is_exactly_once(manager, session_id):
    position = log_position(manager)
    ids = {
        manager.create_order(
            position, "scale_in", "BTCUSDT", "long", "0.01", "ml_basic", request_id="order-1"
        )  # fmt: skip
        for _ in range(2)
    }
    assert len(ids) == 1 and Order.select().count() == 2


def test_ledger_writes_repeated_write_one_row_and_one_event(manager, session_id):
    assert manager.update_balance(1100, "fill", session_id=session_id, request_id="b-1")
    assert manager.update_balance(1200, "fill", session_id=session_id, request_id="b-1")
    assert manager.manual_balance_adjustment(1500, "deposit", request_id="m-1")
    assert manager.manual_balance_adjustment(1500, "deposit", request_id="m-1")

    assert AccountBalance.select().count() == 2
    adjustments = SystemEvent.select().where(SystemEvent.event_type == "BALANCE_ADJUSTMENT")
    assert adjustments.count() == 1
    assert manager.get_current_balance() == 1500.0


def test_partial_exit_repeated_moves_the_position_once(manager, session_id):
    position = log_position(manager)
    for _ in range(2):
        assert manager.apply_partial_exit_update(position, "0.25", "110", 1, request_id="pe-1")
    for _ in range(2):
        assert manager.apply_scale_in_update(position, "0.1", "105", 1, request_id="si-1")

    row = Position.get_by_id(position)
    assert (row.current_size, row.partial_exits_taken, row.scale_ins_taken) == (D("0.85"), 1, 1)
    assert PartialTrade.select().count() == 2


def test_a_repeat_of_a_partial_exit_on_a_closed_position_is_false_and_writes_nothing(
    manager, session_id
):
    position = log_position(manager)
    assert manager.apply_partial_exit_update(position, "0.25", "110", 1, request_id="pe-2")
    assert manager.close_position(position, exit_price="120")
    # The repeat's update matches nothing (closed): False, as for any closed position.
    assert not manager.apply_partial_exit_update(position, "0.25", "110", 1, request_id="pe-2")
    assert PartialTrade.select().count() == 1


def test_every_other_logging_method_is_exactly_once(manager, session_id):
    position = log_position(manager)
    calls = {
        SystemEvent: lambda: manager.log_event("TEST", "hello", request_id="e-1"),
        AccountHistory: lambda: manager.log_account_snapshot(
            1000, 1000, 0, 0, 0, 0, request_id="s-1"
        ),
        StrategyExecution: lambda: manager.log_strategy_execution(
            "ml_basic", "BTCUSDT", "buy", "opened", "100", request_id="x-1"
        ),
        OptimizationCycle: lambda: manager.record_optimization_cycle(
            "ml_basic", "BTCUSDT", "1h", {}, {}, {}, {}, "propose", request_id="o-1"
        ),
        DynamicPerformanceMetrics: lambda: manager.log_dynamic_performance_metrics(
            rolling_win_rate="50", request_id="d-1"
        ),
        RiskAdjustment: lambda: manager.log_risk_adjustment(
            None, "drawdown", "dd", "position_size", "1", "0.5", "0.5", request_id="r-1"
        ),
        PartialTrade: lambda: manager.log_partial_trade(
            position, "partial_exit", "0.1", "110", request_id="p-1"
        ),
    }
    for model, call in calls.items():
        before = model.select().count()
        first, again = call(), call()
        assert again == first, model
        assert model.select().count() == before + 1, model


def test_strategy_executions_batch_is_exactly_once(manager, session_id):
    rows = [{"strategy_name": "ml_basic", "symbol": "BTCUSDT", "signal_type": "buy",
             "action_taken": "opened", "price": "100"}] * 2  # fmt: skip
    first = manager.log_strategy_executions(rows, request_id="bt-1")
    assert manager.log_strategy_executions(rows, request_id="bt-1") == first
    assert StrategyExecution.select().count() == 2


@pytest.mark.parametrize("bad", ["", "   ", "x" * 101, 7, "a\x00b"])
def test_a_bad_request_id_is_refused_naming_the_field(manager, session_id, bad):
    with pytest.raises(ValidationError, match="request_id"):
        log_trade(manager, request_id=bad)
    assert Trade.select().count() == 0
