"""Positions: open one with its ENTRY order, mark it to market, close it, read it back; and the
partial operations (partial exits and scale-ins) that move its remaining size.

`current_size` is the fraction of the original position still open: 1.0 when the position is
logged, floored at 0 by partial exits and capped at 1.0 by scale-ins.
"""

from __future__ import annotations

import decimal
from typing import Any

import peewee as pw

from .. import connection, validate
from ..enums import OrderStatus, OrderType, PartialOperationType, PositionSide, PositionStatus
from ..errors import ValidationError
from ..fields import utc_now
from ..models import Order, PartialTrade, Position, Trade
from .base import ManagerBase, missing_parent_is_not_found, new_internal_order_id, request_id_of
from .statements import (
    Rows,
    Slot,
    Statement,
    Update,
    insert_new_row,
    insert_row,
    insert_with_child,
    literal,
    row_reader,
)

_ONE = decimal.Decimal(1)
_POSITIVE = {"positive": True}
_POSITION_RULES = {
    name: _POSITIVE for name in ("entry_price", "size", "quantity", "stop_loss", "take_profit")
}
_IS_OPEN = Position.status == PositionStatus.OPEN
_UPDATE_OPEN = Update(Position, (Position.id == Slot("id")) & _IS_OPEN)
_CLOSED = Statement(
    lambda: Position.select(Position.id).where(
        (Position.id == Slot("id")) & (Position.status == PositionStatus.CLOSED)
    )
)
_ENTRY = Position.entry_price
# Arithmetic converts SQLite's text-bound Decimal back to a number, so the price is a slot;
# the constants compared with or returned stay literals (see `literal`).
_PNL_PERCENT = pw.Case(
    None,
    [(Position.side == PositionSide.LONG, (Slot("price") - _ENTRY) * literal("100") / _ENTRY)],
    (_ENTRY - Slot("price")) * literal("100") / _ENTRY,
)
_SIZE = pw.fn.COALESCE(Position.current_size, literal("1"))
_SHRINK = pw.Case(
    None,
    [(_SIZE - Slot("fraction") < literal("0"), literal("0"))],
    _SIZE - Slot("fraction"),
)
_GROW = pw.Case(
    None,
    [(_SIZE + Slot("fraction") > literal("1"), literal("1"))],
    _SIZE + Slot("fraction"),
)
_PARTIAL_EXITS = pw.fn.COALESCE(Position.partial_exits_taken, literal("0")) + literal("1")
_SCALE_INS = pw.fn.COALESCE(Position.scale_ins_taken, literal("0")) + literal("1")


def _with_orders_query(where: pw.Node) -> Rows:
    """Positions matching `where` and their orders (oldest first) in one statement: a LEFT JOIN,
    each position's row repeated once per order."""

    def build() -> pw.Node:
        columns = (*Position._meta.sorted_fields, *Order._meta.sorted_fields)
        return (
            Position.select(*columns)
            .join(Order, pw.JOIN.LEFT_OUTER, on=(Order.position == Position.id))
            .where(where)
            .order_by(Position.entry_time, Position.id, Order.created_at, Order.id)
        )

    return Rows(Position, build=build)


_ACTIVE = _with_orders_query(_IS_OPEN)
_ACTIVE_IN_SESSION = _with_orders_query(_IS_OPEN & (Position.session == Slot("session")))
_ONE_POSITION = _with_orders_query(Position.id == Slot("id"))


def _fraction(field: str, value: Any) -> decimal.Decimal:
    number = validate.money(field, value, positive=True)
    if number > _ONE:
        raise ValidationError(field, f"{value!r} must be at most 1 (the whole position)")
    return number


def _level(field: str, value: Any) -> int | None:
    return validate.integer(field, value, optional=True, minimum=0)


# How each row this module writes is validated: the model's columns plus these rules.
_POSITION_ROW = validate.Cleaner(Position, _POSITION_RULES)


class PositionsMixin(ManagerBase):
    """Positions and partial operations for DatabaseManager."""

    def log_position(
        self,
        symbol: str,
        side: Any,
        entry_price: Any,
        size: Any,
        strategy_name: str,
        entry_order_id: str | None = None,
        stop_loss: Any = None,
        take_profit: Any = None,
        quantity: Any = None,
        confidence_score: Any = None,
        session_id: int | None = None,
        entry_time: Any = None,
        exchange: str | None = None,
        max_holding_until: Any = None,
        end_of_day_exit: bool | None = None,
        weekend_exit: bool | None = None,
        time_restriction_group: str | None = None,
        *,
        request_id: str | None = None,
    ) -> int:
        """Insert an OPEN position and its ENTRY order atomically; returns the position id.

        On PostgreSQL both rows go in one statement (one round trip); on SQLite, one transaction.

        The ENTRY order is stored FILLED: a position is logged once its entry has executed, so
        the order is filled at `entry_price` for `quantity` (or `size` when no quantity is
        given), with `entry_order_id` as its exchange order id. A taken exchange order id raises
        DuplicateError and leaves no position behind. Exactly once per `request_id`: a repeat
        returns the first call's position id and writes nothing.
        """
        position = _POSITION_ROW(
            symbol=symbol,
            side=side,
            entry_price=entry_price,
            size=size,
            quantity=quantity,
            stop_loss=stop_loss,
            take_profit=take_profit,
            confidence_score=confidence_score,
            strategy_name=strategy_name,
            entry_time=utc_now() if entry_time is None else entry_time,
            exchange=exchange,
            max_holding_until=max_holding_until,
            end_of_day_exit=False if end_of_day_exit is None else end_of_day_exit,
            weekend_exit=False if weekend_exit is None else weekend_exit,
            time_restriction_group=time_restriction_group,
        )
        position.update(
            status=PositionStatus.OPEN,
            exchange=position["exchange"] or "binance",
            session=self._session(session_id),
            request_id=request_id_of(request_id),
        )
        position.update(original_size=position["size"], current_size=_ONE)
        exchange_order_id = validate.column(
            Order.exchange_order_id, entry_order_id, name="entry_order_id"
        )
        order = _entry_order(position, exchange_order_id)
        return insert_with_child(Position, position, Order, order, link="position")

    def update_position(
        self,
        position_id: int,
        current_price: Any = None,
        unrealized_pnl: Any = None,
        unrealized_pnl_percent: Any = None,
        stop_loss: Any = None,
        take_profit: Any = None,
        trailing_stop_activated: bool | None = None,
        trailing_stop_price: Any = None,
        breakeven_triggered: bool | None = None,
        mfe: Any = None,
        mae: Any = None,
        mfe_price: Any = None,
        mae_price: Any = None,
        mfe_time: Any = None,
        mae_time: Any = None,
        size: Any = None,
        quantity: Any = None,
    ) -> bool:
        """Set the given columns of an OPEN position in one UPDATE; False if unknown or closed.

        Only the given columns change, plus the bookkeeping `last_update` / `updated_at`. Given
        `current_price` without `unrealized_pnl_percent`, the percentage is derived in the same
        statement from the entry price and side, as the earlier layer did. Retried after a lost
        connection: it sets absolute values, so a repeat changes nothing more.
        """
        target = validate.integer("position_id", position_id, minimum=1)
        money = {
            "current_price": (current_price, True), "unrealized_pnl": (unrealized_pnl, False),
            "unrealized_pnl_percent": (unrealized_pnl_percent, False),
            "stop_loss": (stop_loss, True), "take_profit": (take_profit, True),
            "trailing_stop_price": (trailing_stop_price, True), "mfe": (mfe, False),
            "mae": (mae, False), "mfe_price": (mfe_price, True), "mae_price": (mae_price, True),
            "size": (size, True), "quantity": (quantity, True),
        }  # fmt: skip
        changes: dict[str, Any] = {
            name: validate.money(name, value, positive=positive)
            for name, (value, positive) in money.items()
            if value is not None
        }
        for name, value in (("trailing_stop_activated", trailing_stop_activated),
                            ("breakeven_triggered", breakeven_triggered)):  # fmt: skip
            if value is not None:
                changes[name] = validate.flag(name, value)
        for name, value in (("mfe_time", mfe_time), ("mae_time", mae_time)):
            if value is not None:
                changes[name] = validate.timestamp(name, value)
        if "current_price" in changes and "unrealized_pnl_percent" not in changes:
            price = changes["current_price"]
            changes["unrealized_pnl_percent"] = _PNL_PERCENT
        else:
            price = None
        changes["last_update"] = utc_now()
        return self._run_statement(lambda: _UPDATE_OPEN.run(changes, id=target, price=price)) == 1

    def close_position(
        self,
        position_id: int,
        exit_price: Any = None,
        exit_time: Any = None,
        pnl: Any = None,
        exit_reason: str | None = None,
    ) -> bool:
        """Mark an OPEN position CLOSED in one conditional UPDATE; closing twice returns False.

        `exit_price` becomes the last mark (`current_price`), `pnl` the final `unrealized_pnl`
        and `exit_time` the `last_update`. The positions table has no exit-reason column:
        `exit_reason` is validated, and belongs on the trade logged with `log_trade`. Retried
        after a lost connection: when the first attempt closed it, the retry returns True.
        """
        target = validate.integer("position_id", position_id, minimum=1)
        changes: dict[str, Any] = {
            "status": PositionStatus.CLOSED,
            "last_update": validate.timestamp("exit_time", exit_time, optional=True) or utc_now(),
        }
        price = validate.money("exit_price", exit_price, optional=True, positive=True)
        if price is not None:
            changes["current_price"] = price
        realised = validate.money("pnl", pnl, optional=True)
        if realised is not None:
            changes["unrealized_pnl"] = realised
        validate.column(Trade.exit_reason, exit_reason)

        def work() -> bool:
            if _UPDATE_OPEN.run(changes, id=target) == 1:
                return True
            # A retry after a lost connection finds the position closed by the first attempt.
            return connection.retrying() and _CLOSED.scalar(id=target) is not None

        return self._run_statement(work)

    def get_active_positions(self, session_id: int | None = None) -> list[dict[str, Any]]:
        """OPEN positions (of the given or current session, else all), each with its 'orders'.

        One statement whatever the count (positions joined to their orders).
        """
        target = self._session(session_id)
        if target is None:
            return self._run_statement(lambda: _positions_with_orders(_ACTIVE, {}))
        return self._run_statement(
            lambda: _positions_with_orders(_ACTIVE_IN_SESSION, {"session": target})
        )

    def get_position(self, position_id: int) -> dict[str, Any] | None:
        """One position (open or closed) with its 'orders', or None when there is no such id."""
        target = validate.integer("position_id", position_id, minimum=1)
        rows = self._run_statement(lambda: _positions_with_orders(_ONE_POSITION, {"id": target}))
        return rows[0] if rows else None

    def log_partial_trade(
        self,
        position_id: int,
        operation_type: Any,
        size: Any,
        price: Any,
        pnl: Any = None,
        target_level: int | None = None,
        *,
        request_id: str | None = None,
    ) -> int:
        """Record one partial exit or scale-in row (no position change); NotFound for an unknown id.

        Exactly once per `request_id`: a repeat returns the first call's id, writing nothing."""
        target = validate.integer("position_id", position_id, minimum=1)
        row = {
            "position": target,
            "operation_type": validate.operation_type(operation_type),
            "size": validate.money("size", size, positive=True),
            "price": validate.money("price", price, positive=True),
            "pnl": validate.money("pnl", pnl, optional=True),
            "target_level": _level("target_level", target_level),
            "timestamp": utc_now(),
            "request_id": request_id_of(request_id),
        }

        def work() -> int:
            with missing_parent_is_not_found(f"position (id {target})"):
                return insert_row(PartialTrade, row)

        return self._run_statement(work)

    def apply_partial_exit_update(
        self,
        position_id: int,
        executed_fraction_of_original: Any,
        price: Any,
        target_level: int | None,
        pnl: Any = None,
        *,
        request_id: str | None = None,
    ) -> bool:
        """Shrink an open position by a fraction of its original size (floored at 0), count the
        exit and record its partial_trades row, in one transaction. Unknown position → False.
        Exactly once per `request_id`: a repeat returns True and changes nothing."""
        target = validate.integer("position_id", position_id, minimum=1)
        fraction = _fraction("executed_fraction_of_original", executed_fraction_of_original)
        level = _level("target_level", target_level)
        row = {
            "position": target, "operation_type": PartialOperationType.PARTIAL_EXIT,
            "size": fraction, "price": validate.money("price", price, positive=True),
            "pnl": validate.money("pnl", pnl, optional=True), "target_level": level,
            "timestamp": utc_now(), "request_id": request_id_of(request_id),
        }  # fmt: skip
        changes = {
            "current_size": _SHRINK,
            "partial_exits_taken": _PARTIAL_EXITS,
            "last_partial_exit_price": row["price"],
        }
        return _apply_partial(target, fraction, changes, row)

    def apply_scale_in_update(
        self,
        position_id: int,
        added_fraction_of_original: Any,
        price: Any,
        threshold_level: int | None,
        *,
        request_id: str | None = None,
    ) -> bool:
        """Grow an open position by a fraction of its original size (capped at 1.0), count the
        scale-in and record its partial_trades row, in one transaction. Unknown position → False.
        Exactly once per `request_id`: a repeat returns True and changes nothing."""
        target = validate.integer("position_id", position_id, minimum=1)
        fraction = _fraction("added_fraction_of_original", added_fraction_of_original)
        row = {
            "position": target, "operation_type": PartialOperationType.SCALE_IN, "size": fraction,
            "price": validate.money("price", price, positive=True), "pnl": None,
            "target_level": _level("threshold_level", threshold_level), "timestamp": utc_now(),
            "request_id": request_id_of(request_id),
        }  # fmt: skip
        changes = {
            "current_size": _GROW,
            "scale_ins_taken": _SCALE_INS,
            "last_scale_in_price": row["price"],
        }
        return _apply_partial(target, fraction, changes, row)


def _entry_order(position: dict[str, Any], exchange_order_id: str | None) -> dict[str, Any]:
    quantity = position["quantity"] or position["size"]
    return {
        "order_type": OrderType.ENTRY,
        "status": OrderStatus.FILLED,
        "exchange_order_id": exchange_order_id,
        "internal_order_id": new_internal_order_id(),
        "symbol": position["symbol"],
        "side": position["side"],
        "quantity": quantity,
        "price": position["entry_price"],
        "filled_quantity": quantity,
        "filled_price": position["entry_price"],
        "average_fill_price": position["entry_price"],
        "filled_at": position["entry_time"],
        "strategy_name": position["strategy_name"],
        "session": position["session"],
        "size_fraction": _ONE,
    }


class _Repeated(Exception):
    """Raised inside a transaction to undo it: its request was applied by an earlier call."""


def _apply_partial(
    position_id: int, fraction: decimal.Decimal, changes: dict[str, Any], row: dict[str, Any]
) -> bool:
    """Move the open position and record the partial row, in one transaction. The row's
    request id is checked by its insert, after the update: a repeat is rolled back whole."""

    def work() -> bool:
        if _UPDATE_OPEN.run(changes, id=position_id, fraction=fraction) != 1:
            return False
        if insert_new_row(PartialTrade, row) is None:
            raise _Repeated
        return True

    try:
        return connection.run(work, transaction=True, idempotent=True)
    except _Repeated:
        return True


def _positions_with_orders(query: Rows, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a positions-with-orders query; each position once, with its 'orders' list."""
    cursor = query.execute(values)
    position_of = row_reader(cursor, Position)
    order_of = row_reader(cursor, Order, start=len(Position._meta.sorted_fields))
    order_id = len(Position._meta.sorted_fields) + Order._meta.sorted_fields.index(Order.id)
    positions: dict[int, dict[str, Any]] = {}
    for row in cursor.fetchall():
        position = positions.get(row[0])
        if position is None:
            position = positions[row[0]] = position_of(row)
            position["orders"] = []
        if row[order_id] is not None:  # a position without orders has one row of NULLs
            position["orders"].append(order_of(row))
    return list(positions.values())
