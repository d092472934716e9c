"""Closed trades: log one or many (keeping the daily performance row current), read them back."""

from __future__ import annotations

import datetime as dt
import decimal
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import peewee as pw

from .. import validate
from ..enums import PositionSide, TradeSource
from ..errors import ValidationError
from ..models import PerformanceMetrics, Trade
from .base import ManagerBase, request_id_of
from .statements import (
    BATCH_REQUEST_ID_LENGTH,
    Rows,
    Slot,
    Statement,
    both,
    insert_query,
    insert_row,
    insert_rows,
    insert_with_upsert,
    literal,
    session_scoped,
    shape,
    stored_batch,
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


_TRADE_RULES = {
    **{name: {"positive": True} for name in ("entry_price", "exit_price", "size", "quantity",
                                             "stop_loss", "take_profit", "mfe_price",
                                             "mae_price")},
    **{name: {"optional": True} for name in ("commission", "mfe", "mae", "exchange")},
}  # fmt: skip
# Arguments stored under their own names (source, pnl_percent, order_id and defaults follow).
_TRADE_COLUMNS = (
    "symbol", "side", "entry_price", "exit_price", "size", "quantity", "entry_time", "exit_time",
    "pnl", "commission", "stop_loss", "take_profit", "exit_reason", "strategy_name",
    "strategy_config", "confidence_score", "exchange", "timeframe", "mfe", "mae", "mfe_price",
    "mae_price", "mfe_time", "mae_time",
)  # fmt: skip
_ZERO_MONEY = decimal.Decimal(0)


def clean_trade(args: Mapping[str, Any], session_id: int | None) -> dict[str, Any]:
    """Validate log_trade's arguments into Trade field values (nothing touches the database)."""
    given = {name: args.get(name) for name in _TRADE_COLUMNS}
    row = validate.clean(
        Trade, _TRADE_RULES, **given, source=args.get("source") or TradeSource.LIVE
    )
    entry, exit_ = row["entry_price"], row["exit_price"]
    pnl_percent = args.get("pnl_percent")
    if pnl_percent is None:
        move = exit_ - entry if row["side"] is PositionSide.LONG else entry - exit_
        pnl_percent = move / entry * _HUNDRED
    order_id = args.get("order_id") or args.get("exit_order_id")
    row.update(
        pnl_percent=validate.column(Trade.pnl_percent, pnl_percent),
        commission=row["commission"] or _ZERO_MONEY,
        exchange=row["exchange"] or "binance",
        mfe=row["mfe"] or _ZERO_MONEY,
        mae=row["mae"] or _ZERO_MONEY,
        order_id=validate.column(Trade.order_id, order_id),
        position=validate.column(Trade.position, args.get("position_id")),
        session=session_id,
    )
    return row


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
_NEW = pw.EXCLUDED
_ZERO = literal("0")


def _added(column: pw.Field) -> pw.Node:
    return pw.fn.COALESCE(column, _ZERO) + getattr(_NEW, column.column_name)


_DAILY_UPDATE = {
    PM.total_trades: _added(PM.total_trades),
    PM.winning_trades: _added(PM.winning_trades),
    PM.losing_trades: _added(PM.losing_trades),
    PM.win_rate: pw.fn.ROUND(
        literal("100.0") * _added(PM.winning_trades) / _added(PM.total_trades), literal("8")
    ),
    PM.total_return: _added(PM.total_return),
    PM.best_trade_pnl: pw.Case(
        None, [(PM.best_trade_pnl >= _NEW.best_trade_pnl, PM.best_trade_pnl)], _NEW.best_trade_pnl
    ),
    PM.worst_trade_pnl: pw.Case(
        None,
        [(PM.worst_trade_pnl <= _NEW.worst_trade_pnl, PM.worst_trade_pnl)],
        _NEW.worst_trade_pnl,
    ),
    PM.updated_at: _NEW.updated_at,
}


def daily_upsert(rows: int, first_slot: int = 0, after: pw.CTE | None = None) -> pw.Node:
    """The upsert adding `rows` aggregated rows (slots from `first_slot`) to their daily counters;
    with `after`, only when that CTE inserted its trade (see `insert_query`)."""
    query = insert_query(PM, _DAILY_COLUMNS, rows, first_slot=first_slot, after=after)
    return query.on_conflict(
        conflict_target=[PM.period, PM.period_start, PM.session], update=_DAILY_UPDATE
    )


def daily_values(rows: list[dict[str, Any]]) -> list[Any]:
    """The upsert's slot values for aggregated rows."""
    return [row[name] for row in rows for name in _DAILY_COLUMNS]


def _trades_query(where: pw.Node | None, order: tuple[pw.Node, ...], limit: bool = False) -> Rows:
    def tail(query: pw.ModelSelect) -> pw.ModelSelect:
        query = query.where(where) if where is not None else query
        query = query.order_by(*order)
        return query.limit(Slot("limit")) if limit else query

    return Rows(Trade, tail)


_NEWEST_FIRST = (Trade.exit_time.desc(), Trade.id.desc())
_RECENT = session_scoped(lambda session: _trades_query(session, _NEWEST_FIRST, limit=True), Trade)
_SINCE = (Trade.symbol == Slot("symbol")) & (Trade.entry_time >= Slot("start", Trade.entry_time))
_BY_SYMBOL = session_scoped(
    lambda session: _trades_query(both(_SINCE, session), (Trade.entry_time, Trade.id)), Trade
)


class TradesMixin(ManagerBase):
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
        *,
        request_id: str | None = None,
    ) -> int:
        """Insert one closed trade and fold it into its daily performance row, atomically.

        `pnl_percent` is derived from the prices when not given. A duplicate `order_id` in the
        same session raises DuplicateError and writes nothing. Trades without a session do not
        update a daily row (see `daily_rows`). Exactly once per `request_id`: a repeat returns
        the first call's id and counts nothing twice (retried by the manager itself).
        """
        args = locals()  # every parameter by name: the keys log_trades rows use (TRADE_ARGUMENTS)
        row = clean_trade(args, self._session(session_id))
        row["request_id"] = request_id_of(request_id)
        daily = daily_rows([row])
        if not daily:
            return self._run_statement(lambda: insert_row(Trade, row))
        return insert_with_upsert(Trade, row, _daily_after_trade, daily_values(daily), key="daily")

    def log_trades(
        self, rows: Iterable[Mapping[str, Any]], *, request_id: str | None = None
    ) -> list[int]:
        """Insert many trades in one transaction; every row is validated before anything is written.

        A bad row raises ValidationError naming `rows[i].field`. Rows are inserted in batches of
        1,000 and the daily performance rows get one aggregated upsert per (day, session).
        Exactly once per `request_id` (at most 88 characters: row i stores it as `<id>#<i>`): a
        repeat returns the first call's ids and writes nothing (retried by the manager itself).
        """
        batch_id = request_id_of(request_id, max_length=BATCH_REQUEST_ID_LENGTH)
        cleaned = [self._clean_trade_row(index, row) for index, row in enumerate(rows)]
        if not cleaned:
            return []
        for index, row in enumerate(cleaned):
            row["request_id"] = f"{batch_id}#{index}"
        daily = daily_rows(cleaned)

        def work() -> list[int]:
            stored = stored_batch(Trade, cleaned)
            if stored is not None:
                return stored
            ids: list[int] = []
            for start in range(0, len(cleaned), BATCH_SIZE):
                batch = cleaned[start : start + BATCH_SIZE]
                ids.extend(insert_rows(Trade, batch))
            for start in range(0, len(daily), BATCH_SIZE):
                batch = daily[start : start + BATCH_SIZE]
                count = len(batch)
                upsert = shape(("daily", count), partial(_daily_statement, count))
                upsert.execute(daily_values(batch))
            return ids

        return self._run_transaction(work)

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
        params: dict[str, Any] = {**self._session_filter(session_id), "limit": count}
        return self._dashboard_read(lambda: _RECENT["session" in params].fetch(params))

    def get_trades_by_symbol_and_date(
        self, symbol: str, start: Any, session_id: int | None = None
    ) -> list[dict]:
        """Trades of `symbol` entered at or after `start` (of the given or current session)."""
        name = validate.column(Trade.symbol, symbol)
        since = validate.timestamp("start", start)
        params = {**self._session_filter(session_id), "symbol": name, "start": since}
        return self._dashboard_read(lambda: _BY_SYMBOL["session" in params].fetch(params))


def _daily_statement(rows: int) -> Statement:
    return Statement(lambda: daily_upsert(rows))


def _daily_after_trade(first_slot: int, after: pw.CTE | None) -> pw.Node:
    """log_trade's daily upsert: one row, run only when the trade was new (see insert_query)."""
    return daily_upsert(1, first_slot, after)
