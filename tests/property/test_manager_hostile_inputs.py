"""Hostile input to the trading write paths, on PostgreSQL: every call either stores exactly what
it was given (after the documented half-even rounding to 8 places) or raises ValidationError and
writes nothing. The oracle below restates the documented rules independently of validate.py."""

from __future__ import annotations

import datetime as dt
import decimal
from decimal import Decimal as D
from typing import Any

import peewee as pw
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from atb.db import DuplicateError, ValidationError
from atb.db.manager import DatabaseManager
from atb.db.models import Order, Position, Trade

HOSTILE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EIGHT = D("0.00000001")
LIMIT = D(10) ** 10
REFUSED = object()  # the oracle's "must raise ValidationError"

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e12, max_value=1e12),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-(10**10), max_value=10**10, places=10),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from(["12.5", " 7 ", "1e400", "-0", "NaN", "inf", "abc", "", "1_000", "0x10"]),
    st.sampled_from([None, True, [], {}, b"1", object(), 1 + 2j]),
)
prices = st.one_of(
    st.decimals(min_value=D("0.00000001"), max_value=D("9999999999"), places=8),
    st.floats(min_value=1e-6, max_value=1e9),
)
signed = st.decimals(min_value=-(10**9), max_value=10**9, places=8)
names = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=20,
).filter(str.strip)
sides = st.sampled_from(["long", "SHORT", "buy", "Sell", " long "])
texts = st.one_of(
    st.text(max_size=130),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=95, max_size=105),
    st.sampled_from(["BTC\x00USDT", "   ", "ſhort", "LONG", "long", "Buy", "sell", "x" * 101]),
    st.sampled_from([None, 42, 1.5, b"bytes", ["list"]]),
)


def one_hostile(valid: dict[str, Any], hostile: dict[str, Any]) -> st.SearchStrategy:
    """Arguments drawn valid, except one (or, sometimes, two) drawn from the hostile strategies."""

    @st.composite
    def draw_args(draw: Any) -> dict[str, Any]:
        chosen = draw(st.sets(st.sampled_from(sorted(hostile)), min_size=1, max_size=2))
        args = {name: draw(strategy) for name, strategy in valid.items()}
        args.update({name: draw(hostile[name]) for name in chosen})
        event("hostile: " + ", ".join(sorted(chosen)))
        return args

    return draw_args()


def money(value: Any, *, optional: bool = False, positive: bool = False,
          non_negative: bool = False) -> Any:  # fmt: skip
    """What a money column must hold for `value`, or REFUSED."""
    if value is None:
        return None if optional else REFUSED
    if isinstance(value, bool) or not isinstance(value, (int, float, D, str)):
        return REFUSED
    if isinstance(value, str) and (not value.isascii() or "_" in value):
        return REFUSED  # '١٢٣' and '1_000' are Decimal() input, but not numbers we take
    try:
        number = D(repr(value)) if isinstance(value, float) else D(value)
        if not number.is_finite():
            return REFUSED
        number = number.quantize(EIGHT, rounding=decimal.ROUND_HALF_EVEN)
    except (decimal.InvalidOperation, ValueError):
        return REFUSED
    if abs(number) >= LIMIT or (positive and number <= 0) or (non_negative and number < 0):
        return REFUSED
    return number


def text(value: Any, max_length: int, *, optional: bool = False) -> Any:
    """What a varchar column must hold for `value`, or REFUSED."""
    if value is None:
        return None if optional else REFUSED
    if not isinstance(value, str) or "\x00" in value:
        return REFUSED
    if not value.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == value:
        return REFUSED  # a lone surrogate
    if not value.strip():
        return None if optional else REFUSED
    return value if len(value) <= max_length else REFUSED


def side(value: Any) -> Any:
    spellings = {"LONG": "LONG", "SHORT": "SHORT", "BUY": "LONG", "SELL": "SHORT"}
    if not isinstance(value, str):
        return REFUSED
    return spellings.get(value.strip().upper(), REFUSED)


def check(expected: dict[str, Any], call: Any, stored: Any, count: Any) -> None:
    """Either the call is refused with nothing written, or every column holds the oracle value."""
    before = count()
    if REFUSED in expected.values():
        event("refused")
        with pytest.raises(ValidationError):
            call()
        assert count() == before
        return
    event("stored")
    row = stored(call())
    for name, value in expected.items():
        got = getattr(row, name)
        got = got.value if hasattr(got, "value") else got
        assert got == value, (name, got, value)
    assert count() == before + 1


@pytest.fixture
def manager(pg_db: pw.PostgresqlDatabase) -> DatabaseManager:
    return DatabaseManager(database=pg_db, apply_migrations=False)


TRADE = {
    "entry": (prices, numbers), "exit_": (prices, numbers), "size": (prices, numbers),
    "pnl": (signed, numbers), "pct": (signed, numbers), "qty": (st.none() | prices, numbers),
    "symbol": (names, texts), "strategy": (names, texts), "reason": (st.none() | names, texts),
    "order": (st.none() | names, texts), "side_": (sides, texts),
}  # fmt: skip


@HOSTILE
@given(args=one_hostile({k: v[0] for k, v in TRADE.items()}, {k: v[1] for k, v in TRADE.items()}))
def test_log_trade_stores_exactly_or_refuses(manager: DatabaseManager, args: dict) -> None:
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    a = {**args, "pct": "0" if args["pct"] is None else args["pct"]}  # None: derived, unit-tested
    expected = {
        "entry_price": money(a["entry"], positive=True),
        "exit_price": money(a["exit_"], positive=True), "size": money(a["size"], positive=True),
        "pnl": money(a["pnl"]), "pnl_percent": money(a["pct"]),
        "quantity": money(a["qty"], optional=True, positive=True), "symbol": text(a["symbol"], 20),
        "strategy_name": text(a["strategy"], 100),
        "exit_reason": text(a["reason"], 100, optional=True),
        "order_id": text(a["order"], 100, optional=True), "side": side(a["side_"]),
    }  # fmt: skip
    if expected["order_id"] not in (None, REFUSED):  # an exchange id is unique (tested elsewhere)
        Trade.delete().where(Trade.order_id == expected["order_id"]).execute()
    check(
        expected,
        lambda: manager.log_trade(
            a["symbol"],
            a["side_"],
            a["entry"],
            a["exit_"],
            a["size"],
            when,
            when,
            a["pnl"],
            a["reason"],
            a["strategy"],
            order_id=a["order"],
            pnl_percent=a["pct"],
            quantity=a["qty"],
        ),  # fmt: skip
        Trade.get_by_id,
        Trade.select().count,
    )


POSITION = {
    "entry": (prices, numbers), "size": (prices, numbers), "qty": (st.none() | prices, numbers),
    "stop": (st.none() | prices, numbers), "symbol": (names, texts), "strategy": (names, texts),
    "side_": (sides, texts), "entry_order": (st.none() | names, texts),
}  # fmt: skip


@HOSTILE
@given(
    args=one_hostile({k: v[0] for k, v in POSITION.items()}, {k: v[1] for k, v in POSITION.items()})
)
def test_log_position_stores_exactly_or_refuses(manager: DatabaseManager, args: dict) -> None:
    entry, size, qty, stop = args["entry"], args["size"], args["qty"], args["stop"]
    symbol, strategy, side_, entry_order = (
        args["symbol"], args["strategy"], args["side_"], args["entry_order"],
    )  # fmt: skip
    expected = {
        "entry_price": money(entry, positive=True), "size": money(size, positive=True),
        "quantity": money(qty, optional=True, positive=True),
        "stop_loss": money(stop, optional=True, positive=True), "symbol": text(symbol, 20),
        "strategy_name": text(strategy, 100), "side": side(side_),
        "exchange_order_id": text(entry_order, 100, optional=True),
    }  # fmt: skip
    exchange_id = expected["exchange_order_id"]
    counts = (Position.select().count(), Order.select().count())

    def call() -> int:
        return manager.log_position(symbol, side_, entry, size, strategy, entry_order_id=entry_order,
                                    quantity=qty, stop_loss=stop)  # fmt: skip

    if REFUSED in expected.values():
        event("refused")
        with pytest.raises(ValidationError):
            call()
        assert (Position.select().count(), Order.select().count()) == counts
        return
    event("stored")
    if (
        exchange_id is not None
        and Order.select().where(Order.exchange_order_id == exchange_id).exists()
    ):
        with pytest.raises(DuplicateError):  # an earlier example stored the same exchange id
            call()
        assert (Position.select().count(), Order.select().count()) == counts
        return
    stored = Position.get_by_id(call())
    (entry_order_row,) = stored.orders
    expected.pop("exchange_order_id")  # a column of the order, checked just below
    for name, value in expected.items():
        got = getattr(stored, name)
        assert (got.value if hasattr(got, "value") else got) == value, (name, got, value)
    assert entry_order_row.exchange_order_id == exchange_id
    assert entry_order_row.filled_quantity == (expected["quantity"] or expected["size"])
    assert (Position.select().count(), Order.select().count()) == (counts[0] + 1, counts[1] + 1)


ORDER = {
    "qty": (prices, numbers), "price": (st.none() | prices, numbers),
    "fraction": (st.none() | prices, numbers), "symbol": (names, texts),
    "strategy": (names, texts), "side_": (sides, texts),
    "kind": (st.sampled_from(["entry", "Partial_Exit", "scale_in", "FULL_EXIT"]), texts),
    "level": (st.none() | st.integers(0, 10),
              st.one_of(st.integers(), st.floats(), st.text(max_size=3))),
}  # fmt: skip


@HOSTILE
@given(args=one_hostile({k: v[0] for k, v in ORDER.items()}, {k: v[1] for k, v in ORDER.items()}))
def test_create_order_stores_exactly_or_refuses(manager: DatabaseManager, args: dict) -> None:
    qty, price, fraction, level = args["qty"], args["price"], args["fraction"], args["level"]
    symbol, strategy, side_, kind = args["symbol"], args["strategy"], args["side_"], args["kind"]
    position_id = Position.select(Position.id).scalar() or manager.log_position(
        "BTCUSDT", "long", 1, 1, "s"
    )
    kinds = {"ENTRY", "PARTIAL_EXIT", "SCALE_IN", "FULL_EXIT"}
    order_type = kind.strip().upper() if isinstance(kind, str) else None
    expected = {
        "quantity": money(qty, positive=True), "price": money(price, optional=True, positive=True),
        "size_fraction": money(fraction, optional=True, non_negative=True),
        "symbol": text(symbol, 20), "strategy_name": text(strategy, 100), "side": side(side_),
        "order_type": order_type if order_type in kinds else REFUSED,
        "target_level": _level(level),
    }  # fmt: skip
    check(
        expected,
        lambda: manager.create_order(
            position_id,
            kind,
            symbol,
            side_,
            qty,
            strategy,
            price=price,
            size_fraction=fraction,
            target_level=level,
        ),  # fmt: skip
        Order.get_by_id,
        Order.select().count,
    )


def _level(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            return REFUSED
        value = int(value)
    elif isinstance(value, str):
        try:
            number = D(value.strip())
        except decimal.InvalidOperation:
            return REFUSED
        if not number.is_finite() or number != number.to_integral_value():
            return REFUSED
        value = int(number)
    return value if -(2**31) <= value <= 2**31 - 1 else REFUSED


STATUSES = {
    "PENDING": "PENDING", "OPEN": "OPEN", "PARTIALLY_FILLED": "PARTIALLY_FILLED",
    "FILLED": "FILLED", "CANCELLED": "CANCELLED", "FAILED": "FAILED", "REJECTED": "FAILED",
    "EXPIRED": "CANCELLED", "CANCELED": "CANCELLED", "NEW": "OPEN",
    "PARTIALLY-FILLED": "PARTIALLY_FILLED", "PARTIAL": "PARTIALLY_FILLED",
}  # fmt: skip


UPDATE = {
    "status": (st.sampled_from(sorted(STATUSES) + ["filled ", "Rejected", "partially_filled"]),
               texts),
    "filled": (st.none() | st.decimals(min_value=0, max_value=5, places=8), numbers),
    "price": (st.none() | prices, numbers), "commission": (st.none() | signed, numbers),
}  # fmt: skip


@HOSTILE
@given(args=one_hostile({k: v[0] for k, v in UPDATE.items()}, {k: v[1] for k, v in UPDATE.items()}))
def test_update_order_status_stores_exactly_or_refuses(
    manager: DatabaseManager, args: dict
) -> None:
    status, filled, price, commission = (
        args["status"], args["filled"], args["price"], args["commission"],
    )  # fmt: skip
    position_id = manager.log_position("BTCUSDT", "long", 1, 1, "s")
    order_id = manager.create_order(position_id, "full_exit", "BTCUSDT", "sell", "5", "s")
    new_status = STATUSES.get(status.strip().upper()) if isinstance(status, str) else None
    fill = money(filled, optional=True, non_negative=True)
    expected = {
        "status": new_status or REFUSED,
        "filled_quantity": D(5) if fill is None and new_status == "FILLED" else (fill or D(0)),
        "filled_price": money(price, optional=True, positive=True),
        "commission": D(0) if commission is None else money(commission),
    }  # fmt: skip
    if fill is REFUSED:
        expected["filled_quantity"] = REFUSED
    elif new_status == "FILLED" and fill is not None and fill < 5:
        expected["status"] = "PARTIALLY_FILLED"  # a short FILLED is a partial fill
    before = Order.get_by_id(order_id)

    def call() -> bool:
        return manager.update_order_status(order_id, status, filled_quantity=filled,
                                           filled_price=price, commission=commission)  # fmt: skip

    over_filled = isinstance(fill, D) and fill > 5
    if REFUSED in expected.values() or over_filled:
        event("refused")
        with pytest.raises(ValidationError):
            call()
        after = Order.get_by_id(order_id)
        assert (after.status, after.filled_quantity, after.filled_price, after.commission) == (
            before.status, before.filled_quantity, before.filled_price, before.commission,
        )  # fmt: skip
        return
    event("stored")
    assert call() is True
    after = Order.get_by_id(order_id)
    for name, value in expected.items():
        got = getattr(after, name)
        assert (got.value if hasattr(got, "value") else got) == value, (name, got, value)
