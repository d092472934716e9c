"""DatabaseManager ledger groups on SQLite: accounts, metrics, events, optimisation, prediction
cache and maintenance. Each test states one behaviour and checks what the database holds.

Ledger behaviour that must hold on PostgreSQL too is tested on both backends in
tests/integration/test_manager_both_backends.py."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math

import pytest
from helpers import cache_prediction, expire_prediction, make_trade, new_session_id, now

from atb.db import ConfigurationError, ValidationError
from atb.db.enums import EventType
from atb.db.manage import predictions as prediction_module
from atb.db.models import (
    AccountBalance,
    AccountHistory,
    DynamicPerformanceMetrics,
    OptimizationCycle,
    PredictionCache,
    RiskAdjustment,
    StrategyExecution,
    SystemEvent,
    TradingSession,
)

UTC = dt.UTC
D = decimal.Decimal


# --- accounts ---------------------------------------------------------------------------------


def test_account_snapshot_is_stored_with_exact_values(manager):
    snapshot_id = manager.log_account_snapshot(
        "1000.12345678", 1010.5, -3.25, 2, 400, 1.5, daily_pnl=2.5, margin_used=100
    )

    row = AccountHistory.get_by_id(snapshot_id)
    assert row.balance == D("1000.12345678")
    assert row.equity == D("1010.5")
    assert row.total_pnl == D("-3.25")
    assert row.open_positions == 2
    assert row.daily_pnl == D("2.5")
    assert row.drawdown == D("1.5")


def test_account_snapshot_defaults_margin_available_to_balance_minus_margin_used(manager):
    snapshot_id = manager.log_account_snapshot(1000, 1000, 0, 0, 0, 0, margin_used=250)

    assert AccountHistory.get_by_id(snapshot_id).margin_available == D("750")


def test_account_snapshot_belongs_to_the_current_session(manager):
    manager._current_session_id = new_session_id()

    snapshot_id = manager.log_account_snapshot(1000, 1000, 0, 0, 0, 0)

    assert AccountHistory.get_by_id(snapshot_id).session_id == manager._current_session_id


def test_account_snapshot_converts_an_aware_timestamp_to_utc(manager):
    tz = dt.timezone(dt.timedelta(hours=2))
    moment = dt.datetime(2024, 5, 1, 12, 0, tzinfo=tz)

    snapshot_id = manager.log_account_snapshot(1000, 1000, 0, 0, 0, 0, timestamp=moment)

    assert AccountHistory.get_by_id(snapshot_id).timestamp == dt.datetime(
        2024, 5, 1, 10, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("balance", {"balance": float("nan")}),
        ("balance", {"balance": -1}),
        ("equity", {"equity": float("inf")}),
        ("open_positions", {"open_positions": -1}),
        ("drawdown", {"drawdown": -0.5}),
    ],
)
def test_account_snapshot_refuses_bad_numbers_and_writes_nothing(manager, field, kwargs):
    values = dict(
        balance=1000, equity=1000, total_pnl=0, open_positions=0, total_exposure=0, drawdown=0
    )
    values.update(kwargs)

    with pytest.raises(ValidationError) as error:
        manager.log_account_snapshot(**values)

    assert error.value.field == field
    assert AccountHistory.select().count() == 0


def test_current_balance_is_zero_without_ledger_rows(manager):
    assert manager.get_current_balance(new_session_id()) == 0.0


def test_current_balance_is_zero_without_a_session(manager):
    assert manager.get_current_balance() == 0.0


def test_current_balance_is_the_newest_ledger_row(manager):
    sid = new_session_id()
    manager.update_balance(1100, "deposit", session_id=sid)
    manager.update_balance(1050.25, "trade_pnl", session_id=sid)

    assert manager.get_current_balance(sid) == 1050.25


def test_update_balance_appends_a_ledger_row(manager):
    sid = new_session_id()

    assert manager.update_balance("1234.5", "deposit", updated_by="admin", session_id=sid) is True

    row = AccountBalance.get(AccountBalance.session == sid)
    assert (row.total_balance, row.available_balance) == (D("1234.5"), D("1234.5"))
    assert (row.updated_by, row.update_reason) == ("admin", "deposit")


def test_update_balance_without_a_session_returns_false_and_writes_nothing(manager):
    assert manager.update_balance(1000, "deposit") is False
    assert AccountBalance.select().count() == 0


def test_update_balance_for_an_unknown_session_returns_false_and_writes_nothing(manager):
    assert manager.update_balance(1000, "deposit", session_id=999) is False
    assert AccountBalance.select().count() == 0


def test_update_balance_refuses_a_negative_balance(manager):
    sid = new_session_id()

    with pytest.raises(ValidationError, match="new_balance"):
        manager.update_balance(-5, "oops", session_id=sid)

    assert AccountBalance.select().count() == 0


def test_manual_adjustment_writes_the_balance_and_an_event_with_old_and_new_balance(manager):
    sid = new_session_id()
    manager.update_balance(1000, "initial", session_id=sid)

    assert manager.manual_balance_adjustment(1250, "deposit found", session_id=sid) is True

    assert manager.get_current_balance(sid) == 1250.0
    event = SystemEvent.get(SystemEvent.event_type == EventType.BALANCE_ADJUSTMENT)
    assert event.session_id == sid
    assert event.details["old_balance"] == 1000.0
    assert event.details["new_balance"] == 1250.0
    assert event.details["reason"] == "deposit found"
    assert event.details["adjusted_by"] == "user"


def test_manual_adjustment_without_ledger_rows_reports_the_initial_balance_as_old(manager):
    sid = new_session_id(initial_balance="500")

    manager.manual_balance_adjustment(600, "top up", session_id=sid)

    event = SystemEvent.get(SystemEvent.event_type == EventType.BALANCE_ADJUSTMENT)
    assert event.details["old_balance"] == 500.0


def test_manual_adjustment_refuses_an_overlong_reason_before_writing(manager):
    sid = new_session_id()

    with pytest.raises(ValidationError, match="reason"):
        manager.manual_balance_adjustment(1250, "x" * 500, session_id=sid)

    assert AccountBalance.select().count() == 0
    assert SystemEvent.select().count() == 0


def test_manual_adjustment_of_an_unknown_session_returns_false(manager):
    assert manager.manual_balance_adjustment(1250, "deposit", session_id=999) is False
    assert AccountBalance.select().count() == 0


def test_balance_history_is_newest_first_and_limited(manager):
    sid = new_session_id()
    for amount in (1000, 1100, 1200):
        manager.update_balance(amount, "step", session_id=sid)

    history = manager.get_balance_history(sid, limit=2)

    assert [row["balance"] for row in history] == [1200.0, 1100.0]
    assert set(history[0]) == {
        "id",
        "balance",
        "available",
        "reserved",
        "timestamp",
        "updated_by",
        "reason",
        "base_currency",
    }


# --- metrics ----------------------------------------------------------------------------------

METRIC_KEYS = {
    "total_trades",
    "winning_trades",
    "losing_trades",
    "win_rate",
    "total_pnl",
    "avg_win",
    "avg_loss",
    "profit_factor",
    "best_trade",
    "worst_trade",
    "sharpe_ratio",
    "max_drawdown",
    "avg_trade_duration_hours",
}


def test_performance_metrics_of_no_trades_are_zeros_with_the_full_key_set(manager):
    metrics = manager.get_performance_metrics()

    assert set(metrics) == METRIC_KEYS
    assert all(value == 0 for value in metrics.values())


def test_performance_metrics_key_set_does_not_depend_on_the_data(manager):
    sid = new_session_id()
    make_trade(sid, "5", "0.5")

    assert set(manager.get_performance_metrics(session_id=sid)) == METRIC_KEYS


def test_performance_metrics_only_count_the_given_session(manager):
    mine, other = new_session_id(), new_session_id()
    make_trade(mine, "10", "1")
    make_trade(other, "-99", "-9")

    metrics = manager.get_performance_metrics(session_id=mine)

    assert (metrics["total_trades"], metrics["total_pnl"]) == (1, 10.0)


def test_performance_metrics_use_the_current_session_by_default(manager):
    mine, other = new_session_id(), new_session_id()
    make_trade(mine, "10", "1")
    make_trade(other, "-99", "-9")
    manager._current_session_id = mine

    assert manager.get_performance_metrics()["total_trades"] == 1


def test_daily_performance_metrics_leave_out_older_trades(manager):
    sid = new_session_id()
    make_trade(sid, "10", "1", exit_time=now() - dt.timedelta(hours=2))
    make_trade(sid, "-5", "-1", exit_time=now() - dt.timedelta(days=3))

    daily = manager.get_performance_metrics("daily", session_id=sid)
    weekly = manager.get_performance_metrics("WEEKLY", session_id=sid)

    assert (daily["total_trades"], weekly["total_trades"]) == (1, 2)


def test_start_and_end_dates_override_the_period(manager):
    sid = new_session_id()
    make_trade(sid, "10", "1", exit_time=now() - dt.timedelta(days=3))
    make_trade(sid, "20", "1", exit_time=now() - dt.timedelta(days=10))

    metrics = manager.get_performance_metrics(
        "daily",
        start_date=now() - dt.timedelta(days=5),
        end_date=now() - dt.timedelta(days=1),
        session_id=sid,
    )

    assert metrics["total_pnl"] == 10.0


def test_performance_metrics_refuse_an_unknown_period_naming_the_allowed_ones(manager):
    with pytest.raises(ValidationError, match="all-time, daily, weekly, monthly"):
        manager.get_performance_metrics("yearly")


def test_performance_metrics_refuse_a_start_after_the_end(manager):
    with pytest.raises(ValidationError, match="start_date"):
        manager.get_performance_metrics(start_date=now(), end_date=now() - dt.timedelta(days=1))


def test_profit_factor_is_capped_when_there_are_no_losses(manager):
    sid = new_session_id()
    make_trade(sid, "10", "1")

    assert manager.get_performance_metrics(session_id=sid)["profit_factor"] == 999999.99


def test_sharpe_ratio_is_zero_when_every_trade_returns_the_same(manager):
    sid = new_session_id()
    for _ in range(3):
        make_trade(sid, "10", "1.1")

    assert manager.get_performance_metrics(session_id=sid)["sharpe_ratio"] == 0.0


def test_dynamic_metrics_are_logged_for_the_current_session(manager):
    manager._current_session_id = new_session_id()

    row_id = manager.log_dynamic_performance_metrics(
        rolling_win_rate=0.55, rolling_sharpe_ratio=1.2, consecutive_losses=2
    )

    row = DynamicPerformanceMetrics.get_by_id(row_id)
    assert row.session_id == manager._current_session_id
    assert (row.rolling_win_rate, row.consecutive_losses) == (D("0.55"), 2)
    assert row.risk_adjustment_factor == D("1")


def test_dynamic_metrics_without_a_session_are_refused(manager):
    with pytest.raises(ValidationError, match="session_id"):
        manager.log_dynamic_performance_metrics(rolling_win_rate=0.5)

    assert DynamicPerformanceMetrics.select().count() == 0


def test_risk_adjustment_is_logged_with_exact_values(manager):
    sid = new_session_id()

    row_id = manager.log_risk_adjustment(
        sid, "drawdown", "dd above 5%", "position_size_factor", 0.02, 0.01, 0.5, current_drawdown=6
    )

    row = RiskAdjustment.get_by_id(row_id)
    assert (row.original_value, row.adjusted_value, row.adjustment_factor) == (
        D("0.02"),
        D("0.01"),
        D("0.5"),
    )
    assert row.current_drawdown == D("6")


def test_risk_adjustment_refuses_a_nan_value(manager):
    with pytest.raises(ValidationError, match="adjusted_value"):
        manager.log_risk_adjustment(new_session_id(), "drawdown", None, "x", 1, float("nan"), 1)

    assert RiskAdjustment.select().count() == 0


# --- events -----------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["engine_start", "Engine_Start", EventType.ENGINE_START])
def test_log_event_accepts_event_type_members_and_names_in_any_case(manager, event_type):
    event_id = manager.log_event(event_type, "started")

    assert SystemEvent.get_by_id(event_id).event_type is EventType.ENGINE_START


def test_log_event_stores_severity_in_lower_case(manager):
    event_id = manager.log_event("ERROR", "boom", severity="CRITICAL")

    assert SystemEvent.get_by_id(event_id).severity == "critical"


def test_log_event_refuses_an_unknown_severity_naming_the_allowed_ones(manager):
    with pytest.raises(ValidationError, match="info, warning, error, critical"):
        manager.log_event("ERROR", "boom", severity="fatal")

    assert SystemEvent.select().count() == 0


def test_log_event_refuses_an_unknown_event_type_naming_the_allowed_ones(manager):
    with pytest.raises(ValidationError, match="ENGINE_START") as error:
        manager.log_event("EXPLOSION", "boom")

    assert error.value.field == "event_type"
    assert SystemEvent.select().count() == 0


def test_log_event_sanitises_details(manager, sqlite_db):
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

    event_id = manager.log_event(
        "TEST",
        "payload",
        details={"price": D("123.45"), "ratio": float("nan"), "inf": float("inf"), "at": moment},
    )

    raw = sqlite_db.execute_sql("SELECT details FROM system_events WHERE id = ?", (event_id,))
    assert json.loads(raw.fetchone()[0]) == {
        "price": 123.45,
        "ratio": None,
        "inf": None,
        "at": "2024-01-02T03:04:05+00:00",
    }


def test_log_event_refuses_an_empty_message(manager):
    with pytest.raises(ValidationError, match="message"):
        manager.log_event("TEST", "   ")


def test_recent_events_are_newest_first(manager):
    base = now()
    for minutes, text in ((1, "first"), (3, "third"), (2, "second")):
        manager.log_event("TEST", text, timestamp=base + dt.timedelta(minutes=minutes))

    assert [e["message"] for e in manager.get_recent_events()] == ["third", "second", "first"]


def test_recent_events_filter_by_severity_and_type(manager):
    manager.log_event("ERROR", "bad", severity="error")
    manager.log_event("WARNING", "meh", severity="warning")
    manager.log_event("ERROR", "worse", severity="critical")

    events = manager.get_recent_events(severity="ERROR", event_type="error")

    assert [e["message"] for e in events] == ["bad"]


def test_recent_events_filter_by_session(manager):
    mine, other = new_session_id(), new_session_id()
    manager.log_event("TEST", "mine", session_id=mine)
    manager.log_event("TEST", "other", session_id=other)

    assert [e["message"] for e in manager.get_recent_events(session_id=mine)] == ["mine"]


def test_recent_events_have_a_stable_key_set(manager):
    manager.log_event("TEST", "hello")

    (event,) = manager.get_recent_events()

    assert set(event) == {
        "id",
        "timestamp",
        "event_type",
        "severity",
        "message",
        "details",
        "component",
        "error_code",
        "stack_trace",
        "alert_sent",
        "alert_method",
        "session_id",
    }


def test_strategy_execution_sanitises_indicators_with_nan_and_decimal(manager, sqlite_db):
    row_id = manager.log_strategy_execution(
        "ml_basic",
        "BTCUSDT",
        "entry",
        "opened_long",
        "43210.5",
        indicators={"rsi": float("nan"), "atr": D("12.5"), "ema": 42000.0},
        reasons=["rsi_oversold", "trend_up"],
    )

    row = StrategyExecution.get_by_id(row_id)
    assert row.indicators == {"rsi": None, "atr": 12.5, "ema": 42000.0}
    assert row.reasons == ["rsi_oversold", "trend_up"]
    assert row.price == D("43210.5")


def test_strategy_execution_refuses_a_negative_volume(manager):
    with pytest.raises(ValidationError, match="volume"):
        manager.log_strategy_execution("s", "BTCUSDT", "hold", "no_action", 100, volume=-1)

    assert StrategyExecution.select().count() == 0


def test_bulk_strategy_executions_write_every_row_in_order(manager):
    sid = new_session_id()
    base = now()
    rows = [
        {
            "strategy_name": "ml_basic",
            "symbol": "BTCUSDT",
            "signal_type": "hold",
            "action_taken": "no_action",
            "price": 100 + i,
            "session_id": sid,
            "timestamp": base + dt.timedelta(minutes=i),
        }
        for i in range(2500)
    ]

    ids = manager.log_strategy_executions(rows)

    assert len(ids) == 2500
    prices = [
        p
        for (p,) in StrategyExecution.select(StrategyExecution.price)
        .where(StrategyExecution.id.in_(ids))
        .order_by(StrategyExecution.id)
        .tuples()
    ]
    assert prices == [D(100 + i) for i in range(2500)]


def test_bulk_strategy_executions_write_nothing_when_one_row_is_invalid(manager):
    good = {
        "strategy_name": "s",
        "symbol": "BTCUSDT",
        "signal_type": "hold",
        "action_taken": "no_action",
        "price": 100,
    }
    rows = [good] * 1500 + [{**good, "price": float("nan")}]

    with pytest.raises(ValidationError, match=r"rows\[1500\]\.price"):
        manager.log_strategy_executions(rows)

    assert StrategyExecution.select().count() == 0


def test_bulk_strategy_executions_refuse_unknown_keys(manager):
    row = {
        "strategy_name": "s",
        "symbol": "BTCUSDT",
        "signal_type": "hold",
        "action_taken": "no_action",
        "price": 100,
        "colour": "red",
    }

    with pytest.raises(ValidationError, match="colour"):
        manager.log_strategy_executions([row])


# --- optimisation -----------------------------------------------------------------------------


def test_optimization_cycle_round_trips_its_payloads(manager):
    cycle_id = manager.record_optimization_cycle(
        "ml_basic",
        "BTCUSDT",
        "1h",
        {"sharpe": D("1.25")},
        {"stop_loss": 0.02},
        {"sharpe": 1.4},
        {"p_value": 0.03, "passed": True},
        "propose",
    )

    (cycle,) = manager.fetch_optimization_cycles()
    assert cycle["id"] == cycle_id
    assert cycle["baseline_metrics"] == {"sharpe": 1.25}
    assert cycle["validator_report"] == {"p_value": 0.03, "passed": True}
    assert cycle["decision"] == "propose"


def test_unset_optimization_payloads_are_sql_null_and_read_as_empty_dicts(manager, sqlite_db):
    cycle_id = manager.record_optimization_cycle("s", "BTCUSDT", "1h", None, None, None, None, None)

    raw = sqlite_db.execute_sql(
        "SELECT candidate_params IS NULL FROM optimization_cycles WHERE id = ?", (cycle_id,)
    )
    assert raw.fetchone()[0] == 1
    (cycle,) = manager.fetch_optimization_cycles()
    assert cycle["candidate_params"] == {} and cycle["baseline_metrics"] == {}


def test_optimization_cycles_are_newest_first_and_paged(manager):
    ids = [
        manager.record_optimization_cycle("s", "BTCUSDT", "1h", {}, {}, {}, {}, "reject")
        for _ in range(3)
    ]

    page = manager.fetch_optimization_cycles(limit=2, offset=1)

    assert [c["id"] for c in page] == [ids[1], ids[0]]


def test_optimization_cycle_refuses_an_overlong_decision(manager):
    with pytest.raises(ValidationError, match="decision"):
        manager.record_optimization_cycle("s", "BTCUSDT", "1h", {}, {}, {}, {}, "x" * 21)

    assert OptimizationCycle.select().count() == 0


# --- prediction cache -------------------------------------------------------------------------


def test_cached_prediction_is_returned_until_it_expires(manager):
    cache_prediction(manager, ttl_seconds=300)

    hit = manager.get_cached_prediction("k1")

    assert hit["predicted_price"] == 43000.5
    assert (hit["confidence"], hit["direction"], hit["model_name"]) == (0.8, 1, "lstm")


def test_an_unknown_cache_key_is_a_miss(manager):
    assert manager.get_cached_prediction("nope") is None


def test_caching_the_same_key_again_replaces_the_entry(manager):
    first = cache_prediction(manager, predicted_price=100)
    manager.get_cached_prediction("k1")

    second = cache_prediction(manager, predicted_price=200, direction=-1)

    assert first == second
    row = PredictionCache.get(PredictionCache.cache_key == "k1")
    assert (row.predicted_price, row.direction, row.access_count) == (D("200"), -1, 1)
    assert PredictionCache.select().count() == 1


def test_a_cache_hit_bumps_the_access_count_and_time(manager):
    cache_prediction(manager)
    before = PredictionCache.get(PredictionCache.cache_key == "k1").last_accessed

    manager.get_cached_prediction("k1")
    manager.get_cached_prediction("k1")

    row = PredictionCache.get(PredictionCache.cache_key == "k1")
    assert row.access_count == 2
    assert row.last_accessed >= before


@pytest.mark.parametrize("direction", [2, -2, 0.5, "up"])
def test_direction_must_be_minus_one_zero_or_one(manager, direction):
    with pytest.raises(ValidationError, match="-1, 0, 1"):
        cache_prediction(manager, direction=direction)

    assert PredictionCache.select().count() == 0


@pytest.mark.parametrize("ttl", [0, -5])
def test_ttl_must_be_positive(manager, ttl):
    with pytest.raises(ValidationError, match="ttl_seconds"):
        cache_prediction(manager, ttl_seconds=ttl)


def test_invalidate_predictions_of_one_config_keeps_the_others(manager):
    cache_prediction(manager, "a", config="c1")
    cache_prediction(manager, "b", config="c2")
    cache_prediction(manager, "c", model="other", config="c1")

    assert manager.invalidate_predictions("lstm", "c1") == 1
    assert sorted(r.cache_key for r in PredictionCache.select()) == ["b", "c"]


def test_invalidate_predictions_of_a_model_removes_all_its_entries(manager):
    cache_prediction(manager, "a", config="c1")
    cache_prediction(manager, "b", config="c2")

    assert manager.invalidate_predictions("lstm") == 2
    assert PredictionCache.select().count() == 0


def test_purge_expired_predictions_removes_only_expired_entries(manager):
    cache_prediction(manager, "old")
    cache_prediction(manager, "fresh")
    expire_prediction("old")

    assert manager.purge_expired_predictions() == 1
    assert [r.cache_key for r in PredictionCache.select()] == ["fresh"]


def test_prediction_cache_stats_count_entries_expiry_and_hits_per_model(manager):
    cache_prediction(manager, "a")
    cache_prediction(manager, "b")
    cache_prediction(manager, "c", model="xgb")
    expire_prediction("b")
    manager.get_cached_prediction("a")
    manager.get_cached_prediction("a")

    stats = manager.prediction_cache_stats()

    assert (stats["total"], stats["active"], stats["expired"], stats["hits"]) == (3, 2, 1, 2)
    assert stats["by_model"]["lstm"] == {"entries": 2, "active": 1, "expired": 1, "hits": 2}
    assert stats["by_model"]["xgb"]["entries"] == 1


def test_the_cache_size_limit_keeps_the_most_recently_used_entries(manager):
    manager.prediction_cache_max_entries = 3
    for key in ("a", "b", "c"):
        cache_prediction(manager, key)
    manager.get_cached_prediction("a")  # "a" is now the most recently used

    cache_prediction(manager, "d")

    assert sorted(r.cache_key for r in PredictionCache.select()) == ["a", "c", "d"]


def test_the_cache_size_limit_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv(prediction_module.MAX_ENTRIES_ENV, "250")
    assert prediction_module.max_entries_from_env() == 250
    monkeypatch.setenv(prediction_module.MAX_ENTRIES_ENV, "none")
    assert prediction_module.max_entries_from_env() is None
    monkeypatch.delenv(prediction_module.MAX_ENTRIES_ENV)
    assert prediction_module.max_entries_from_env() == 10_000


def test_a_malformed_cache_size_limit_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv(prediction_module.MAX_ENTRIES_ENV, "lots")

    with pytest.raises(ConfigurationError, match=prediction_module.MAX_ENTRIES_ENV):
        prediction_module.max_entries_from_env()


# --- maintenance ------------------------------------------------------------------------------


def test_cleanup_keeps_an_old_session_still_marked_active(manager):
    new_session_id(ended_days_ago=120, active=True)

    assert manager.cleanup_old_data(90)["trading_sessions"] == 0
    assert TradingSession.select().count() == 1


def test_cleanup_refuses_a_negative_retention(manager):
    with pytest.raises(ValidationError, match="days_to_keep"):
        manager.cleanup_old_data(-1)


def test_performance_metrics_results_are_plain_floats(manager):
    sid = new_session_id()
    make_trade(sid, "1.5", "0.1")
    make_trade(sid, "-0.5", "-0.1")

    metrics = manager.get_performance_metrics(session_id=sid)

    assert not any(isinstance(v, decimal.Decimal) for v in metrics.values())
    assert all(math.isfinite(v) for v in metrics.values())
