"""Market context: trading-hours calendars, symbol-pair correlations and per-group portfolio exposure."""

from __future__ import annotations

import peewee as pw

from atb.db.fields import FlagField, JsonField, MoneyField, UTCDateTimeField, server_default
from atb.db.models.base import BaseModel


class MarketSession(BaseModel):
    """One named market trading-hours calendar (timezone, open/close time, weekdays) for time-based exits."""

    name = pw.CharField(max_length=50, null=True, unique=True)
    timezone = pw.CharField(
        max_length=50, null=True, default="UTC", constraints=[server_default("'UTC'")]
    )
    open_time = pw.TimeField(null=True)
    close_time = pw.TimeField(null=True)
    days_of_week = JsonField(null=True)
    is_24h = FlagField(null=True)

    class Meta:
        table_name = "market_sessions"


class CorrelationMatrix(BaseModel):
    """The return correlation of one symbol pair over a look-back window, with p-value and sample size."""

    # Indexed by the composite (symbol_pair, last_updated) below.
    symbol_pair = pw.CharField(max_length=50, null=True)
    correlation_value = MoneyField(null=True)
    p_value = MoneyField(null=True)
    sample_size = pw.IntegerField(null=True)
    last_updated = UTCDateTimeField(null=True)
    window_days = pw.IntegerField(null=True)

    class Meta:
        table_name = "correlation_matrix"
        indexes = ((("symbol_pair", "last_updated"), False),)


class PortfolioExposure(BaseModel):
    """Aggregated exposure and position count of one correlation group, for portfolio-level limits."""

    correlation_group = pw.CharField(max_length=100, null=True, index=True)
    total_exposure = MoneyField(null=True)
    position_count = pw.IntegerField(null=True)
    symbols = JsonField(null=True)
    last_updated = UTCDateTimeField(null=True)

    class Meta:
        table_name = "portfolio_exposures"
