"""Performance figures computed in SQL, and the adaptive risk manager's own logs.

`get_performance_metrics` never loads trades into Python: it is one statement, an aggregate over
`trades` (served by the (session_id, exit_time) index when a session is given) with the drawdown
as a scalar subquery, a window function over the same session's and window's `account_history`
rows (served by the (session_id, timestamp) index). It is a peewee query compiled once per shape
(backend, which filters): building it on every call would cost about as much as running it over
a session's thousand trades. Definitions:

- win_rate: winning / total trades × 100 (a trade wins when pnl > 0, loses when pnl < 0).
- avg_win / avg_loss: mean pnl of winning / losing trades (avg_loss ≤ 0).
- profit_factor: gross profit / gross loss, capped at 999999.99; the cap when there are wins but
  no losses, 0 without wins (the earlier layer's convention, kept so dashboards agree).
- sharpe_ratio: mean(pnl_percent) / population stddev(pnl_percent) per trade, not annualised;
  0 with fewer than two trades or no dispersion. The variance is AVG(x²) − AVG(x)² in SQL
  (SQLite has no STDDEV); the square root is taken in Python.
- max_drawdown: percent, max over the snapshots of (running peak balance − balance) / peak,
  the peak running from the first snapshot in the window.
- avg_trade_duration_hours: mean of exit_time − entry_time.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

import peewee as pw

from .. import connection, validate
from ..errors import DatabaseError, ValidationError
from ..fields import utc_now
from ..models import AccountHistory, DynamicPerformanceMetrics, RiskAdjustment, Trade
from . import rollups
from .base import ManagerBase, request_id_of
from .statements import Slot, Statement, both, insert_row, literal, shape

_log = logging.getLogger(__name__)
PERIODS = ("all-time", "daily", "weekly", "monthly")
_PERIOD_LENGTH = {
    "daily": dt.timedelta(days=1),
    "weekly": dt.timedelta(days=7),
    "monthly": dt.timedelta(days=30),
}
PROFIT_FACTOR_CAP = 999999.99
_NON_NEGATIVE = {"non_negative": True}
_REQUIRED_COUNT = {"minimum": 0, "optional": False}
_DYNAMIC_RULES: dict[str, dict[str, Any]] = {
    **{
        name: _NON_NEGATIVE
        for name in ("rolling_win_rate", "current_drawdown", "volatility_30d", "profit_factor",
                     "avg_trade_duration_hours")
    },
    "consecutive_losses": _REQUIRED_COUNT,
    "consecutive_wins": _REQUIRED_COUNT,
    "risk_adjustment_factor": {"non_negative": True, "optional": False},
}  # fmt: skip
_RISK_RULES: dict[str, dict[str, Any]] = {
    **{
        name: _NON_NEGATIVE
        for name in ("adjustment_factor", "current_drawdown", "volatility_level")
    },
    "duration_minutes": {"minimum": 0},
    "trades_during_adjustment": _REQUIRED_COUNT,
}

METRIC_KEYS = (
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
)


# FILTER (PostgreSQL; SQLite 3.30+) costs about half as much per row as SUM(CASE ...). The ROWS
# frame gives the same running peak as the default RANGE frame, (timestamp, id) being unique,
# without comparing every row with its peers. Constants stay literals (see `statements.literal`).
_ZERO = literal("0")
_WINS, _LOSSES = Trade.pnl > _ZERO, Trade.pnl < _ZERO
_COUNT = pw.fn.COUNT(pw.SQL("*"))
_TRADE_AGGREGATES = (
    _COUNT.alias("total_trades"),
    _COUNT.filter(_WINS).alias("winning_trades"),
    _COUNT.filter(_LOSSES).alias("losing_trades"),
    pw.fn.SUM(Trade.pnl).alias("total_pnl"),
    pw.fn.SUM(Trade.pnl).filter(_WINS).alias("gross_profit"),
    pw.fn.SUM(Trade.pnl).filter(_LOSSES).alias("gross_loss"),
    pw.fn.AVG(Trade.pnl).filter(_WINS).alias("avg_win"),
    pw.fn.AVG(Trade.pnl).filter(_LOSSES).alias("avg_loss"),
    pw.fn.MAX(Trade.pnl).alias("best_trade"),
    pw.fn.MIN(Trade.pnl).alias("worst_trade"),
    pw.fn.AVG(Trade.pnl_percent).alias("mean_pct"),
    pw.fn.AVG(Trade.pnl_percent * Trade.pnl_percent).alias("mean_pct_squared"),
)
_HOURS = {
    True: pw.fn.EXTRACT(pw.NodeList((pw.SQL("EPOCH FROM"), Trade.exit_time - Trade.entry_time)))
    / literal("3600"),
    False: (pw.fn.julianday(Trade.exit_time) - pw.fn.julianday(Trade.entry_time)) * literal("24"),
}
_AGGREGATE_NAMES = (
    "total_trades", "winning_trades", "losing_trades", "total_pnl", "gross_profit", "gross_loss",
    "avg_win", "avg_loss", "best_trade", "worst_trade", "mean_pct", "mean_pct_squared",
    "avg_hours", "max_drawdown",
)  # fmt: skip


def running_peak() -> pw.ColumnBase:
    """The highest account balance so far, snapshot by snapshot in (timestamp, id) order: a
    window over account_history (sessions' and metrics' max drawdown)."""
    AH = AccountHistory
    return pw.fn.MAX(AH.balance).over(
        order_by=[AH.timestamp, AH.id], frame_type=pw.Window.ROWS, start=pw.Window.preceding()
    )


def _window(
    model: type[pw.Model], time_column: pw.Field, session: bool, start: bool, end: bool
) -> pw.Node | None:
    return both(
        model._meta.fields["session"] == Slot("session") if session else None,
        time_column >= Slot("start", time_column) if start else None,
        time_column <= Slot("end", time_column) if end else None,
    )


def _metrics_query(
    postgres: bool, session: bool, start: bool, end: bool, drawdown: bool = True
) -> pw.Node:
    """The statement for one shape: the trades' aggregates and, as a scalar subquery, the max
    drawdown over the same window's account snapshots."""
    columns: list[pw.Node] = [*_TRADE_AGGREGATES, pw.fn.AVG(_HOURS[postgres]).alias("avg_hours")]
    if drawdown:
        AH = AccountHistory
        history = AH.select(AH.balance, running_peak().alias("peak"))
        where = _window(AH, AH.timestamp, session, start, end)
        running = (history.where(where) if where is not None else history).alias("running")
        fall = (running.c.peak - running.c.balance) * literal("100.0") / running.c.peak
        worst = pw.Select([running], [pw.fn.MAX(fall)]).where(running.c.peak > _ZERO)
        columns.append(worst.alias("max_drawdown"))
    query = Trade.select(*columns)
    where = _window(Trade, Trade.exit_time, session, start, end)
    return query.where(where) if where is not None else query


def _metrics_statement(
    postgres: bool, session: bool, start: bool, end: bool, drawdown: bool = True
) -> Statement:
    return shape(
        ("metrics", postgres, session, start, end, drawdown),
        lambda: Statement(lambda: _metrics_query(postgres, session, start, end, drawdown)),
    )


def _number(value: Any) -> float:
    return 0.0 if value is None else float(value)


# How each row this module writes is validated: the model's columns plus these rules.
_DYNAMIC_ROW = validate.Cleaner(DynamicPerformanceMetrics, _DYNAMIC_RULES)
_RISK_ROW = validate.Cleaner(RiskAdjustment, _RISK_RULES)


class MetricsMixin(ManagerBase):
    """get_performance_metrics, log_dynamic_performance_metrics, log_risk_adjustment."""

    def get_performance_metrics(
        self,
        period: str = "all-time",
        start_date: dt.datetime | None = None,
        end_date: dt.datetime | None = None,
        session_id: int | None = None,
    ) -> dict[str, Any]:
        """Trade statistics over a period (see the module docstring); always the same keys.

        `period` restricts to the last day/week/month (30 days) unless `start_date`/`end_date`
        are given. The session is the explicit one, else the current one, else all trades.
        """
        period = validate.choice("period", period, PERIODS)
        start = validate.timestamp("start_date", start_date, optional=True)
        end = validate.timestamp("end_date", end_date, optional=True)
        if start is not None and end is not None and start > end:
            raise ValidationError("start_date", f"{start.isoformat()} is after end_date")
        if start is None and end is None and period in _PERIOD_LENGTH:
            start = utc_now() - _PERIOD_LENGTH[period]
        sid = self._session(session_id)
        if start is None and end is None and connection.is_postgres():
            return self._all_time_metrics(sid)
        params = {"session": sid, "start": start, "end": end}

        def read() -> Any:
            query = _metrics_statement(
                connection.is_postgres(), sid is not None, start is not None, end is not None
            )
            return query.execute(params).fetchone()

        row = self._dashboard_read(read)
        figures = dict(zip(_AGGREGATE_NAMES, row, strict=True))
        return _metrics_from_aggregates(figures, figures["max_drawdown"])

    def _all_time_metrics(self, sid: int | None) -> dict[str, Any]:
        """All-time figures from the per-day rollups plus a live aggregate of what they do not
        cover (see `rollups`); then, when days are due, one chunk of them is rolled up for the
        next reads (a bounded pause, even on a large database never rolled up; the figures are
        exact either way). A failed refresh costs speed only: it is logged, the figures stand."""
        row, due = self._dashboard_read(lambda: rollups.read_metrics(sid))
        if due and not connection.bound_database().in_transaction():
            try:
                rollups.refresh(transactions=1)
            except DatabaseError as exc:
                _log.warning("metric rollups not refreshed (the next read retries): %s", exc)
        figures = dict(zip(_AGGREGATE_NAMES, row, strict=True))
        return _metrics_from_aggregates(figures, figures["max_drawdown"])

    def refresh_metric_rollups(self) -> int:
        """Roll up every completed UTC day not rolled up yet, and every day a later write
        changed; returns the number of days rolled up (0 on SQLite, which has none).

        `get_performance_metrics` rolls up a chunk of days itself when it finds some due, so
        calling this is never required for correct figures: call it after a bulk import, after
        an upgrade on a large database, or from a nightly job, so that reads stay fast and no
        dashboard read pays for it. It also writes each session's `performance_metrics` daily
        row."""
        return rollups.refresh()

    @staticmethod
    def _trade_aggregate_query(
        start: dt.datetime | None, end: dt.datetime | None, sid: int | None
    ) -> pw.RawQuery:
        """The trades part of get_performance_metrics' statement, as a query (for EXPLAIN)."""
        db = connection.bound_database()
        query = _metrics_statement(
            connection.is_postgres(db), sid is not None, start is not None, end is not None, False
        ).compiled(db)
        params = query.params({"session": sid, "start": start, "end": end})
        return pw.RawQuery(query.sql, params, _database=db)

    def log_dynamic_performance_metrics(
        self,
        session_id: int | None = None,
        rolling_win_rate: Any = None,
        rolling_sharpe_ratio: Any = None,
        current_drawdown: Any = None,
        volatility_30d: Any = None,
        consecutive_losses: Any = 0,
        consecutive_wins: Any = 0,
        risk_adjustment_factor: Any = 1.0,
        profit_factor: Any = None,
        expectancy: Any = None,
        avg_trade_duration_hours: Any = None,
        *,
        timestamp: dt.datetime | None = None,
        request_id: str | None = None,
    ) -> int:
        """Record a rolling-performance snapshot of a session (explicit or current; required).

        Exactly once per `request_id`: a repeat returns the first call's id, writing nothing."""
        row = _DYNAMIC_ROW(
            timestamp=utc_now() if timestamp is None else timestamp,
            rolling_win_rate=rolling_win_rate,
            rolling_sharpe_ratio=rolling_sharpe_ratio,
            current_drawdown=current_drawdown,
            volatility_30d=volatility_30d,
            consecutive_losses=consecutive_losses,
            consecutive_wins=consecutive_wins,
            risk_adjustment_factor=risk_adjustment_factor,
            profit_factor=profit_factor,
            expectancy=expectancy,
            avg_trade_duration_hours=avg_trade_duration_hours,
        )
        row["session"] = self._required_session(session_id)
        row["request_id"] = request_id_of(request_id)
        return self._run_statement(lambda: insert_row(DynamicPerformanceMetrics, row))

    def log_risk_adjustment(
        self,
        session_id: int | None,
        adjustment_type: str,
        trigger_reason: str | None,
        parameter_name: str,
        original_value: Any,
        adjusted_value: Any,
        adjustment_factor: Any,
        current_drawdown: Any = None,
        performance_score: Any = None,
        volatility_level: Any = None,
        duration_minutes: Any = None,
        trades_during_adjustment: Any = 0,
        pnl_during_adjustment: Any = None,
        *,
        timestamp: dt.datetime | None = None,
        request_id: str | None = None,
    ) -> int:
        """Record one risk-parameter adjustment of a session (explicit or current; required).

        Exactly once per `request_id`: a repeat returns the first call's id, writing nothing."""
        row = _RISK_ROW(
            timestamp=utc_now() if timestamp is None else timestamp,
            adjustment_type=adjustment_type,
            trigger_reason=trigger_reason,
            parameter_name=parameter_name,
            original_value=original_value,
            adjusted_value=adjusted_value,
            adjustment_factor=adjustment_factor,
            current_drawdown=current_drawdown,
            performance_score=performance_score,
            volatility_level=volatility_level,
            duration_minutes=duration_minutes,
            trades_during_adjustment=trades_during_adjustment,
            pnl_during_adjustment=pnl_during_adjustment,
        )
        row["session"] = self._required_session(session_id)
        row["request_id"] = request_id_of(request_id)
        return self._run_statement(lambda: insert_row(RiskAdjustment, row))

    def _required_session(self, session_id: int | None) -> int:
        sid = self._session(session_id)
        if sid is None:
            raise ValidationError(
                "session_id", "is required: pass one or create a trading session first"
            )
        return sid


def _metrics_from_aggregates(row: dict[str, Any], max_drawdown: Any) -> dict[str, Any]:
    total = int(row["total_trades"] or 0)
    winning = int(row["winning_trades"] or 0)
    gross_profit = _number(row["gross_profit"])
    gross_loss = -_number(row["gross_loss"])  # summed as negative pnl
    if gross_loss > 0:
        profit_factor = min(gross_profit / gross_loss, PROFIT_FACTOR_CAP)
    else:
        profit_factor = PROFIT_FACTOR_CAP if gross_profit > 0 else 0.0
    sharpe = 0.0
    if total > 1:
        mean = _number(row["mean_pct"])
        variance = _number(row["mean_pct_squared"]) - mean * mean
        # Float rounding can leave a tiny negative or non-zero variance for identical values.
        if variance > 1e-12 * max(1.0, mean * mean):
            sharpe = mean / math.sqrt(variance)
    metrics = {
        "total_trades": total,
        "winning_trades": winning,
        "losing_trades": int(row["losing_trades"] or 0),
        "win_rate": winning / total * 100 if total else 0.0,
        "total_pnl": _number(row["total_pnl"]),
        "avg_win": _number(row["avg_win"]),
        "avg_loss": _number(row["avg_loss"]),
        "profit_factor": float(profit_factor),
        "best_trade": _number(row["best_trade"]),
        "worst_trade": _number(row["worst_trade"]),
        "sharpe_ratio": sharpe,
        "max_drawdown": _number(max_drawdown),
        "avg_trade_duration_hours": _number(row["avg_hours"]),
    }
    return metrics
