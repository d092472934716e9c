"""Closed trades: log one or many (keeping the daily performance row current), read them back."""

from __future__ import annotations

import datetime as dt
import decimal
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from .. import connection, validate
from ..enums import PositionSide, TradeSource
from ..errors import ValidationError
from ..models import PerformanceMetrics, Trade
from .statements import (
    _column_writer,
    execute_template,
    insert_row,
    insert_rows,
    insert_with_statement,
    select_rows,
)

PM = PerformanceMetrics
BATCH_SIZE = 1_000
_HUNDRED = decimal.Decimal(100)
_DAY = dt.timedelta(days=1)

# Arguments of log_trade, which are also the keys log_trades accepts in each row.
TRADE_ARGUMENTS = frozenset(
    """symbol side entry_price exit_price size entry_time exit_time pnl exit_reason strategy_name
    source order_id exit_order_id stop_loss take_profit quantity commission pnl_percent
    confidence_score strategy_config exchange timeframe mfe mae mfe_price mae_price mfe_time
    mae_time position_id session_id""".split()
)


def clean_trade(args: Mapping[str, Any], session_id: int | None) -> dict[str, Any]:
    """Validate log_trade's arguments into Trade field values (nothing touches the database)."""
    side = validate.side(args.get("side"))
    entry = validate.money("entry_price", args.get("entry_price"), positive=True)
    exit_ = validate.money("exit_price", args.get("exit_price"), positive=True)
    pnl_percent = args.get("pnl_percent")
    if pnl_percent is None:
        move = exit_ - entry if side is PositionSide.LONG else entry - exit_
        pnl_percent = move / entry * _HUNDRED
    return {
        "symbol": validate.text("symbol", args.get("symbol"), 20),
        "side": side,
        "source": validate.trade_source(args.get("source") or TradeSource.LIVE),
        "entry_price": entry,
        "exit_price": exit_,
        "size": validate.money("size", args.get("size"), positive=True),
        "quantity": _optional_money(args, "quantity", positive=True),
        "entry_time": validate.timestamp("entry_time", args.get("entry_time")),
        "exit_time": validate.timestamp("exit_time", args.get("exit_time")),
        "pnl": validate.money("pnl", args.get("pnl")),
        "pnl_percent": validate.money("pnl_percent", pnl_percent),
        "commission": _optional_money(args, "commission") or decimal.Decimal(0),
        "stop_loss": _optional_money(args, "stop_loss", positive=True),
        "take_profit": _optional_money(args, "take_profit", positive=True),
        "exit_reason": validate.text("exit_reason", args.get("exit_reason"), 100, optional=True),
        "strategy_name": validate.text("strategy_name", args.get("strategy_name"), 100),
        "strategy_config": validate.json_payload("strategy_config", args.get("strategy_config")),
        "confidence_score": _optional_money(args, "confidence_score"),
        "order_id": validate.text(
            "order_id", args.get("order_id") or args.get("exit_order_id"), 100, optional=True
        ),
        "exchange": validate.text("exchange", args.get("exchange"), 50, optional=True) or "binance",
        "timeframe": validate.text("timeframe", args.get("timeframe"), 10, optional=True),
        "mfe": _optional_money(args, "mfe") or decimal.Decimal(0),
        "mae": _optional_money(args, "mae") or decimal.Decimal(0),
        "mfe_price": _optional_money(args, "mfe_price", positive=True),
        "mae_price": _optional_money(args, "mae_price", positive=True),
        "mfe_time": validate.timestamp("mfe_time", args.get("mfe_time"), optional=True),
        "mae_time": validate.timestamp("mae_time", args.get("mae_time"), optional=True),
        "position": validate.integer(
            "position_id", args.get("position_id"), optional=True, minimum=1
        ),
        "session": session_id,
    }


def _optional_money(args: Mapping[str, Any], name: str, **rules: bool) -> decimal.Decimal | None:
    return validate.money(name, args.get(name), optional=True, **rules)


def daily_rows(trades: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate trades into one daily performance row per (UTC day, session).

    Trades without a session are left out: the unique key (period, period_start, session_id)
    treats NULL session ids as distinct, so an upsert could not find their row and would add a
    new one per trade. Session-less figures come from aggregating `trades` directly.
    """
    groups: dict[tuple[dt.datetime, int], list[decimal.Decimal]] = defaultdict(list)
    for trade in trades:
        if trade["session"] is not None:
            day = trade["exit_time"].replace(hour=0, minute=0, second=0, microsecond=0)
            groups[(day, trade["session"])].append(trade["pnl"])
    now = dt.datetime.now(dt.UTC)
    rows = []
    for (day, session_id), pnls in groups.items():
        wins = sum(1 for pnl in pnls if pnl > 0)
        rows.append({
            "period": "daily", "period_start": day, "period_end": day + _DAY, "session": session_id,
            "total_trades": len(pnls), "winning_trades": wins,
            "losing_trades": sum(1 for pnl in pnls if pnl < 0),
            "win_rate": validate.money("win_rate", _HUNDRED * wins / len(pnls)),
            "total_return": sum(pnls), "best_trade_pnl": max(pnls), "worst_trade_pnl": min(pnls),
            "updated_at": now,
        })  # fmt: skip
    return rows


# Adds pre-aggregated (day, session) rows to the stored counters; win_rate is recomputed from the
# counters. `100.0` keeps PostgreSQL's division in exact numeric; ROUND(…, 8) gives SQLite's float
# the column's scale. CASE is a portable GREATEST/LEAST that also prefers the new value over NULL;
# COALESCE guards rows another writer created with NULL counters.
_DAILY_COLUMNS = (
    "period", "period_start", "period_end", "session", "total_trades", "winning_trades",
    "losing_trades", "win_rate", "total_return", "best_trade_pnl", "worst_trade_pnl", "updated_at",
)  # fmt: skip
_DAILY_UPSERT = """
INSERT INTO performance_metrics (period, period_start, period_end, session_id, total_trades,
    winning_trades, losing_trades, win_rate, total_return, best_trade_pnl, worst_trade_pnl,
    updated_at)
VALUES {rows}
ON CONFLICT (period, period_start, session_id) DO UPDATE SET
    total_trades = COALESCE(performance_metrics.total_trades, 0) + excluded.total_trades,
    winning_trades = COALESCE(performance_metrics.winning_trades, 0) + excluded.winning_trades,
    losing_trades = COALESCE(performance_metrics.losing_trades, 0) + excluded.losing_trades,
    win_rate = ROUND(
        100.0 * (COALESCE(performance_metrics.winning_trades, 0) + excluded.winning_trades)
        / (COALESCE(performance_metrics.total_trades, 0) + excluded.total_trades), 8),
    total_return = COALESCE(performance_metrics.total_return, 0) + excluded.total_return,
    best_trade_pnl = CASE WHEN performance_metrics.best_trade_pnl >= excluded.best_trade_pnl
        THEN performance_metrics.best_trade_pnl ELSE excluded.best_trade_pnl END,
    worst_trade_pnl = CASE WHEN performance_metrics.worst_trade_pnl <= excluded.worst_trade_pnl
        THEN performance_metrics.worst_trade_pnl ELSE excluded.worst_trade_pnl END,
    updated_at = excluded.updated_at
"""
_DAILY_ROW = "(" + ", ".join(["{p}"] * len(_DAILY_COLUMNS)) + ")"


def daily_upsert_sql(rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """The upsert adding aggregated rows to their daily counters (`{p}` placeholders), and params."""
    convert = _daily_writers(connection.is_postgres())
    params = [to_db(row[name]) for row in rows for name, to_db in convert]
    return _daily_upsert_text(len(rows)), params


@lru_cache(maxsize=16)
def _daily_upsert_text(count: int) -> str:
    return _DAILY_UPSERT.format(rows=", ".join([_DAILY_ROW] * count))


@lru_cache(maxsize=2)
def _daily_writers(postgres: bool) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    # The columns' db_value, skipping MoneyField's second rounding of already exact Decimals.
    return tuple((name, _column_writer(PM, name, postgres)) for name in _DAILY_COLUMNS)


class TradesMixin:
    """log_trade / log_trades / trade reads for DatabaseManager."""

    def log_trade(
        self,
        symbol: str,
        side: Any,
        entry_price: Any,
        exit_price: Any,
        size: Any,
        entry_time: Any,
        exit_time: Any,
        pnl: Any,
        exit_reason: str | None,
        strategy_name: str,
        source: Any = TradeSource.LIVE,
        order_id: str | None = None,
        exit_order_id: str | None = None,
        stop_loss: Any = None,
        take_profit: Any = None,
        quantity: Any = None,
        commission: Any = None,
        pnl_percent: Any = None,
        confidence_score: Any = None,
        strategy_config: Any = None,
        exchange: str | None = None,
        timeframe: str | None = None,
        mfe: Any = None,
        mae: Any = None,
        mfe_price: Any = None,
        mae_price: Any = None,
        mfe_time: Any = None,
        mae_time: Any = None,
        position_id: int | None = None,
        session_id: int | None = None,
    ) -> int:
        """Insert one closed trade and fold it into its daily performance row, atomically.

        `pnl_percent` is derived from the prices when not given. A duplicate `order_id` in the
        same session raises DuplicateError and writes nothing. Trades without a session do not
        update a daily row (see `daily_rows`).
        """
        args = locals()  # every parameter by name: the keys log_trades rows use (TRADE_ARGUMENTS)
        row = clean_trade(args, self._session(session_id))
        daily = daily_rows([row])
        if not daily:
            return self._one(lambda: insert_row(Trade, row))
        return insert_with_statement(Trade, row, *daily_upsert_sql(daily))

    def log_trades(self, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """Insert many trades in one transaction; every row is validated before anything is written.

        A bad row raises ValidationError naming `rows[i].field`. Rows are inserted in batches of
        1,000 and the daily performance rows get one aggregated upsert per (day, session).
        """
        cleaned = [self._clean_trade_row(index, row) for index, row in enumerate(rows)]
        if not cleaned:
            return []
        daily = daily_rows(cleaned)

        def work() -> list[int]:
            ids: list[int] = []
            for start in range(0, len(cleaned), BATCH_SIZE):
                batch = cleaned[start : start + BATCH_SIZE]
                ids.extend(insert_rows(Trade, batch))
            for start in range(0, len(daily), BATCH_SIZE):
                execute_template(*daily_upsert_sql(daily[start : start + BATCH_SIZE]))
            return ids

        return self._write(work)

    def _clean_trade_row(self, index: int, row: Any) -> dict[str, Any]:
        if not isinstance(row, Mapping):
            raise ValidationError(f"rows[{index}]", f"{type(row).__name__} is not a mapping")
        unknown = sorted(str(key) for key in row if key not in TRADE_ARGUMENTS)
        if unknown:
            raise ValidationError(
                f"rows[{index}]",
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TRADE_ARGUMENTS))}",
            )
        try:
            return clean_trade(row, self._session(row.get("session_id")))
        except ValidationError as exc:
            reason = str(exc).removeprefix(f"{exc.field}: ")
            raise ValidationError(f"rows[{index}].{exc.field}", reason) from None

    def get_recent_trades(self, limit: int = 50, session_id: int | None = None) -> list[dict]:
        """The newest trades first (by exit time), of the given or current session, else all."""
        count = validate.integer("limit", limit, minimum=0, maximum=100_000)
        where, params = self._session_filter(session_id)
        order = "exit_time DESC, id DESC"
        return self._dashboard_read(
            lambda: select_rows(Trade, where, params, order_by=order, limit=count)
        )

    def get_trades_by_symbol_and_date(
        self, symbol: str, start: Any, session_id: int | None = None
    ) -> list[dict]:
        """Trades of `symbol` entered at or after `start` (of the given or current session)."""
        name = validate.text("symbol", symbol, 20)
        since = Trade.entry_time.db_value(validate.timestamp("start", start))
        where, params = self._session_filter(session_id)
        where = " AND ".join(filter(None, ("symbol = {p} AND entry_time >= {p}", where)))
        order = "entry_time, id"
        return self._dashboard_read(
            lambda: select_rows(Trade, where, (name, since, *params), order_by=order)
        )

    def _session_filter(self, session_id: int | None) -> tuple[str, tuple[int, ...]]:
        target = self._session(session_id)
        return ("", ()) if target is None else ("session_id = {p}", (target,))
