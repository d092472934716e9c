"""Exchange orders of a position: create them, follow their status and fills, list them.

Orders never move backwards. Every status change is one conditional UPDATE that matches only
an order whose status is not ahead of the new one (PENDING → OPEN → PARTIALLY_FILLED → FILLED;
FILLED, CANCELLED and FAILED are terminal) and, for a fill report, whose cumulative fill is not
above the reported one. So concurrent or late reports cannot revive an order, move it back, or
replace the price and commission of a larger fill with those of a smaller one.
"""

from __future__ import annotations

import decimal
import hashlib
from typing import Any

import peewee as pw

from .. import connection, validate
from ..enums import TERMINAL_ORDER_STATUSES, OrderStatus
from ..errors import ValidationError
from ..fields import utc_now
from ..models import Order
from .base import ManagerBase, missing_parent_is_not_found, new_internal_order_id, request_id_of
from .statements import Rows, Slot, Update, both, insert_row, session_scoped

_TERMINAL = tuple(sorted(status.value for status in TERMINAL_ORDER_STATUSES))
_WORKING = tuple(status for status in OrderStatus if status not in TERMINAL_ORDER_STATUSES)
# How far along an order is; a report may keep an order where it is or move it forward only.
_STAGE = {OrderStatus.PENDING: 0, OrderStatus.OPEN: 1, OrderStatus.PARTIALLY_FILLED: 2}


def _may_become(status: OrderStatus) -> pw.Node:
    """The order is `Slot("id")` and its current status may move to `status`."""
    stage = _STAGE.get(status, len(_STAGE))  # a terminal status ends any working one
    earlier = [s for s in _WORKING if _STAGE[s] <= stage]
    return (Order.id == Slot("id")) & Order.status.in_(earlier)


# Compared against the column itself: its numeric affinity converts SQLite's text-bound Decimal.
# A fill report matches only an order it fits and whose stored fill is not larger.
_FITS = (Order.quantity >= Slot("filled")) & (Order.filled_quantity <= Slot("filled"))
_UPDATES = {
    (status, with_fill): Update(
        Order, _may_become(status) & _FITS if with_fill else _may_become(status)
    )
    for status in OrderStatus
    for with_fill in (False, True)
}
# FILLED below the order's quantity is a partial fill: stored as PARTIALLY_FILLED, not stamped.
_SHORT_FILL = Order.quantity > Slot("filled")
_FILLED_OR_SHORT = pw.Case(
    None, [(_SHORT_FILL, OrderStatus.PARTIALLY_FILLED.value)], OrderStatus.FILLED.value
)
_FILLED_AT_UNLESS_SHORT = pw.fn.COALESCE(
    Order.filled_at, pw.Case(None, [(_SHORT_FILL, None)], Slot("now", Order.filled_at))
)
_WHOLE_ORDER = Order.quantity
_STAMPED = {
    OrderStatus.FILLED: (
        "filled_at",
        pw.fn.COALESCE(Order.filled_at, Slot("now", Order.filled_at)),
    ),
    OrderStatus.CANCELLED: (
        "cancelled_at",
        pw.fn.COALESCE(Order.cancelled_at, Slot("now", Order.cancelled_at)),
    ),
}
_OLDEST_FIRST = (Order.created_at, Order.id)
_OF_POSITION = Rows(
    Order, lambda query: query.where(Order.position == Slot("position")).order_by(*_OLDEST_FIRST)
)
_PENDING = session_scoped(
    lambda in_session: Rows(
        Order,
        lambda query: query.where(both(Order.status.in_(_WORKING), in_session)).order_by(
            *_OLDEST_FIRST
        ),
    ),
    Order,
)
_REFUSAL = Rows(Order, lambda query: query.where(Order.id == Slot("id")))


# How each row this module writes is validated: the model's columns plus these rules.
_ORDER_ROW = validate.Cleaner(
    Order,
    {
        "quantity": {"positive": True},
        "price": {"positive": True},
        "size_fraction": {"non_negative": True},
        "internal_order_id": {"optional": True},
    },
)


class OrdersMixin(ManagerBase):
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
        *,
        client_order_id: str | None = None,
        request_id: str | None = None,
    ) -> int:
        """Insert a PENDING order; an internal id is generated when none is given.

        A taken exchange order id (or internal id within the session) raises DuplicateError;
        an unknown position raises NotFound. Nothing is written in either case.

        `client_order_id` is the engine's own order id, the one sent to the exchange (stored as
        `internal_order_id`): creating an order again with a client order id already stored in
        the session returns the first order's id and writes nothing, as exchanges treat it.
        Without one, exactly once per `request_id` in the same way. Give one of the two.
        """
        target = validate.integer("position_id", position_id, minimum=1)
        if client_order_id is not None:
            internal_order_id, request_id = _client_order(
                client_order_id, internal_order_id, request_id
            )
        row = _ORDER_ROW(
            order_type=order_type,
            symbol=symbol,
            side=side,
            quantity=quantity,
            strategy_name=strategy_name,
            price=price,
            exchange_order_id=exchange_order_id,
            internal_order_id=internal_order_id,
            target_level=target_level,
            size_fraction=size_fraction,
        )  # fmt: skip
        row.update(
            internal_order_id=row["internal_order_id"] or new_internal_order_id(),
            position=target,
            status=OrderStatus.PENDING,
            session=self._session(session_id),
            filled_quantity=decimal.Decimal(0),
            commission=decimal.Decimal(0),
        )
        row["request_id"] = (
            _client_order_key(row["internal_order_id"], row["session"])
            if client_order_id is not None
            else request_id_of(request_id)
        )

        parents = f"position (id {target})"
        if row["session"] is not None:
            parents += f" or trading session (id {row['session']})"

        def work() -> int:
            with missing_parent_is_not_found(parents):
                return insert_row(Order, row)

        return self._run_statement(work)

    def update_order_status(
        self,
        order_id: int,
        status: Any,
        filled_quantity: Any = None,
        filled_price: Any = None,
        exchange_order_id: str | None = None,
        commission: Any = None,
    ) -> bool:
        """Move a working order forward to `status`, recording fills; False for unknown, terminal
        or stale reports (nothing written).

        Statuses only move forward (PENDING → OPEN → PARTIALLY_FILLED → FILLED, or to CANCELLED
        / FAILED from any working status). `filled_quantity` is cumulative, as exchanges report
        it: a report lower than the stored fill changes nothing at all, so price and commission
        always describe the largest fill seen. FILLED without a quantity means the whole order;
        FILLED with less than the order's quantity is stored as PARTIALLY_FILLED (a fill is a
        fact to keep, the rest of the order is still working). More than the order's quantity
        raises ValidationError. A stale or refused report returns False and writes nothing.
        Retried after a lost connection: a report is safe to repeat (the same report matches
        again, or finds the order where its first attempt moved it and returns True).
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
            validate.column(Order.exchange_order_id, exchange_order_id),
            validate.money("commission", commission, optional=True),
        )
        update = _UPDATES[(new_status, filled is not None)]
        params = {"id": target, "filled": filled, "now": utc_now()}

        def work() -> tuple[bool, bool]:
            return update.run(changes, **params) == 1, connection.retrying()

        applied, retried = self._run_statement(work)
        if applied:
            return True
        return self._refusal(target, new_status, filled, retried)

    def _refusal(
        self, order_id: int, status: OrderStatus, filled: decimal.Decimal | None, retried: bool
    ) -> bool:
        """Why a status update matched nothing: over-fill is an error, anything else False;
        True when a retry finds the report applied by its own first attempt."""
        rows = self._run_statement(lambda: _REFUSAL.fetch(id=order_id))
        if rows and retried and _holds(rows[0], status, filled):
            return True
        if not rows or rows[0]["status"] in _TERMINAL or filled is None:
            return False
        quantity = rows[0]["quantity"]
        if filled > quantity:
            raise ValidationError(
                "filled_quantity", f"{filled} exceeds the order's quantity {quantity}"
            )
        return False

    def get_orders_for_position(self, position_id: int) -> list[dict[str, Any]]:
        """Every order of a position, oldest first."""
        target = validate.integer("position_id", position_id, minimum=1)
        return self._run_statement(lambda: _OF_POSITION.fetch(position=target))

    def get_pending_orders(self, session_id: int | None = None) -> list[dict[str, Any]]:
        """Orders still working (PENDING, OPEN, PARTIALLY_FILLED) of the given or current session."""
        params = self._session_filter(session_id)
        return self._run_statement(lambda: _PENDING[bool(params)].fetch(params))


def _status_changes(
    status: OrderStatus,
    filled: decimal.Decimal | None,
    price: decimal.Decimal | None,
    exchange_order_id: str | None,
    commission: decimal.Decimal | None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {"status": status}
    if filled is not None:
        changes["filled_quantity"] = filled  # the WHERE guarantees it is not a step back
        if status is OrderStatus.FILLED:
            changes["status"] = _FILLED_OR_SHORT
    elif status is OrderStatus.FILLED:
        changes["filled_quantity"] = _WHOLE_ORDER
    if price is not None:
        changes["filled_price"] = changes["average_fill_price"] = price
    if exchange_order_id is not None:
        changes["exchange_order_id"] = exchange_order_id
    if commission is not None:
        changes["commission"] = commission
    if status in _STAMPED:
        name, first_time = _STAMPED[status]
        short_possible = status is OrderStatus.FILLED and filled is not None
        changes[name] = _FILLED_AT_UNLESS_SHORT if short_possible else first_time
    return changes


def _client_order(
    client_order_id: Any, internal_order_id: Any, request_id: Any
) -> tuple[str, None]:
    """The internal order id a client order id is stored as; giving another key too is an error."""
    given = validate.column(Order.internal_order_id, client_order_id, name="client_order_id")
    if internal_order_id is not None and internal_order_id != given:
        raise ValidationError(
            "internal_order_id",
            "is the client order id under its stored name: give client_order_id or "
            "internal_order_id, not two different ones",
        )
    if request_id is not None:
        raise ValidationError(
            "request_id",
            "give client_order_id or request_id, not both: the client order id already makes "
            "create_order exactly-once",
        )
    return given, None


def _client_order_key(client_order_id: str, session_id: int | None) -> str:
    """The request id of a client order: one per (session, client order id), fixed length."""
    digest = hashlib.sha256(f"{session_id}\x00{client_order_id}".encode()).hexdigest()
    return f"client-order:{digest[:40]}"


def _holds(order: dict[str, Any], status: OrderStatus, filled: decimal.Decimal | None) -> bool:
    """True when the stored order is where this report moves it (FILLED short of the quantity
    is stored as PARTIALLY_FILLED)."""
    stored = order["filled_quantity"]
    if filled is not None and stored != filled:
        return False
    expected = status
    if status is OrderStatus.FILLED and filled is not None and filled < order["quantity"]:
        expected = OrderStatus.PARTIALLY_FILLED
    return order["status"] == expected.value
