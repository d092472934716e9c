"""The atb models match the reference schema, with the database-level guarantees atb adds on top."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import peewee as pw
import pytest
from helpers import make_session

from atb.db.fields import MoneyField
from atb.db.models import (
    ALL_MODELS,
    MODELS_BY_TABLE,
    Order,
    PartialTrade,
    Position,
    Trade,
    TradingSession,
    database,
)

UTC = dt.UTC
EIGHT_PLACES = decimal.Decimal("0.00000001")

# fmt: off
# Column names in physical order, from schema.md section 3.
REFERENCE_COLUMNS = {
    "trades": (
        "id", "symbol", "side", "source", "entry_price", "exit_price", "size", "quantity",
        "entry_time", "exit_time", "pnl", "pnl_percent", "commission", "stop_loss", "take_profit",
        "exit_reason", "strategy_name", "strategy_config", "confidence_score", "order_id",
        "exchange", "timeframe", "mfe", "mae", "mfe_price", "mae_price", "mfe_time", "mae_time",
        "position_id", "session_id", "created_at", "updated_at",
    ),
    "positions": (
        "id", "symbol", "side", "status", "entry_price", "size", "quantity", "original_size",
        "current_size", "partial_exits_taken", "scale_ins_taken", "last_partial_exit_price",
        "last_scale_in_price", "stop_loss", "take_profit", "trailing_stop",
        "trailing_stop_activated", "trailing_stop_price", "breakeven_triggered", "entry_time",
        "last_update", "current_price", "unrealized_pnl", "unrealized_pnl_percent", "mfe", "mae",
        "mfe_price", "mae_price", "mfe_time", "mae_time", "strategy_name", "confidence_score",
        "exchange", "session_id", "created_at", "updated_at", "max_holding_until",
        "end_of_day_exit", "weekend_exit", "time_restriction_group",
    ),
    "orders": (
        "id", "position_id", "order_type", "status", "exchange_order_id", "internal_order_id",
        "symbol", "side", "quantity", "price", "filled_quantity", "filled_price", "commission",
        "created_at", "filled_at", "cancelled_at", "last_update", "strategy_name", "session_id",
        "target_level", "size_fraction",
    ),
    "account_history": (
        "id", "timestamp", "balance", "equity", "margin_used", "margin_available", "total_pnl",
        "daily_pnl", "drawdown", "open_positions", "total_exposure", "session_id", "created_at",
    ),
    "performance_metrics": (
        "id", "period", "period_start", "period_end", "total_trades", "winning_trades",
        "losing_trades", "win_rate", "total_return", "total_return_percent", "max_drawdown",
        "max_drawdown_duration", "sharpe_ratio", "sortino_ratio", "calmar_ratio", "avg_win",
        "avg_loss", "profit_factor", "expectancy", "best_trade_pnl", "worst_trade_pnl",
        "largest_win_streak", "largest_loss_streak", "strategy_breakdown", "session_id",
        "created_at", "updated_at",
    ),
    "system_events": (
        "id", "timestamp", "event_type", "severity", "message", "details", "component",
        "error_code", "stack_trace", "alert_sent", "alert_method", "session_id", "created_at",
    ),
    "trading_sessions": (
        "id", "session_name", "start_time", "end_time", "is_active", "mode", "initial_balance",
        "final_balance", "strategy_name", "strategy_config", "symbol", "timeframe", "exchange",
        "time_exit_config", "market_timezone", "total_pnl", "total_trades", "win_rate",
        "max_drawdown", "created_at", "updated_at",
    ),
    "optimization_cycles": (
        "id", "timestamp", "strategy_name", "symbol", "timeframe", "baseline_metrics",
        "candidate_params", "candidate_metrics", "validator_report", "decision", "session_id",
        "created_at", "updated_at",
    ),
    "prediction_cache": (
        "id", "cache_key", "model_name", "features_hash", "predicted_price", "confidence",
        "direction", "created_at", "expires_at", "access_count", "last_accessed", "config_hash",
    ),
    "partial_trades": (
        "id", "position_id", "operation_type", "size", "price", "pnl", "target_level", "timestamp",
    ),
    "strategy_executions": (
        "id", "timestamp", "strategy_name", "symbol", "timeframe", "signal_type",
        "signal_strength", "confidence_score", "indicators", "sentiment_data", "ml_predictions",
        "action_taken", "position_size", "reasons", "price", "volume", "volatility", "session_id",
        "trade_id", "created_at",
    ),
    "account_balances": (
        "id", "base_currency", "total_balance", "available_balance", "reserved_balance",
        "asset_balances", "last_updated", "updated_by", "update_reason", "session_id",
        "created_at",
    ),
    "market_sessions": (
        "id", "name", "timezone", "open_time", "close_time", "days_of_week", "is_24h",
    ),
    "prediction_performance": (
        "id", "timestamp", "model_name", "horizon", "mae", "rmse", "mape", "ic", "mean_pred",
        "std_pred", "mean_real", "std_real", "strategy_name", "symbol", "timeframe", "created_at",
    ),
    "dynamic_performance_metrics": (
        "id", "timestamp", "rolling_win_rate", "rolling_sharpe_ratio", "current_drawdown",
        "volatility_30d", "consecutive_losses", "consecutive_wins", "risk_adjustment_factor",
        "profit_factor", "expectancy", "avg_trade_duration_hours", "session_id", "created_at",
    ),
    "risk_adjustments": (
        "id", "timestamp", "adjustment_type", "trigger_reason", "parameter_name", "original_value",
        "adjusted_value", "adjustment_factor", "current_drawdown", "performance_score",
        "volatility_level", "duration_minutes", "trades_during_adjustment",
        "pnl_during_adjustment", "session_id", "created_at",
    ),
    "correlation_matrix": (
        "id", "symbol_pair", "correlation_value", "p_value", "sample_size", "last_updated",
        "window_days",
    ),
    "portfolio_exposures": (
        "id", "correlation_group", "total_exposure", "position_count", "symbols", "last_updated",
    ),
    "strategy_registry": (
        "id", "strategy_id", "name", "version", "parent_id", "lineage_path", "branch_name",
        "merge_source", "created_at", "created_by", "description", "tags", "status",
        "signal_generator_config", "risk_manager_config", "position_sizer_config",
        "regime_detector_config", "parameters", "performance_summary", "validation_results",
        "config_hash", "component_hash", "created_at_db", "updated_at",
    ),
    "strategy_versions": (
        "id", "strategy_id", "version", "created_at", "changes", "performance_delta", "is_major",
        "component_changes", "parameter_changes", "created_at_db",
    ),
    "strategy_performance": (
        "id", "strategy_id", "version", "period_start", "period_end", "period_type",
        "total_return", "total_return_pct", "sharpe_ratio", "max_drawdown", "win_rate",
        "total_trades", "winning_trades", "losing_trades", "avg_trade_duration_hours",
        "volatility", "sortino_ratio", "calmar_ratio", "var_95", "signal_generator_contribution",
        "risk_manager_contribution", "position_sizer_contribution", "regime_performance",
        "additional_metrics", "test_symbol", "test_timeframe", "test_parameters", "created_at",
        "updated_at",
    ),
    "strategy_lineage": (
        "id", "ancestor_id", "descendant_id", "relationship_type", "generation_distance",
        "created_at", "evolution_reason", "change_impact", "performance_improvement",
        "risk_change", "created_at_db",
    ),
}

# numeric(18,8) columns plus the three float balance columns of account_balances.
MONEY_COLUMNS = {
    "trades": {
        "entry_price", "exit_price", "size", "quantity", "pnl", "pnl_percent", "commission",
        "stop_loss", "take_profit", "confidence_score", "mfe", "mae", "mfe_price", "mae_price",
    },
    "positions": {
        "entry_price", "size", "quantity", "original_size", "current_size",
        "last_partial_exit_price", "last_scale_in_price", "stop_loss", "take_profit",
        "trailing_stop_price", "current_price", "unrealized_pnl", "unrealized_pnl_percent", "mfe",
        "mae", "mfe_price", "mae_price", "confidence_score",
    },
    "orders": {
        "quantity", "price", "filled_quantity", "filled_price", "commission", "size_fraction",
    },
    "account_history": {
        "balance", "equity", "margin_used", "margin_available", "total_pnl", "daily_pnl",
        "drawdown", "total_exposure",
    },
    "performance_metrics": {
        "win_rate", "total_return", "total_return_percent", "max_drawdown", "sharpe_ratio",
        "sortino_ratio", "calmar_ratio", "avg_win", "avg_loss", "profit_factor", "expectancy",
        "best_trade_pnl", "worst_trade_pnl",
    },
    "system_events": set(),
    "trading_sessions": {
        "initial_balance", "final_balance", "total_pnl", "win_rate", "max_drawdown",
    },
    "optimization_cycles": set(),
    "prediction_cache": {
        "predicted_price", "confidence",
    },
    "partial_trades": {
        "size", "price", "pnl",
    },
    "strategy_executions": {
        "signal_strength", "confidence_score", "position_size", "price", "volume", "volatility",
    },
    "account_balances": {
        "total_balance", "available_balance", "reserved_balance",
    },
    "market_sessions": set(),
    "prediction_performance": {
        "mae", "rmse", "mape", "ic", "mean_pred", "std_pred", "mean_real", "std_real",
    },
    "dynamic_performance_metrics": {
        "rolling_win_rate", "rolling_sharpe_ratio", "current_drawdown", "volatility_30d",
        "risk_adjustment_factor", "profit_factor", "expectancy", "avg_trade_duration_hours",
    },
    "risk_adjustments": {
        "original_value", "adjusted_value", "adjustment_factor", "current_drawdown",
        "performance_score", "volatility_level", "pnl_during_adjustment",
    },
    "correlation_matrix": {
        "correlation_value", "p_value",
    },
    "portfolio_exposures": {
        "total_exposure",
    },
    "strategy_registry": set(),
    "strategy_versions": set(),
    "strategy_performance": {
        "total_return", "total_return_pct", "sharpe_ratio", "max_drawdown", "win_rate",
        "avg_trade_duration_hours", "volatility", "sortino_ratio", "calmar_ratio", "var_95",
        "signal_generator_contribution", "risk_manager_contribution",
        "position_sizer_contribution",
    },
    "strategy_lineage": {
        "performance_improvement", "risk_change",
    },
}

# Columns the reference declares NOT NULL (the id primary key aside).
NOT_NULL_COLUMNS = {
    "trades": {
        "symbol", "side", "source", "entry_price", "exit_price", "size", "entry_time", "exit_time",
        "pnl", "pnl_percent", "strategy_name",
    },
    "positions": {
        "symbol", "side", "status", "entry_price", "size", "entry_time", "strategy_name",
    },
    "orders": {
        "position_id", "order_type", "status", "internal_order_id", "symbol", "side", "quantity",
        "strategy_name",
    },
    "account_history": {
        "timestamp", "balance", "equity",
    },
    "performance_metrics": {
        "period", "period_start", "period_end",
    },
    "system_events": {
        "timestamp", "event_type", "message",
    },
    "trading_sessions": {
        "start_time", "mode", "initial_balance", "strategy_name", "symbol", "timeframe",
    },
    "optimization_cycles": {
        "timestamp", "strategy_name", "symbol", "timeframe",
    },
    "prediction_cache": {
        "cache_key", "model_name", "features_hash", "predicted_price", "confidence", "direction",
        "created_at", "expires_at", "config_hash",
    },
    "partial_trades": {
        "position_id", "operation_type", "size", "price",
    },
    "strategy_executions": {
        "timestamp", "strategy_name", "symbol",
    },
    "account_balances": {
        "base_currency", "total_balance", "available_balance", "last_updated",
    },
    "market_sessions": set(),
    "prediction_performance": {
        "timestamp", "model_name", "strategy_name", "symbol", "timeframe",
    },
    "dynamic_performance_metrics": {
        "timestamp", "session_id",
    },
    "risk_adjustments": {
        "timestamp", "adjustment_type", "parameter_name", "original_value", "adjusted_value",
        "adjustment_factor", "session_id",
    },
    "correlation_matrix": set(),
    "portfolio_exposures": set(),
    "strategy_registry": {
        "strategy_id", "name", "version", "created_at", "created_by", "status",
        "signal_generator_config", "risk_manager_config", "position_sizer_config",
        "regime_detector_config", "config_hash", "component_hash",
    },
    "strategy_versions": {
        "strategy_id", "version", "created_at", "changes",
    },
    "strategy_performance": {
        "strategy_id", "version", "period_start", "period_end", "period_type", "total_return",
        "total_return_pct",
    },
    "strategy_lineage": {
        "ancestor_id", "descendant_id", "relationship_type", "generation_distance", "created_at",
    },
}
# fmt: on

# atb's only added column: architecture.md, "filled_quantity and average_fill_price track fills".
ADDED_COLUMNS = {"orders": {"average_fill_price": "filled_price"}}
# Tables the manager logs to end with `request_id` (migration 004: exactly-once writes).
REQUEST_KEYED = {
    "trading_sessions", "positions", "orders", "partial_trades", "trades", "account_history",
    "account_balances", "system_events", "dynamic_performance_metrics", "risk_adjustments",
    "strategy_executions", "optimization_cycles",
}  # fmt: skip


@pytest.fixture
def db():
    """A fresh in-memory SQLite database with every table, bound to the models' proxy."""
    previous = database.obj
    sqlite = pw.SqliteDatabase(":memory:", pragmas={"foreign_keys": 1})
    database.initialize(sqlite)
    sqlite.create_tables(ALL_MODELS)
    yield sqlite
    sqlite.close()
    database.initialize(previous)


def make_position(session: TradingSession | None = None) -> Position:
    return Position.create(
        symbol="BTCUSDT",
        side="LONG",
        entry_price=decimal.Decimal("42000.5"),
        size=decimal.Decimal("0.1"),
        entry_time=dt.datetime(2024, 1, 1, 1, tzinfo=UTC),
        strategy_name="ml_basic",
        session=session,
    )


def make_trade(**overrides) -> Trade:
    values = dict(
        symbol="BTCUSDT",
        side="LONG",
        entry_price=decimal.Decimal("42000.5"),
        exit_price=decimal.Decimal("43000"),
        size=decimal.Decimal("0.1"),
        entry_time=dt.datetime(2024, 1, 1, 1, tzinfo=UTC),
        exit_time=dt.datetime(2024, 1, 1, 5, tzinfo=UTC),
        pnl=decimal.Decimal("99.95"),
        pnl_percent=decimal.Decimal("2.38"),
        strategy_name="ml_basic",
    )
    values.update(overrides)
    return Trade.create(**values)


def test_there_are_the_22_reference_tables_and_atb_s_metric_rollups():
    assert len(ALL_MODELS) == len(set(ALL_MODELS)) == 23
    assert set(MODELS_BY_TABLE) == set(REFERENCE_COLUMNS) | {"metric_rollups"}


def test_all_models_lists_parents_before_children():
    seen: set[type] = set()
    for model in ALL_MODELS:
        for fk in model._meta.refs:
            assert fk.rel_model in seen or fk.rel_model is model, (model, fk.rel_model)
        seen.add(model)


@pytest.mark.parametrize("table", sorted(REFERENCE_COLUMNS))
def test_every_reference_column_exists_in_schema_order(table):
    columns = [field.column_name for field in MODELS_BY_TABLE[table]._meta.sorted_fields]
    for added, after in ADDED_COLUMNS.get(table, {}).items():
        assert columns.index(added) == columns.index(after) + 1
        columns.remove(added)
    if table in REQUEST_KEYED:
        assert columns.pop() == "request_id"
        assert MODELS_BY_TABLE[table].request_id.unique
    assert columns == list(REFERENCE_COLUMNS[table])


@pytest.mark.parametrize("table", sorted(REFERENCE_COLUMNS))
def test_nullability_matches_the_reference(table):
    fields = MODELS_BY_TABLE[table]._meta.columns
    not_null = {name for name, field in fields.items() if not field.null and name != "id"}
    assert not_null == NOT_NULL_COLUMNS[table]


@pytest.mark.parametrize("table", sorted(REFERENCE_COLUMNS))
def test_money_columns_are_exact_numeric_never_float(table):
    fields = MODELS_BY_TABLE[table]._meta.columns
    expected = MONEY_COLUMNS[table] | set(ADDED_COLUMNS.get(table, {}))
    money = {name for name, field in fields.items() if isinstance(field, MoneyField)}
    assert money == expected
    for name in money:
        field = fields[name]
        assert (field.max_digits, field.decimal_places) == (18, 8)
    assert not [f for f in fields.values() if isinstance(f, (pw.FloatField, pw.DoubleField))]


def test_money_columns_are_declared_numeric_18_8_in_the_ddl(db):
    declared = {
        (table, row[1]): row[2]
        for table in MODELS_BY_TABLE
        for row in db.execute_sql(f'PRAGMA table_info("{table}")').fetchall()
    }
    for table, columns in MONEY_COLUMNS.items():
        for column in columns:
            assert declared[(table, column)] == "DECIMAL(18, 8)", (table, column)


def test_a_raw_insert_of_an_unknown_enum_value_is_refused(db):
    with pytest.raises(pw.IntegrityError):
        db.execute_sql(
            "INSERT INTO trades (symbol, side, entry_price, exit_price, size, entry_time,"
            " exit_time, pnl, pnl_percent, strategy_name) VALUES"
            " ('BTCUSDT', 'BUY', 1, 2, 0.1, '2024-01-01 00:00:00', '2024-01-01 01:00:00',"
            " 1, 1, 'ml_basic')"
        )


def test_a_raw_minimal_insert_into_positions_gets_server_defaults(db):
    db.execute_sql(
        "INSERT INTO positions (symbol, side, entry_price, size, entry_time, strategy_name)"
        " VALUES ('BTCUSDT', 'LONG', 42000, 0.1, '2024-01-01 00:00:00', 'ml_basic')"
    )
    status, trailing_stop, created_at, exchange, partial_exits = db.execute_sql(
        "SELECT status, trailing_stop, created_at, exchange, partial_exits_taken FROM positions"
    ).fetchone()
    assert status == "OPEN"
    assert trailing_stop == 0
    assert created_at is not None
    assert exchange == "binance"
    assert partial_exits == 0

    position = Position.get()
    assert position.status == "OPEN"
    assert position.trailing_stop is False
    assert position.created_at.tzinfo is not None
    assert position.unrealized_pnl == 0


def test_deleting_a_position_cascades_to_its_orders_and_unlinks_its_trades(db):
    session = make_session()
    position = make_position(session)
    Order.create(
        position=position,
        order_type="ENTRY",
        status="FILLED",
        internal_order_id="o-1",
        symbol="BTCUSDT",
        side="LONG",
        quantity=decimal.Decimal("0.002"),
        strategy_name="ml_basic",
        session=session,
    )
    PartialTrade.create(position=position, operation_type="PARTIAL_EXIT", size="0.5", price="43000")
    trade = make_trade(position=position, session=session)

    Position.delete_by_id(position.id)

    assert Order.select().count() == 0
    assert PartialTrade.select().count() == 0
    assert db.execute_sql("SELECT position_id FROM trades").fetchall() == [(None,)]
    assert Trade.get_by_id(trade.id).session_id == session.id


def test_deleting_a_session_keeps_its_trades_with_a_null_session(db):
    session = make_session()
    make_trade(session=session)

    TradingSession.delete_by_id(session.id)

    assert db.execute_sql("SELECT session_id FROM trades").fetchall() == [(None,)]


def test_a_money_value_with_ten_integer_digits_and_eight_places_round_trips(db):
    value = decimal.Decimal("12345678.12345678")
    trade = make_trade(entry_price=value)

    stored = Trade.get_by_id(trade.id).entry_price

    assert isinstance(stored, decimal.Decimal)
    assert stored.quantize(EIGHT_PLACES) == value


def test_a_float_money_value_is_stored_by_its_shortest_decimal(db):
    trade = make_trade(pnl=0.1 + 0.2)

    assert Trade.get_by_id(trade.id).pnl.quantize(EIGHT_PLACES) == decimal.Decimal("0.3")


def test_json_none_is_stored_as_sql_null(db):
    make_trade(strategy_config=None)

    (count,) = db.execute_sql(
        "SELECT COUNT(*) FROM trades WHERE strategy_config IS NULL"
    ).fetchone()
    assert count == 1


def test_json_payloads_are_sanitised_before_they_are_stored(db):
    payload = {
        "threshold": decimal.Decimal("0.5"),
        "lookback": decimal.Decimal("20"),
        "bad": float("nan"),
        "at": dt.datetime(2024, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    }
    trade = make_trade(strategy_config=payload)

    (raw,) = db.execute_sql("SELECT strategy_config FROM trades").fetchone()
    assert "NaN" not in raw
    expected = {"threshold": 0.5, "lookback": 20, "bad": None, "at": "2024-01-01T00:00:00+00:00"}
    assert json.loads(raw) == expected
    assert Trade.get_by_id(trade.id).strategy_config == expected


def test_saving_an_existing_row_refreshes_updated_at(db):
    old = dt.datetime(2020, 1, 1, tzinfo=UTC)
    position = make_position()
    Position.update(updated_at=old, last_update=old).where(Position.id == position.id).execute()
    position = Position.get_by_id(position.id)

    position.current_price = decimal.Decimal("43000")
    position.save()

    reloaded = Position.get_by_id(position.id)
    assert reloaded.updated_at > old
    assert reloaded.last_update == old  # positions.last_update is set on insert only


def test_a_bulk_update_refreshes_the_touched_column(db):
    old = dt.datetime(2020, 1, 1, tzinfo=UTC)
    trade = make_trade()
    Trade.update(updated_at=old).where(Trade.id == trade.id).execute()

    Trade.update(exit_reason="take_profit").where(Trade.id == trade.id).execute()

    assert Trade.get_by_id(trade.id).updated_at > old


def test_a_partially_filled_order_is_a_real_status(db):
    position = make_position()
    order = Order.create(
        position=position,
        order_type="ENTRY",
        status="PARTIALLY_FILLED",
        internal_order_id="o-2",
        symbol="BTCUSDT",
        side="LONG",
        quantity=decimal.Decimal("1"),
        filled_quantity=decimal.Decimal("0.4"),
        average_fill_price=decimal.Decimal("42000.12345678"),
        strategy_name="ml_basic",
    )

    reloaded = Order.get_by_id(order.id)
    assert reloaded.status == "PARTIALLY_FILLED"
    assert reloaded.average_fill_price == decimal.Decimal("42000.12345678")
