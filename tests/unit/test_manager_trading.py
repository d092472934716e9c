"""DatabaseManager trading groups on SQLite: connection, sessions, trades, positions, partial
operations and orders. Each test states one behaviour and checks what the database holds.

Trading behaviour that must hold on PostgreSQL too (read-only queries, rollbacks, duplicates) is
tested on both backends in tests/integration/test_manager_both_backends.py."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest
from helpers import T0, log_position, log_trade

from atb.db import DuplicateError, NotFound, ValidationError
from atb.db.enums import EventType, OrderStatus, PositionSide
from atb.db.manager import DatabaseManager
from atb.db.models import (
    AccountHistory,
    Order,
    PartialTrade,
    Position,
    SystemEvent,
    Trade,
    TradingSession,
)

UTC = dt.UTC
D = decimal.Decimal


@pytest.fixture
def session_id(manager: DatabaseManager) -> int:
    return manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "paper", 1000)


def trade_row(**overrides) -> dict:
    row = {
        "symbol": "ETHUSDT", "side": "short", "entry_price": "2000", "exit_price": "1900",
        "size": "0.2", "entry_time": T0 - dt.timedelta(hours=2), "exit_time": T0, "pnl": "20",
        "exit_reason": "signal", "strategy_name": "ml_basic",
    }  # fmt: skip
    return {**row, **overrides}


# --- connection -------------------------------------------------------------------------------


def test_connection_check_is_true_when_the_database_answers(manager: DatabaseManager) -> None:
    assert manager.test_connection() is True


def test_database_info_names_the_backend_and_pool(manager: DatabaseManager) -> None:
    info = manager.get_database_info()

    assert info["backend"] == "sqlite"
    assert info["server_version"]
    assert {"pool_size", "pool_in_use", "pool_idle"} <= set(info)


def test_execute_query_writes_when_told_to(manager: DatabaseManager, session_id: int) -> None:
    manager.execute_query(
        "UPDATE trading_sessions SET symbol = %s WHERE id = %s", ("ETHUSDT", session_id),
        read_only=False,
    )  # fmt: skip

    assert TradingSession.get_by_id(session_id).symbol == "ETHUSDT"


def test_manager_calls_inside_get_session_commit_together(
    manager: DatabaseManager, session_id: int
) -> None:
    with manager.atomic():
        log_trade(manager)
        log_position(manager)

    assert Trade.select().count() == 1
    assert Position.select().count() == 1


# --- sessions ---------------------------------------------------------------------------------


def test_creating_a_session_accepts_any_case_mode_and_makes_it_current(
    manager: DatabaseManager,
) -> None:
    session_id = manager.create_trading_session("s", "BTCUSDT", "1h", "BackTest", "2500.5")

    stored = TradingSession.get_by_id(session_id)
    assert stored.mode.value == "BACKTEST"
    assert stored.initial_balance == D("2500.5")
    assert stored.is_active is True
    assert manager.get_active_session_id() == session_id
    log_trade(manager)
    assert Trade.get().session_id == session_id


def test_creating_a_session_logs_engine_start_for_it(manager: DatabaseManager) -> None:
    session_id = manager.create_trading_session("s", "BTCUSDT", "1h", "live", 1000)

    event = SystemEvent.get()
    assert event.event_type is EventType.ENGINE_START
    assert event.session_id == session_id
    assert event.details["initial_balance"] == 1000


def test_an_unknown_mode_is_refused_and_nothing_is_written(manager: DatabaseManager) -> None:
    with pytest.raises(ValidationError, match="mode.*LIVE, BACKTEST, PAPER"):
        manager.create_trading_session("s", "BTCUSDT", "1h", "demo", 1000)

    assert TradingSession.select().count() == 0
    assert SystemEvent.select().count() == 0


def test_ending_a_session_computes_its_totals(manager: DatabaseManager, session_id: int) -> None:
    for pnl in (10, -5, 20):
        log_trade(manager, pnl=pnl)
    for when, balance in ((1, 1100), (2, 990), (3, 1200)):
        AccountHistory.create(timestamp=T0 + dt.timedelta(hours=when), balance=balance,
                              equity=balance, session=session_id)  # fmt: skip

    assert manager.end_trading_session(final_balance="1025") is True

    ended = TradingSession.get_by_id(session_id)
    assert ended.total_trades == 3
    assert ended.total_pnl == 25
    assert ended.win_rate == D("66.66666667")
    assert ended.max_drawdown == 10  # 1100 -> 990
    assert ended.final_balance == D("1025")
    assert ended.is_active is False
    assert ended.end_time is not None


def test_drawdown_is_measured_from_the_initial_balance(
    manager: DatabaseManager, session_id: int
) -> None:
    AccountHistory.create(timestamp=T0, balance=900, equity=900, session=session_id)

    manager.end_trading_session(session_id)

    assert TradingSession.get_by_id(session_id).max_drawdown == 10


def test_ending_a_session_without_trades_gives_zero_totals(
    manager: DatabaseManager, session_id: int
) -> None:
    manager.end_trading_session()

    ended = TradingSession.get_by_id(session_id)
    assert (ended.total_trades, ended.total_pnl, ended.win_rate, ended.max_drawdown) == (0, 0, 0, 0)


def test_ending_a_session_logs_engine_stop_with_its_totals(
    manager: DatabaseManager, session_id: int
) -> None:
    log_trade(manager, pnl=7)

    manager.end_trading_session()

    stop = SystemEvent.get(SystemEvent.event_type == EventType.ENGINE_STOP)
    assert stop.session_id == session_id
    assert stop.details["total_trades"] == 1
    assert stop.details["total_pnl"] == 7


def test_ending_a_session_twice_changes_nothing(manager: DatabaseManager, session_id: int) -> None:
    manager.end_trading_session(session_id)
    first = TradingSession.get_by_id(session_id)

    assert manager.end_trading_session(session_id, final_balance=5) is False

    again = TradingSession.get_by_id(session_id)
    assert (again.end_time, again.final_balance) == (first.end_time, first.final_balance)
    assert SystemEvent.select().where(SystemEvent.event_type == EventType.ENGINE_STOP).count() == 1


def test_ending_the_current_session_clears_it(manager: DatabaseManager, session_id: int) -> None:
    manager.end_trading_session()

    assert manager.end_trading_session() is False
    assert manager.get_active_session_id() is None


def test_ending_with_nothing_to_end_returns_false(manager: DatabaseManager) -> None:
    assert manager.end_trading_session() is False
    assert manager.end_trading_session(999) is False


def test_get_trading_session_returns_plain_values_or_none(
    manager: DatabaseManager, session_id: int
) -> None:
    found = manager.get_trading_session(session_id)

    assert found["mode"] == "PAPER" and type(found["mode"]) is str
    assert found["start_time"].tzinfo is not None
    assert manager.get_trading_session(12345) is None


def test_the_active_session_id_is_the_newest_active_one(manager: DatabaseManager) -> None:
    first = manager.create_trading_session("a", "BTCUSDT", "1h", "paper", 1)
    second = manager.create_trading_session("b", "BTCUSDT", "1h", "paper", 1)
    manager.end_trading_session(second)

    assert manager.get_active_session_id() == first


# --- trades -----------------------------------------------------------------------------------


def test_a_trade_is_stored_with_its_derived_pnl_percent(
    manager: DatabaseManager, session_id: int
) -> None:
    long_id = log_trade(manager, entry_price=200, exit_price=230)
    short_id = log_trade(manager, side="sell", entry_price=200, exit_price=230, pnl=-3)

    assert Trade.get_by_id(long_id).pnl_percent == 15
    assert Trade.get_by_id(short_id).pnl_percent == -15
    assert Trade.get_by_id(short_id).side is PositionSide.SHORT


def test_a_strategy_config_is_stored_as_sanitised_json(
    manager: DatabaseManager, session_id: int
) -> None:
    log_trade(manager, strategy_config={"risk": D("0.02"), "bad": float("inf"), "at": T0})

    (stored,) = manager.get_recent_trades()
    assert stored["strategy_config"] == {"risk": 0.02, "bad": None, "at": T0.isoformat()}


def test_a_given_pnl_percent_is_kept(manager: DatabaseManager, session_id: int) -> None:
    trade_id = log_trade(manager, pnl_percent="1.23456789")

    assert Trade.get_by_id(trade_id).pnl_percent == D("1.23456789")


@pytest.mark.parametrize("side", ["LONG", "long", "Buy", PositionSide.LONG])
def test_side_accepts_names_aliases_and_members(
    manager: DatabaseManager, session_id: int, side: object
) -> None:
    assert Trade.get_by_id(log_trade(manager, side=side)).side is PositionSide.LONG


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("side", "up", "allowed: LONG, SHORT"),
        ("entry_price", float("nan"), "not finite"),
        ("exit_price", float("inf"), "not finite"),
        ("size", -1, "greater than 0"),
        ("symbol", "X" * 21, "at most 20"),
        ("strategy_name", "a\x00b", "NUL"),
        ("entry_time", "yesterday", "ISO 8601"),
        ("pnl", "12e99", "numeric\\(18,8\\)"),
    ],
)
def test_bad_trade_input_is_refused_naming_the_field_and_nothing_is_written(
    manager: DatabaseManager, session_id: int, field: str, value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        log_trade(manager, **{field: value})

    assert caught.value.field == field
    assert Trade.select().count() == 0


def test_naive_times_are_taken_as_utc_and_aware_ones_converted(
    manager: DatabaseManager, session_id: int
) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    log_trade(manager, entry_time=dt.datetime(2024, 3, 1, 10, 0),
          exit_time=dt.datetime(2024, 3, 1, 14, 0, tzinfo=plus_two))  # fmt: skip

    stored = manager.get_recent_trades()[0]
    assert stored["entry_time"] == dt.datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert stored["exit_time"] == dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_the_same_order_id_may_appear_in_another_session(manager: DatabaseManager) -> None:
    first = manager.create_trading_session("a", "BTCUSDT", "1h", "paper", 1)
    second = manager.create_trading_session("b", "BTCUSDT", "1h", "paper", 1)

    log_trade(manager, order_id="ex-1", session_id=first)
    log_trade(manager, order_id="ex-1", session_id=second)

    assert Trade.select().where(Trade.order_id == "ex-1").count() == 2


def test_log_trades_returns_ids_in_order(manager: DatabaseManager, session_id: int) -> None:
    rows = [trade_row(pnl=pnl) for pnl in (5, -2, 8)]
    rows.append(trade_row(pnl=1, exit_time=T0 + dt.timedelta(days=1)))

    ids = manager.log_trades(rows)

    assert [Trade.get_by_id(i).pnl for i in ids] == [5, -2, 8, 1]


def test_log_trades_inserts_beyond_one_batch(manager: DatabaseManager, session_id: int) -> None:
    ids = manager.log_trades(trade_row(order_id=f"o{i}") for i in range(2_345))

    assert len(set(ids)) == 2_345
    assert Trade.select().count() == 2_345


def test_log_trades_names_the_bad_row_and_writes_nothing(
    manager: DatabaseManager, session_id: int
) -> None:
    rows = [trade_row(), trade_row(), trade_row(entry_price="NaN")]

    with pytest.raises(ValidationError, match=r"rows\[2\]\.entry_price"):
        manager.log_trades(rows)

    assert Trade.select().count() == 0


def test_log_trades_rows_take_exactly_the_arguments_of_log_trade() -> None:
    import inspect

    from atb.db.manage.trades import TRADE_ARGUMENTS

    # request_id names the call, not a trade: log_trades takes one for the whole batch.
    parameters = set(inspect.signature(DatabaseManager.log_trade).parameters) - {"self"}
    assert parameters - {"request_id"} == TRADE_ARGUMENTS
    assert "request_id" in inspect.signature(DatabaseManager.log_trades).parameters


def test_log_trades_refuses_unknown_fields(manager: DatabaseManager) -> None:
    with pytest.raises(ValidationError, match=r"rows\[0\].*colour"):
        manager.log_trades([trade_row(colour="red")])


def test_log_trades_with_a_duplicate_writes_nothing(
    manager: DatabaseManager, session_id: int
) -> None:
    with pytest.raises(DuplicateError):
        manager.log_trades([trade_row(order_id="a"), trade_row(order_id="a")])

    assert Trade.select().count() == 0


def test_recent_trades_are_newest_first_with_plain_values(
    manager: DatabaseManager, session_id: int
) -> None:
    for hours in (1, 3, 2):
        log_trade(manager, exit_time=T0 + dt.timedelta(hours=hours), pnl=hours)

    recent = manager.get_recent_trades(limit=2)

    assert [t["pnl"] for t in recent] == [3, 2]
    assert recent[0]["side"] == "LONG" and type(recent[0]["side"]) is str
    assert recent[0]["source"] == "LIVE"
    assert isinstance(recent[0]["entry_price"], decimal.Decimal)
    assert set(recent[0]) == {field.column_name for field in Trade._meta.sorted_fields}


def test_recent_trades_are_limited_to_the_current_session(manager: DatabaseManager) -> None:
    other = manager.create_trading_session("a", "BTCUSDT", "1h", "paper", 1)
    log_trade(manager)
    current = manager.create_trading_session("b", "BTCUSDT", "1h", "paper", 1)
    log_trade(manager)

    assert [t["session_id"] for t in manager.get_recent_trades()] == [current]
    assert [t["session_id"] for t in manager.get_recent_trades(session_id=other)] == [other]


def test_trades_by_symbol_and_date_start_at_the_entry_time(
    manager: DatabaseManager, session_id: int
) -> None:
    log_trade(manager, entry_time=T0 - dt.timedelta(days=2), exit_time=T0)
    wanted = log_trade(manager, entry_time=T0, exit_time=T0 + dt.timedelta(hours=1))
    log_trade(manager, symbol="ETHUSDT", entry_time=T0, exit_time=T0)

    found = manager.get_trades_by_symbol_and_date("BTCUSDT", T0 - dt.timedelta(days=1))

    assert [t["id"] for t in found] == [wanted]


# --- positions --------------------------------------------------------------------------------


def test_logging_a_position_writes_it_with_a_filled_entry_order(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = log_position(manager, entry_order_id="ex-9", entry_price="101.5", quantity="0.02")

    stored = Position.get_by_id(position_id)
    assert (stored.original_size, stored.current_size) == (D("0.1"), 1)
    assert stored.session_id == session_id
    (order,) = stored.orders
    assert (order.order_type.value, order.status.value) == ("ENTRY", "FILLED")
    assert (order.exchange_order_id, order.quantity, order.filled_quantity) == (
        "ex-9", D("0.02"), D("0.02"),
    )  # fmt: skip
    assert order.filled_price == D("101.5")
    assert order.internal_order_id


def test_updating_a_position_changes_only_the_given_columns(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = log_position(manager, stop_loss=90, take_profit=120)

    assert manager.update_position(position_id, stop_loss=95, trailing_stop_activated=True)

    stored = Position.get_by_id(position_id)
    assert (stored.stop_loss, stored.take_profit) == (95, 120)
    assert stored.trailing_stop_activated is True
    assert stored.current_price is None


@pytest.mark.parametrize(("side", "expected"), [("long", D("5")), ("short", D("-5"))])
def test_a_new_price_derives_the_unrealized_percent(
    manager: DatabaseManager, session_id: int, side: str, expected: decimal.Decimal
) -> None:
    position_id = log_position(manager, side=side, entry_price=200)

    manager.update_position(position_id, current_price=210, unrealized_pnl=1)

    assert Position.get_by_id(position_id).unrealized_pnl_percent == expected


def test_updating_an_unknown_or_closed_position_returns_false(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = log_position(manager)
    manager.close_position(position_id, exit_price=105)

    assert manager.update_position(999, current_price=1) is False
    assert manager.update_position(position_id, current_price=1) is False
    assert Position.get_by_id(position_id).current_price == 105


def test_closing_a_closed_position_changes_nothing(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = log_position(manager)
    assert manager.close_position(position_id, exit_price=105, pnl=0.5) is True
    closed = Position.get_by_id(position_id)

    assert manager.close_position(position_id, exit_price=1, pnl=-99) is False

    again = Position.get_by_id(position_id)
    assert again.status.value == "CLOSED"
    assert (again.current_price, again.unrealized_pnl) == (105, D("0.5"))
    assert again.updated_at == closed.updated_at


def test_active_positions_come_with_their_orders(manager: DatabaseManager, session_id: int) -> None:
    kept = log_position(manager)
    closed = log_position(manager)
    manager.close_position(closed)
    manager.create_order(kept, "partial_exit", "BTCUSDT", "short", 0.005, "ml_basic")

    (active,) = manager.get_active_positions()

    assert active["id"] == kept
    assert [o["order_type"] for o in active["orders"]] == ["ENTRY", "PARTIAL_EXIT"]
    assert active["side"] == "LONG" and active["status"] == "OPEN"


def test_active_positions_take_one_statement_whatever_their_number(
    manager: DatabaseManager, session_id: int, statements: list
) -> None:
    for _ in range(30):
        log_position(manager)
    statements.clear()

    assert len(manager.get_active_positions()) == 30

    assert len(statements) == 1


def test_marking_and_closing_a_position_are_single_statements(
    manager: DatabaseManager, session_id: int, statements: list
) -> None:
    position_id = log_position(manager)
    statements.clear()

    manager.update_position(position_id, current_price=101, mfe=0.01, stop_loss=95)
    manager.close_position(position_id, exit_price=102)

    assert [sql.split()[0] for sql in statements] == ["UPDATE", "UPDATE"]


def test_get_position_returns_none_for_an_unknown_id(manager: DatabaseManager) -> None:
    assert manager.get_position(4242) is None


# --- partial operations -----------------------------------------------------------------------


def test_partial_exits_shrink_the_position_down_to_zero(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = log_position(manager)

    assert manager.apply_partial_exit_update(position_id, 0.3, 105, target_level=1, pnl=1.5)
    assert manager.apply_partial_exit_update(position_id, "0.8", 106, target_level=2)

    stored = Position.get_by_id(position_id)
    assert stored.current_size == 0
    assert stored.partial_exits_taken == 2
    assert stored.last_partial_exit_price == 106
    sizes = [(p.operation_type.value, p.size, p.target_level) for p in PartialTrade.select()]
    assert sizes == [("PARTIAL_EXIT", D("0.3"), 1), ("PARTIAL_EXIT", D("0.8"), 2)]


def test_scale_ins_grow_the_position_up_to_one(manager: DatabaseManager, session_id: int) -> None:
    position_id = log_position(manager)
    manager.apply_partial_exit_update(position_id, 0.5, 105, target_level=1)

    assert manager.apply_scale_in_update(position_id, 0.25, 99, threshold_level=0)
    assert Position.get_by_id(position_id).current_size == D("0.75")
    assert manager.apply_scale_in_update(position_id, 0.5, 98, threshold_level=1)

    stored = Position.get_by_id(position_id)
    assert stored.current_size == 1
    assert (stored.scale_ins_taken, stored.last_scale_in_price) == (2, 98)


def test_partial_operations_on_an_unknown_position_return_false(
    manager: DatabaseManager,
) -> None:
    assert manager.apply_partial_exit_update(77, 0.5, 1, target_level=1) is False
    assert manager.apply_scale_in_update(77, 0.5, 1, threshold_level=1) is False
    assert PartialTrade.select().count() == 0


def test_a_fraction_above_one_is_refused(manager: DatabaseManager, session_id: int) -> None:
    position_id = log_position(manager)

    with pytest.raises(ValidationError, match="executed_fraction_of_original"):
        manager.apply_partial_exit_update(position_id, 1.5, 100, target_level=1)

    assert Position.get_by_id(position_id).partial_exits_taken == 0


def test_log_partial_trade_accepts_lower_case_operation_names(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = log_position(manager)

    row_id = manager.log_partial_trade(position_id, "scale_in", 0.2, 101, target_level=3)

    stored = PartialTrade.get_by_id(row_id)
    assert (stored.operation_type.value, stored.size, stored.target_level) == (
        "SCALE_IN",
        D("0.2"),
        3,
    )


def test_log_partial_trade_refuses_other_operations(
    manager: DatabaseManager, session_id: int
) -> None:
    with pytest.raises(ValidationError, match="PARTIAL_EXIT, SCALE_IN"):
        manager.log_partial_trade(log_position(manager), "full_exit", 0.2, 101)


def test_log_partial_trade_for_an_unknown_position_is_not_found(
    manager: DatabaseManager,
) -> None:
    with pytest.raises(NotFound, match="position"):
        manager.log_partial_trade(999, "partial_exit", 0.2, 101)


# --- orders -----------------------------------------------------------------------------------


@pytest.fixture
def order_id(manager: DatabaseManager, session_id: int) -> int:
    return manager.create_order(
        log_position(manager), "partial_exit", "BTCUSDT", "sell", 2, "ml_basic"
    )


def test_a_new_order_is_pending_with_a_generated_internal_id(
    manager: DatabaseManager, order_id: int
) -> None:
    stored = Order.get_by_id(order_id)

    assert stored.status is OrderStatus.PENDING
    assert stored.internal_order_id.startswith("atb-")
    assert stored.filled_quantity == 0


def test_an_order_for_an_unknown_position_is_not_found(manager: DatabaseManager) -> None:
    with pytest.raises(NotFound):
        manager.create_order(999, "entry", "BTCUSDT", "buy", 1, "s")

    assert Order.select().count() == 0


def test_a_taken_exchange_order_id_is_a_duplicate(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = log_position(manager, entry_order_id="ex-1")

    with pytest.raises(DuplicateError):
        manager.create_order(position_id, "full_exit", "BTCUSDT", "sell", 1, "s",
                             exchange_order_id="ex-1")  # fmt: skip

    assert Order.select().count() == 1


def test_a_status_update_with_a_taken_exchange_id_changes_nothing(
    manager: DatabaseManager, order_id: int
) -> None:
    log_position(manager, entry_order_id="ex-taken")

    with pytest.raises(DuplicateError):
        manager.update_order_status(order_id, "open", exchange_order_id="ex-taken")

    stored = Order.get_by_id(order_id)
    assert (stored.status, stored.exchange_order_id) == (OrderStatus.PENDING, None)


def test_fills_accumulate_until_the_order_is_filled(
    manager: DatabaseManager, order_id: int
) -> None:
    assert manager.update_order_status(order_id, "partially_filled", filled_quantity=0.5,
                                       filled_price=100.5, commission=0.1)  # fmt: skip
    partly = Order.get_by_id(order_id)
    assert (partly.status.value, partly.filled_quantity, partly.filled_at) == (
        "PARTIALLY_FILLED", D("0.5"), None,
    )  # fmt: skip

    assert manager.update_order_status(order_id, "FILLED", filled_quantity=2, filled_price=101)

    filled = Order.get_by_id(order_id)
    assert (filled.status.value, filled.filled_quantity) == ("FILLED", 2)
    assert (filled.filled_price, filled.average_fill_price) == (101, 101)
    assert filled.filled_at is not None
    assert filled.commission == D("0.1")


def test_a_status_update_is_a_single_statement(
    manager: DatabaseManager, order_id: int, statements: list
) -> None:
    statements.clear()

    manager.update_order_status(order_id, "partially_filled", filled_quantity=1, filled_price=99)

    assert [sql.split()[0] for sql in statements] == ["UPDATE"]


def test_a_lower_fill_report_does_not_undo_a_fill(manager: DatabaseManager, order_id: int) -> None:
    manager.update_order_status(order_id, "partially_filled", filled_quantity=1.5)

    manager.update_order_status(order_id, "partially_filled", filled_quantity=0.5)

    assert Order.get_by_id(order_id).filled_quantity == D("1.5")


def test_filled_without_a_quantity_means_the_whole_order(
    manager: DatabaseManager, order_id: int
) -> None:
    manager.update_order_status(order_id, OrderStatus.FILLED)

    assert Order.get_by_id(order_id).filled_quantity == 2


def test_a_fill_above_the_quantity_is_refused_and_changes_nothing(
    manager: DatabaseManager, order_id: int
) -> None:
    with pytest.raises(ValidationError, match="filled_quantity"):
        manager.update_order_status(order_id, "filled", filled_quantity="2.00000001")

    stored = Order.get_by_id(order_id)
    assert (stored.status, stored.filled_quantity) == (OrderStatus.PENDING, 0)


def test_terminal_states_stay_terminal(manager: DatabaseManager, order_id: int) -> None:
    manager.update_order_status(order_id, "filled")
    filled = Order.get_by_id(order_id)

    assert manager.update_order_status(order_id, "cancelled") is False
    assert manager.update_order_status(order_id, "filled", filled_price=5) is False

    again = Order.get_by_id(order_id)
    assert (again.status, again.cancelled_at, again.filled_price) == (
        OrderStatus.FILLED,
        None,
        None,
    )
    assert again.last_update == filled.last_update


@pytest.mark.parametrize(
    ("alias", "status", "stamp"),
    [("rejected", "FAILED", None), ("expired", "CANCELLED", "cancelled_at"),
     ("canceled", "CANCELLED", "cancelled_at")],
)  # fmt: skip
def test_exchange_aliases_map_onto_our_statuses(
    manager: DatabaseManager, order_id: int, alias: str, status: str, stamp: str | None
) -> None:
    assert manager.update_order_status(order_id, alias) is True

    stored = Order.get_by_id(order_id)
    assert stored.status.value == status
    if stamp:
        assert getattr(stored, stamp) is not None


def test_an_unknown_status_is_refused(manager: DatabaseManager, order_id: int) -> None:
    with pytest.raises(ValidationError, match="PARTIALLY_FILLED"):
        manager.update_order_status(order_id, "half_done")


def test_updating_an_unknown_order_returns_false(manager: DatabaseManager) -> None:
    assert manager.update_order_status(31337, "filled", filled_quantity=1) is False


def test_pending_orders_are_the_working_ones(manager: DatabaseManager, order_id: int) -> None:
    position_id = Order.get_by_id(order_id).position_id
    done = manager.create_order(position_id, "full_exit", "BTCUSDT", "sell", 1, "s")
    manager.update_order_status(done, "cancelled")

    pending = manager.get_pending_orders()

    assert [o["id"] for o in pending] == [order_id]
    assert [o["id"] for o in manager.get_orders_for_position(position_id)][-2:] == [order_id, done]


def test_order_reads_return_json_ready_plain_values(
    manager: DatabaseManager, order_id: int
) -> None:
    (order,) = manager.get_pending_orders()

    assert json.dumps(order, default=str)
    assert order["position_id"] and order["session_id"]
    assert order["status"] == "PENDING" and type(order["status"]) is str
