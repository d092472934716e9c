"""All atb Peewee models, bound to one `database` proxy; `ALL_MODELS` lists them parents first."""

from atb.db.models.accounts import AccountBalance, AccountHistory
from atb.db.models.base import BaseModel, database
from atb.db.models.events import (
    DynamicPerformanceMetrics,
    PerformanceMetrics,
    RiskAdjustment,
    SystemEvent,
)
from atb.db.models.market import CorrelationMatrix, MarketSession, PortfolioExposure
from atb.db.models.predictions import PredictionCache, PredictionPerformance
from atb.db.models.rollups import MetricRollup
from atb.db.models.strategies import (
    OptimizationCycle,
    StrategyExecution,
    StrategyLineage,
    StrategyPerformance,
    StrategyRegistry,
    StrategyVersion,
)
from atb.db.models.trading import Order, PartialTrade, Position, Trade, TradingSession

ALL_MODELS = (
    TradingSession,
    MarketSession,
    CorrelationMatrix,
    PortfolioExposure,
    PredictionCache,
    PredictionPerformance,
    StrategyRegistry,
    Position,
    AccountHistory,
    AccountBalance,
    PerformanceMetrics,
    SystemEvent,
    OptimizationCycle,
    DynamicPerformanceMetrics,
    RiskAdjustment,
    StrategyVersion,
    StrategyPerformance,
    StrategyLineage,
    Order,
    PartialTrade,
    Trade,
    StrategyExecution,
    MetricRollup,
)

MODELS_BY_TABLE = {model._meta.table_name: model for model in ALL_MODELS}

__all__ = [
    "ALL_MODELS",
    "MODELS_BY_TABLE",
    "AccountBalance",
    "AccountHistory",
    "BaseModel",
    "CorrelationMatrix",
    "DynamicPerformanceMetrics",
    "MarketSession",
    "MetricRollup",
    "OptimizationCycle",
    "Order",
    "PartialTrade",
    "PerformanceMetrics",
    "PortfolioExposure",
    "Position",
    "PredictionCache",
    "PredictionPerformance",
    "RiskAdjustment",
    "StrategyExecution",
    "StrategyLineage",
    "StrategyPerformance",
    "StrategyRegistry",
    "StrategyVersion",
    "SystemEvent",
    "Trade",
    "TradingSession",
    "database",
]
