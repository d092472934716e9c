"""What happened and how well: system events, aggregated and rolling performance, risk adjustments."""

from __future__ import annotations

import peewee as pw

from atb.db.enums import EventType
from atb.db.fields import (
    CountField,
    EnumField,
    FlagField,
    JsonField,
    MoneyField,
    UTCDateTimeField,
    server_default,
)
from atb.db.models.base import BaseModel, request_key
from atb.db.models.trading import session_link


class SystemEvent(BaseModel):
    """One engine or system event (lifecycle, change, error, alert) with details and alert status."""

    # Indexed by the composite (timestamp, event_type) below.
    timestamp = UTCDateTimeField()
    event_type = EnumField(EventType)
    severity = pw.CharField(
        max_length=20, null=True, default="info", constraints=[server_default("'info'")]
    )
    message = pw.TextField()
    details = JsonField(null=True)
    component = pw.CharField(max_length=100, null=True)
    error_code = pw.CharField(max_length=50, null=True)
    stack_trace = pw.TextField(null=True)
    alert_sent = FlagField(null=True)
    alert_method = pw.CharField(max_length=50, null=True)
    # Indexed by the composite (session_id, timestamp) below.
    session = session_link("system_events", index=False)
    session_id: int | None  # the foreign key's raw value (peewee's accessor)
    created_at = UTCDateTimeField(server_now=True, null=True)

    request_id = request_key()

    class Meta:
        table_name = "system_events"
        indexes = (
            (("timestamp", "event_type"), False),
            (("severity", "timestamp"), False),
            (("session_id", "timestamp"), False),
        )


class PerformanceMetrics(BaseModel):
    """Aggregated performance statistics for one period, globally or for one session."""

    _touch_on_update = ("updated_at",)

    period = pw.CharField(max_length=20)
    period_start = UTCDateTimeField(index=True)
    period_end = UTCDateTimeField()
    total_trades = CountField(null=True)
    winning_trades = CountField(null=True)
    losing_trades = CountField(null=True)
    win_rate = MoneyField(null=True, server_default="0")
    total_return = MoneyField(null=True, server_default="0")
    total_return_percent = MoneyField(null=True, server_default="0")
    max_drawdown = MoneyField(null=True, server_default="0")
    max_drawdown_duration = pw.IntegerField(null=True)
    sharpe_ratio = MoneyField(null=True)
    sortino_ratio = MoneyField(null=True)
    calmar_ratio = MoneyField(null=True)
    avg_win = MoneyField(null=True, server_default="0")
    avg_loss = MoneyField(null=True, server_default="0")
    profit_factor = MoneyField(null=True, server_default="0")
    expectancy = MoneyField(null=True, server_default="0")
    best_trade_pnl = MoneyField(null=True)
    worst_trade_pnl = MoneyField(null=True)
    largest_win_streak = CountField(null=True)
    largest_loss_streak = CountField(null=True)
    strategy_breakdown = JsonField(null=True)
    session = session_link("performance_metrics")
    created_at = UTCDateTimeField(server_now=True, null=True)
    updated_at = UTCDateTimeField(server_now=True, null=True)

    class Meta:
        table_name = "performance_metrics"
        # The unique index also serves (period, period_start) lookups, so the reference's
        # idx_metrics_period is not repeated.
        indexes = ((("period", "period_start", "session_id"), True),)


class DynamicPerformanceMetrics(BaseModel):
    """A per-session snapshot of rolling performance and the risk factor the adaptive manager applied."""

    timestamp = UTCDateTimeField(index=True)
    rolling_win_rate = MoneyField(null=True)
    rolling_sharpe_ratio = MoneyField(null=True)
    current_drawdown = MoneyField(null=True)
    volatility_30d = MoneyField(null=True)
    consecutive_losses = CountField(null=True)
    consecutive_wins = CountField(null=True)
    risk_adjustment_factor = MoneyField(null=True, server_default="1")
    profit_factor = MoneyField(null=True)
    expectancy = MoneyField(null=True)
    avg_trade_duration_hours = MoneyField(null=True)
    session = session_link("dynamic_performance_metrics", required=True)
    created_at = UTCDateTimeField(server_now=True, null=True)

    request_id = request_key()

    class Meta:
        table_name = "dynamic_performance_metrics"


class RiskAdjustment(BaseModel):
    """One risk-parameter adjustment: trigger, original and adjusted value, and its effect while active."""

    timestamp = UTCDateTimeField(index=True)
    adjustment_type = pw.CharField(max_length=50, index=True)
    trigger_reason = pw.CharField(max_length=200, null=True)
    parameter_name = pw.CharField(max_length=100)
    original_value = MoneyField()
    adjusted_value = MoneyField()
    adjustment_factor = MoneyField()
    current_drawdown = MoneyField(null=True)
    performance_score = MoneyField(null=True)
    volatility_level = MoneyField(null=True)
    duration_minutes = pw.IntegerField(null=True)
    trades_during_adjustment = CountField(null=True)
    pnl_during_adjustment = MoneyField(null=True)
    session = session_link("risk_adjustments", required=True)
    created_at = UTCDateTimeField(server_now=True, null=True)

    request_id = request_key()

    class Meta:
        table_name = "risk_adjustments"
