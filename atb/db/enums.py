"""The closed vocabularies stored in enum columns. The stored text is the member name (== value)."""

from enum import StrEnum


class PositionSide(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


class PositionStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class OrderType(StrEnum):
    ENTRY = "ENTRY"
    PARTIAL_EXIT = "PARTIAL_EXIT"
    SCALE_IN = "SCALE_IN"
    FULL_EXIT = "FULL_EXIT"


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_ORDER_STATUSES


TERMINAL_ORDER_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.FAILED})


class TradeSource(StrEnum):
    LIVE = "LIVE"
    BACKTEST = "BACKTEST"
    PAPER = "PAPER"


class EventType(StrEnum):
    ENGINE_START = "ENGINE_START"
    ENGINE_STOP = "ENGINE_STOP"
    STRATEGY_CHANGE = "STRATEGY_CHANGE"
    MODEL_UPDATE = "MODEL_UPDATE"
    ERROR = "ERROR"
    WARNING = "WARNING"
    ALERT = "ALERT"
    BALANCE_ADJUSTMENT = "BALANCE_ADJUSTMENT"
    TEST = "TEST"


class PartialOperationType(StrEnum):
    PARTIAL_EXIT = "PARTIAL_EXIT"
    SCALE_IN = "SCALE_IN"


class StrategyStatus(StrEnum):
    EXPERIMENTAL = "EXPERIMENTAL"
    TESTING = "TESTING"
    PRODUCTION = "PRODUCTION"
    RETIRED = "RETIRED"
    DEPRECATED = "DEPRECATED"


ALL_ENUMS = (
    PositionSide,
    PositionStatus,
    OrderType,
    OrderStatus,
    TradeSource,
    EventType,
    PartialOperationType,
    StrategyStatus,
)
