"""Per-day rollups of trades and account snapshots: what makes all-time metrics O(days).

Written off the write path (`atb/db/manage/rollups.py`), read by `get_performance_metrics`.
One row per (UTC day, session) and one per day for everything (`session_key` -1, also the
marker of how far days are rolled up). A row holds sums, not averages, so any set of days
combines exactly; `stale` marks a day a later write changed (PostgreSQL triggers set it).
"""

from __future__ import annotations

import peewee as pw

from atb.db.fields import ExactSumField, FlagField, UTCDateTimeField
from atb.db.models.base import BaseModel

ALL_SESSIONS = -1  # session_key of the rows covering every trade and snapshot of their day
# The triggers (migration 005) without which a rollup could hide a later write: `atb db verify`
# reports any that is missing or disabled.
ROLLUP_TRIGGERS = tuple(
    f"{table}_rollups_{event}"
    for table in ("trades", "account_history")
    for event in ("insert", "update", "delete", "truncate")
)


class MetricRollup(BaseModel):
    """One UTC day of one session (or of all, `session_key` -1): trade sums and the drawdown
    figures (peak, trough, max drawdown within the day) that combine across days."""

    day = UTCDateTimeField()
    session_key = pw.IntegerField()
    stale = FlagField()
    total_trades = pw.BigIntegerField(null=True)
    winning_trades = pw.BigIntegerField(null=True)
    losing_trades = pw.BigIntegerField(null=True)
    total_pnl = ExactSumField(null=True)
    gross_profit = ExactSumField(null=True)
    gross_loss = ExactSumField(null=True)
    best_trade = ExactSumField(null=True)
    worst_trade = ExactSumField(null=True)
    pct_count = pw.BigIntegerField(null=True)
    sum_pct = ExactSumField(null=True)
    sum_pct_squared = ExactSumField(null=True)
    hours_count = pw.BigIntegerField(null=True)
    sum_hours = ExactSumField(null=True)
    peak = ExactSumField(null=True)
    trough = ExactSumField(null=True)
    max_drawdown = ExactSumField(null=True)

    class Meta:
        table_name = "metric_rollups"
        indexes = ((("session_key", "day"), True),)
