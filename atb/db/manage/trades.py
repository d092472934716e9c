"""Closed trades: log one or many, read them back.

A trade insert touches no shared row: the per-day figures dashboards need are rolled up off the
write path (see `rollups`), so writers of the same session and day never wait for each other."""

from __future__ import annotations

import decimal
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import peewee as pw

from .. import connection, validate
from ..enums import PositionSide, TradeSource
from ..errors import ValidationError
from ..models import Trade
from . import bulk
from .base import ManagerBase, request_id_of
from .statements import (
    BATCH_REQUEST_ID_LENGTH,
    Rows,
    Slot,
    both,
    insert_row,
    session_scoped,
    stored_batch,
)

_HUNDRED = decimal.Decimal(100)

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


_clean_trade_columns = validate.Cleaner(Trade, _TRADE_RULES)
_check_pnl_percent = validate.column_check(Trade.pnl_percent)
_check_order_id = validate.column_check(Trade.order_id)
_check_position = validate.column_check(Trade.position)


def clean_trade(args: Mapping[str, Any], session_id: int | None) -> dict[str, Any]:
    """Validate log_trade's arguments into Trade field values (nothing touches the database)."""
    given = {name: args.get(name) for name in _TRADE_COLUMNS}
    given["source"] = args.get("source") or TradeSource.LIVE
    row = _clean_trade_columns.clean(given)
    entry, exit_ = row["entry_price"], row["exit_price"]
    pnl_percent = args.get("pnl_percent")
    if pnl_percent is None:
        move = exit_ - entry if row["side"] is PositionSide.LONG else entry - exit_
        pnl_percent = move / entry * _HUNDRED
    order_id = args.get("order_id") or args.get("exit_order_id")
    row.update(
        pnl_percent=_check_pnl_percent(pnl_percent),
        commission=row["commission"] or _ZERO_MONEY,
        exchange=row["exchange"] or "binance",
        mfe=row["mfe"] or _ZERO_MONEY,
        mae=row["mae"] or _ZERO_MONEY,
        order_id=_check_order_id(order_id),
        position=_check_position(args.get("position_id")),
        session=session_id,
    )
    return row


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
        """Insert one closed trade: one statement, no shared row touched.

        `pnl_percent` is derived from the prices when not given. A duplicate `order_id` in the
        same session raises DuplicateError and writes nothing. Exactly once per `request_id`: a
        repeat returns the first call's id and writes nothing (retried by the manager itself).
        """
        args = locals()  # every parameter by name: the keys log_trades rows use (TRADE_ARGUMENTS)
        row = clean_trade(args, self._session(session_id))
        row["request_id"] = request_id_of(request_id)
        return self._run_statement(lambda: insert_row(Trade, row))

    def log_trades(
        self, rows: Iterable[Mapping[str, Any]], *, request_id: str | None = None
    ) -> list[int]:
        """Insert many trades in one transaction (all or none); the new ids in input order.

        `rows` may be any iterable, a generator included: it is read, validated and sent in
        chunks of 5,000 (COPY on PostgreSQL), so memory stays bounded and no single statement
        grows with it. A bad row raises ValidationError naming `rows[i].field`; nothing is
        written. Exactly once per `request_id` (at most 88 characters: row i stores it as
        `<id>#<i>`): a repeat returns the first call's ids and writes nothing. A list or tuple
        is retried by the manager itself after a lost connection; an iterator cannot be read
        twice, so then DatabaseUnavailable reaches the caller, who may call again with the same
        rows and request_id.
        """
        batch_id = request_id_of(request_id, max_length=BATCH_REQUEST_ID_LENGTH)
        rereadable = isinstance(rows, Sequence)

        def cleaned(source: Iterable[Mapping[str, Any]]) -> Iterator[list[dict[str, Any]]]:
            index = 0
            for chunk in bulk.chunks(source, bulk.CHUNK_ROWS):
                out = []
                for row in chunk:
                    clean = self._clean_trade_row(index, row)
                    clean["request_id"] = f"{batch_id}#{index}"
                    out.append(clean)
                    index += 1
                yield out

        chunks = cleaned(rows)
        first = next(chunks, None)  # validated before any round trip
        if first is None:
            return []
        attempts = 0

        def work() -> list[int]:
            nonlocal attempts, chunks
            attempts += 1
            if attempts > 1:  # a retry (rows is a list or tuple): read them again from the start
                chunks = cleaned(rows)
                next(chunks)
            stored = stored_batch(Trade, first)
            if stored is None:
                return bulk.insert_stream(Trade, itertools.chain([first], chunks))
            for chunk in chunks:  # a repeat: the stored ids, all of them
                stored += stored_batch(Trade, chunk, known_repeat=True) or []
            return stored

        return connection.run(work, transaction=True, idempotent=True, retry=rereadable)

    def _clean_trade_row(self, index: int, row: Any) -> dict[str, Any]:
        if type(row) is not dict and not isinstance(row, Mapping):
            raise ValidationError(f"rows[{index}]", f"{type(row).__name__} is not a mapping")
        if not TRADE_ARGUMENTS.issuperset(row):  # (checked in C: this runs once per row)
            unknown = sorted(str(key) for key in row if key not in TRADE_ARGUMENTS)
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
