"""Trading state: engine sessions, positions, their orders and partial operations, and closed trades."""

from __future__ import annotations

import peewee as pw

from atb.db.enums import (
    OrderStatus,
    OrderType,
    PartialOperationType,
    PositionSide,
    PositionStatus,
    TradeSource,
)
from atb.db.fields import (
    CountField,
    EnumField,
    FlagField,
    JsonField,
    MoneyField,
    UTCDateTimeField,
    server_default,
)
from atb.db.models.base import BaseModel, request_key


class TradingSession(BaseModel):
    """One run of the engine (live, paper or backtest); the parent of most other rows."""

    _touch_on_update = ("updated_at",)

    session_name = pw.CharField(max_length=100, null=True)
    start_time = UTCDateTimeField(index=True)
    end_time = UTCDateTimeField(null=True)
    is_active = FlagField(null=True, server_default=True)
    mode = EnumField(TradeSource)
    initial_balance = MoneyField()
    final_balance = MoneyField(null=True)
    strategy_name = pw.CharField(max_length=100)
    strategy_config = JsonField(null=True)
    symbol = pw.CharField(max_length=20)
    timeframe = pw.CharField(max_length=10)
    exchange = pw.CharField(
        max_length=50, null=True, default="binance", constraints=[server_default("'binance'")]
    )
    time_exit_config = JsonField(null=True)
    market_timezone = pw.CharField(max_length=50, null=True)
    total_pnl = MoneyField(null=True)
    total_trades = CountField(null=True)
    win_rate = MoneyField(null=True)
    max_drawdown = MoneyField(null=True)
    created_at = UTCDateTimeField(server_now=True, null=True)
    updated_at = UTCDateTimeField(server_now=True, null=True)

    request_id = request_key()

    class Meta:
        table_name = "trading_sessions"


def session_link(backref: str, *, required: bool = False, index: bool = True) -> pw.ForeignKeyField:
    """`session_id` → trading_sessions.id. Records that outlive their session (trades, events,
    snapshots) keep their row with SET NULL; required children (risk and dynamic metrics) go with
    their session (CASCADE). `index=False` where a composite index starting with session_id
    already serves the lookups."""
    return pw.ForeignKeyField(  # type: ignore[call-overload]  # null= from a bool
        TradingSession,
        column_name="session_id",
        null=not required,
        index=index,
        backref=backref,
        on_delete="CASCADE" if required else "SET NULL",
    )


class Position(BaseModel):
    """One position, open or closed: entry, live mark-to-market, partial-operation and stop state."""

    _touch_on_update = ("updated_at",)

    symbol = pw.CharField(max_length=20, index=True)
    side = EnumField(PositionSide)
    status = EnumField(
        PositionStatus, server_default=PositionStatus.OPEN.value, default=PositionStatus.OPEN
    )
    entry_price = MoneyField()
    size = MoneyField()
    quantity = MoneyField(null=True)
    original_size = MoneyField(null=True)
    current_size = MoneyField(null=True)
    partial_exits_taken = CountField(null=True)
    scale_ins_taken = CountField(null=True)
    last_partial_exit_price = MoneyField(null=True)
    last_scale_in_price = MoneyField(null=True)
    stop_loss = MoneyField(null=True)
    take_profit = MoneyField(null=True)
    trailing_stop = FlagField(null=True)
    trailing_stop_activated = FlagField(null=True)
    trailing_stop_price = MoneyField(null=True)
    breakeven_triggered = FlagField(null=True)
    entry_time = UTCDateTimeField(index=True)
    # Set on insert only; unlike updated_at it is not refreshed automatically.
    last_update = UTCDateTimeField(server_now=True, null=True)
    current_price = MoneyField(null=True)
    unrealized_pnl = MoneyField(null=True, server_default="0")
    unrealized_pnl_percent = MoneyField(null=True, server_default="0")
    mfe = MoneyField(null=True, server_default="0")
    mae = MoneyField(null=True, server_default="0")
    mfe_price = MoneyField(null=True)
    mae_price = MoneyField(null=True)
    mfe_time = UTCDateTimeField(null=True)
    mae_time = UTCDateTimeField(null=True)
    strategy_name = pw.CharField(max_length=100)
    confidence_score = MoneyField(null=True)
    exchange = pw.CharField(
        max_length=50, null=True, default="binance", constraints=[server_default("'binance'")]
    )
    # Indexed by the composite (session_id, status) below.
    session = session_link("positions", index=False)
    created_at = UTCDateTimeField(server_now=True, null=True)
    updated_at = UTCDateTimeField(server_now=True, null=True)
    max_holding_until = UTCDateTimeField(null=True)
    end_of_day_exit = FlagField(null=True)
    weekend_exit = FlagField(null=True)
    time_restriction_group = pw.CharField(max_length=50, null=True)

    request_id = request_key()

    class Meta:
        table_name = "positions"
        indexes = ((("session_id", "status"), False),)


# The open positions in get_active_positions' order: a scan of the open ones only, however many
# closed positions the table holds (migration 002). Written as SQL: an index predicate is DDL.
Position.add_index(Position.entry_time, Position.id, where=pw.SQL("status = 'OPEN'"))


class Order(BaseModel):
    """One exchange order belonging to a position (entry, partial exit, scale-in or full exit)."""

    _touch_on_update = ("last_update",)

    # Indexed by the composite (position_id, order_type) below.
    position = pw.ForeignKeyField(
        Position, column_name="position_id", index=False, backref="orders", on_delete="CASCADE"
    )
    position_id: int  # the foreign key's raw value (peewee's accessor)
    order_type = EnumField(OrderType)
    status = EnumField(OrderStatus)
    exchange_order_id = pw.CharField(max_length=100, null=True, unique=True)
    # Indexed by the unique (internal_order_id, session_id) below.
    internal_order_id = pw.CharField(max_length=100)
    symbol = pw.CharField(max_length=20)
    side = EnumField(PositionSide)
    quantity = MoneyField()
    price = MoneyField(null=True)
    filled_quantity = MoneyField(null=True, server_default="0")
    filled_price = MoneyField(null=True)
    average_fill_price = MoneyField(null=True)
    commission = MoneyField(null=True, server_default="0")
    created_at = UTCDateTimeField(server_now=True, null=True, index=True)
    filled_at = UTCDateTimeField(null=True)
    cancelled_at = UTCDateTimeField(null=True)
    last_update = UTCDateTimeField(server_now=True, null=True)
    strategy_name = pw.CharField(max_length=100)
    # Indexed by the composite (session_id, status) below.
    session = session_link("orders", index=False)
    target_level = pw.IntegerField(null=True)
    size_fraction = MoneyField(null=True)

    request_id = request_key()

    class Meta:
        table_name = "orders"
        indexes = (
            (("position_id", "order_type"), False),
            (("status", "created_at"), False),
            (("internal_order_id", "session_id"), True),
            (("session_id", "status"), False),
        )


class PartialTrade(BaseModel):
    """One partial exit or scale-in on a position: the fraction executed, price and realised P&L."""

    # Indexed by the composite (position_id, timestamp) below.
    position = pw.ForeignKeyField(
        Position,
        column_name="position_id",
        index=False,
        backref="partial_trades",
        on_delete="CASCADE",
    )
    operation_type = EnumField(PartialOperationType)
    size = MoneyField()
    price = MoneyField()
    pnl = MoneyField(null=True)
    target_level = pw.IntegerField(null=True)
    timestamp = UTCDateTimeField(server_now=True, null=True, index=True)

    request_id = request_key()

    class Meta:
        table_name = "partial_trades"
        indexes = ((("position_id", "timestamp"), False),)


class Trade(BaseModel):
    """One completed round-trip trade: entry, exit, realised P&L, risk levels and MFE/MAE."""

    _touch_on_update = ("updated_at",)

    # Indexed by the composite (symbol, entry_time) below.
    symbol = pw.CharField(max_length=20)
    side = EnumField(PositionSide)
    source = EnumField(TradeSource, server_default=TradeSource.LIVE.value, default=TradeSource.LIVE)
    entry_price = MoneyField()
    exit_price = MoneyField()
    size = MoneyField()
    quantity = MoneyField(null=True)
    # Indexed by the composite (entry_time, exit_time) below.
    entry_time = UTCDateTimeField()
    exit_time = UTCDateTimeField(index=True)
    pnl = MoneyField()
    pnl_percent = MoneyField()
    commission = MoneyField(null=True, server_default="0")
    stop_loss = MoneyField(null=True)
    take_profit = MoneyField(null=True)
    exit_reason = pw.CharField(max_length=100, null=True)
    strategy_name = pw.CharField(max_length=100, index=True)
    strategy_config = JsonField(null=True)
    confidence_score = MoneyField(null=True)
    order_id = pw.CharField(max_length=100, null=True)
    exchange = pw.CharField(
        max_length=50, null=True, default="binance", constraints=[server_default("'binance'")]
    )
    timeframe = pw.CharField(max_length=10, null=True)
    mfe = MoneyField(null=True, server_default="0")
    mae = MoneyField(null=True, server_default="0")
    mfe_price = MoneyField(null=True)
    mae_price = MoneyField(null=True)
    mfe_time = UTCDateTimeField(null=True)
    mae_time = UTCDateTimeField(null=True)
    position = pw.ForeignKeyField(
        Position, column_name="position_id", null=True, backref="trades", on_delete="SET NULL"
    )
    # Indexed by the composite (session_id, exit_time) below.
    session = session_link("trades", index=False)
    created_at = UTCDateTimeField(server_now=True, null=True)
    updated_at = UTCDateTimeField(server_now=True, null=True)

    request_id = request_key()

    class Meta:
        table_name = "trades"
        indexes = (
            (("entry_time", "exit_time"), False),
            (("pnl_percent", "strategy_name"), False),
            (("order_id", "session_id"), True),
            (("session_id", "exit_time"), False),
            (("symbol", "entry_time"), False),
            (("session_id", "symbol", "entry_time"), False),
        )


# An exchange order id (trades) or internal order id (orders) is unique per session; the composite
# unique indexes above cannot see rows without a session (NULLs are distinct), so these partial
# ones make the ids unique among session-less rows too (migration 003).
Trade.add_index(Trade.order_id, unique=True, where=pw.SQL("session_id IS NULL"))
Order.add_index(Order.internal_order_id, unique=True, where=pw.SQL("session_id IS NULL"))
