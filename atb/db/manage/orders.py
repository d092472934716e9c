"""Exchange orders of a position: create them, follow their status and fills, list them.

Terminal states (FILLED, CANCELLED, FAILED) stay terminal: every status change is one
conditional UPDATE that cannot match a terminal order, so concurrent updates cannot revive one.
"""

from __future__ import annotations

import decimal
from typing import Any

from .. import validate
from ..enums import TERMINAL_ORDER_STATUSES, OrderStatus, OrderType
from ..errors import ValidationError
from ..fields import utc_now
from ..models import Order
from .positions import missing_parent_is_not_found, new_internal_order_id
from .statements import Expr, insert_row, select_rows, update_rows

_TERMINAL = tuple(sorted(status.value for status in TERMINAL_ORDER_STATUSES))
_WORKING = tuple(status.value for status in OrderStatus if status not in TERMINAL_ORDER_STATUSES)
_WORKING_NOW = "status IN (" + ", ".join(f"'{s}'" for s in _WORKING) + ")"
_WORKING_IN_SESSION = _WORKING_NOW + " AND session_id = {p}"
_WORKING_ORDER = "id = {p} AND status NOT IN (" + ", ".join(f"'{s}'" for s in _TERMINAL) + ")"
_FITS = _WORKING_ORDER + " AND quantity >= {p}"
# Compared against the column itself: its numeric affinity converts SQLite's text-bound Decimal.
_KEEP_LARGER_FILL = "CASE WHEN filled_quantity > {p} THEN filled_quantity ELSE {p} END"
_STAMPED = {OrderStatus.FILLED: "filled_at", OrderStatus.CANCELLED: "cancelled_at"}


class OrdersMixin:
    """create_order / update_order_status / order reads for DatabaseManager."""

    def create_order(
        self,
        position_id: int,
        order_type: Any,
        symbol: str,
        side: Any,
        quantity: Any,
        strategy_name: str,
        session_id: int | None = None,
        price: Any = None,
        exchange_order_id: str | None = None,
        internal_order_id: str | None = None,
        target_level: int | None = None,
        size_fraction: Any = None,
    ) -> int:
        """Insert a PENDING order; an internal id is generated when none is given.

        A taken exchange order id (or internal id within the session) raises DuplicateError;
        an unknown position raises NotFound. Nothing is written in either case.
        """
        target = validate.integer("position_id", position_id, minimum=1)
        row = {
            "position": target,
            "order_type": validate.enum_value("order_type", order_type, OrderType),
            "status": OrderStatus.PENDING,
            "symbol": validate.text("symbol", symbol, 20),
            "side": validate.side(side),
            "quantity": validate.money("quantity", quantity, positive=True),
            "strategy_name": validate.text("strategy_name", strategy_name, 100),
            "session": self._session(session_id),
            "price": validate.money("price", price, optional=True, positive=True),
            "exchange_order_id": validate.text(
                "exchange_order_id", exchange_order_id, 100, optional=True
            ),
            "internal_order_id": validate.text(
                "internal_order_id", internal_order_id, 100, optional=True
            )
            or new_internal_order_id(),
            "target_level": validate.integer("target_level", target_level, optional=True),
            "size_fraction": validate.money(
                "size_fraction", size_fraction, optional=True, non_negative=True
            ),
            "filled_quantity": decimal.Decimal(0),
            "commission": decimal.Decimal(0),
        }

        parents = f"position (id {target})"
        if row["session"] is not None:
            parents += f" or trading session (id {row['session']})"

        def work() -> int:
            with missing_parent_is_not_found(parents):
                return insert_row(Order, row)

        return self._one(work)

    def update_order_status(
        self,
        order_id: int,
        status: Any,
        filled_quantity: Any = None,
        filled_price: Any = None,
        exchange_order_id: str | None = None,
        commission: Any = None,
    ) -> bool:
        """Move a working order to `status`, recording fills; False for unknown or terminal orders.

        `filled_quantity` is cumulative (as exchanges report it); a report lower than the stored
        one is ignored, so out-of-order messages cannot undo a fill. FILLED without a quantity
        means the whole order. More than the order's quantity raises ValidationError.
        """
        target = validate.integer("order_id", order_id, minimum=1)
        new_status = validate.order_status(status)
        filled = validate.money(
            "filled_quantity", filled_quantity, optional=True, non_negative=True
        )
        changes = _status_changes(
            new_status,
            filled,
            validate.money("filled_price", filled_price, optional=True, positive=True),
            validate.text("exchange_order_id", exchange_order_id, 100, optional=True),
            validate.money("commission", commission, optional=True),
        )
        where, params = (_WORKING_ORDER, (target,)) if filled is None else (_FITS, (target, filled))
        if self._one(lambda: update_rows(Order, changes, where, params)) == 1:
            return True
        return self._refusal(target, filled)

    def _refusal(self, order_id: int, filled: decimal.Decimal | None) -> bool:
        """Why a status update matched nothing: over-fill is an error, anything else False."""
        query = Order.select(Order.status, Order.quantity).where(Order.id == order_id).tuples()
        found = self._one(query.first)
        if found is None or found[0] in _TERMINAL or filled is None:
            return False
        quantity = Order.quantity.python_value(found[1])
        if filled > quantity:
            raise ValidationError(
                "filled_quantity", f"{filled} exceeds the order's quantity {quantity}"
            )
        return False

    def get_orders_for_position(self, position_id: int) -> list[dict[str, Any]]:
        """Every order of a position, oldest first."""
        target = validate.integer("position_id", position_id, minimum=1)
        order = "created_at, id"
        return self._one(lambda: select_rows(Order, "position_id = {p}", (target,), order_by=order))

    def get_pending_orders(self, session_id: int | None = None) -> list[dict[str, Any]]:
        """Orders still working (PENDING, OPEN, PARTIALLY_FILLED) of the given or current session."""
        target = self._session(session_id)
        where, params = (_WORKING_NOW, ()) if target is None else (_WORKING_IN_SESSION, (target,))
        order = "created_at, id"
        return self._one(lambda: select_rows(Order, where, params, order_by=order))


def _status_changes(
    status: OrderStatus,
    filled: decimal.Decimal | None,
    price: decimal.Decimal | None,
    exchange_order_id: str | None,
    commission: decimal.Decimal | None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {"status": status}
    if filled is not None:
        changes["filled_quantity"] = Expr(_KEEP_LARGER_FILL, (filled, filled))
    elif status is OrderStatus.FILLED:
        changes["filled_quantity"] = Expr("quantity")
    if price is not None:
        changes["filled_price"] = changes["average_fill_price"] = price
    if exchange_order_id is not None:
        changes["exchange_order_id"] = exchange_order_id
    if commission is not None:
        changes["commission"] = commission
    if status in _STAMPED:
        name = _STAMPED[status]
        now = Order._meta.fields[name].db_value(utc_now())
        changes[name] = Expr(f"COALESCE({name}, {{p}})", (now,))
    return changes
