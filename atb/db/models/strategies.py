"""Strategy decisions, optimizer cycles, and the registry of strategy definitions with their history."""

from __future__ import annotations

import peewee as pw

from atb.db.enums import StrategyStatus
from atb.db.fields import (
    CountField,
    EnumField,
    FlagField,
    JsonField,
    MoneyField,
    UTCDateTimeField,
)
from atb.db.models.base import BaseModel, request_key
from atb.db.models.trading import Trade, session_link


class StrategyExecution(BaseModel):
    """One strategy decision or evaluation: the signal, its inputs, the action taken, the resulting trade."""

    timestamp = UTCDateTimeField(index=True)
    strategy_name = pw.CharField(max_length=100)
    symbol = pw.CharField(max_length=20)
    timeframe = pw.CharField(max_length=10, null=True)
    signal_type = pw.CharField(max_length=20, null=True)
    signal_strength = MoneyField(null=True)
    confidence_score = MoneyField(null=True)
    indicators = JsonField(null=True)
    sentiment_data = JsonField(null=True)
    ml_predictions = JsonField(null=True)
    action_taken = pw.CharField(max_length=50, null=True)
    position_size = MoneyField(null=True)
    reasons = JsonField(null=True)
    price = MoneyField(null=True)
    volume = MoneyField(null=True)
    volatility = MoneyField(null=True)
    # Indexed by the composite (session_id, timestamp) below.
    session = session_link("strategy_executions", index=False)
    trade = pw.ForeignKeyField(
        Trade,
        column_name="trade_id",
        null=True,
        backref="strategy_executions",
        on_delete="SET NULL",
    )
    created_at = UTCDateTimeField(server_now=True, null=True)

    request_id = request_key()

    class Meta:
        table_name = "strategy_executions"
        indexes = ((("session_id", "timestamp"), False),)


class OptimizationCycle(BaseModel):
    """One optimizer cycle: baseline KPIs, proposed parameters and their KPIs, validation and decision."""

    _touch_on_update = ("updated_at",)

    timestamp = UTCDateTimeField(server_now=True, index=True)
    strategy_name = pw.CharField(max_length=100)
    symbol = pw.CharField(max_length=20)
    timeframe = pw.CharField(max_length=10)
    baseline_metrics = JsonField(null=True)
    candidate_params = JsonField(null=True)
    candidate_metrics = JsonField(null=True)
    validator_report = JsonField(null=True)
    decision = pw.CharField(max_length=20, null=True)
    session = session_link("optimization_cycles")
    session_id: int | None  # the foreign key's raw value (peewee's accessor)
    created_at = UTCDateTimeField(server_now=True, null=True)
    updated_at = UTCDateTimeField(server_now=True, null=True)

    request_id = request_key()

    class Meta:
        table_name = "optimization_cycles"
        indexes = ((("strategy_name", "symbol", "timeframe"), False),)


class StrategyRegistry(BaseModel):
    """One registered strategy definition: stable id, lineage, status, component configs and hashes."""

    _touch_on_update = ("updated_at",)

    strategy_id = pw.CharField(max_length=100, unique=True)
    # Indexed by the unique (name, version) below.
    name = pw.CharField(max_length=200)
    version = pw.CharField(max_length=20)
    # A parent strategy_id. No FK: it would forbid inserting a child before its parent.
    # Indexed by the composite (parent_id, created_at) below.
    parent_id = pw.CharField(max_length=100, null=True)
    lineage_path = JsonField(null=True, default=list)
    branch_name = pw.CharField(max_length=100, null=True)
    merge_source = pw.CharField(max_length=100, null=True)
    created_at = UTCDateTimeField(server_now=True, index=True)
    created_by = pw.CharField(max_length=100)
    description = pw.TextField(null=True)
    tags = JsonField(null=True, default=list)
    status = EnumField(
        StrategyStatus,
        server_default=StrategyStatus.EXPERIMENTAL.value,
        default=StrategyStatus.EXPERIMENTAL,
    )
    signal_generator_config = JsonField()
    risk_manager_config = JsonField()
    position_sizer_config = JsonField()
    regime_detector_config = JsonField()
    parameters = JsonField(null=True, default=dict)
    performance_summary = JsonField(null=True)
    validation_results = JsonField(null=True)
    config_hash = pw.CharField(max_length=64, index=True)
    component_hash = pw.CharField(max_length=64, index=True)
    created_at_db = UTCDateTimeField(server_now=True, null=True)
    updated_at = UTCDateTimeField(server_now=True, null=True)

    class Meta:
        table_name = "strategy_registry"
        indexes = (
            (("name", "version"), True),
            (("status", "created_at"), False),
            (("parent_id", "created_at"), False),
        )


class StrategyVersion(BaseModel):
    """One version of a registered strategy: its changes and the diff against the previous version."""

    # Indexed by the unique (strategy_id, version) below.
    strategy = pw.ForeignKeyField(
        StrategyRegistry,
        field="strategy_id",
        column_name="strategy_id",
        index=False,
        backref="versions",
        on_delete="CASCADE",
    )
    version = pw.CharField(max_length=20)
    created_at = UTCDateTimeField(server_now=True, index=True)
    changes = JsonField()
    performance_delta = JsonField(null=True)
    is_major = FlagField(null=True)
    component_changes = JsonField(null=True)
    parameter_changes = JsonField(null=True)
    created_at_db = UTCDateTimeField(server_now=True, null=True)

    class Meta:
        table_name = "strategy_versions"
        indexes = (
            (("strategy_id", "version"), True),
            (("strategy_id", "created_at"), False),
        )


class StrategyPerformance(BaseModel):
    """Results of one strategy version over one backtest, paper or live period."""

    _touch_on_update = ("updated_at",)

    # Indexed by the composite (strategy_id, period_start, period_end) below.
    strategy = pw.ForeignKeyField(
        StrategyRegistry,
        field="strategy_id",
        column_name="strategy_id",
        index=False,
        backref="performance_records",
        on_delete="CASCADE",
    )
    version = pw.CharField(max_length=20)
    period_start = UTCDateTimeField(index=True)
    period_end = UTCDateTimeField(index=True)
    period_type = pw.CharField(max_length=20)
    total_return = MoneyField()
    total_return_pct = MoneyField()
    sharpe_ratio = MoneyField(null=True)
    max_drawdown = MoneyField(null=True)
    win_rate = MoneyField(null=True)
    total_trades = CountField(null=True)
    winning_trades = CountField(null=True)
    losing_trades = CountField(null=True)
    avg_trade_duration_hours = MoneyField(null=True)
    volatility = MoneyField(null=True)
    sortino_ratio = MoneyField(null=True)
    calmar_ratio = MoneyField(null=True)
    var_95 = MoneyField(null=True)
    signal_generator_contribution = MoneyField(null=True)
    risk_manager_contribution = MoneyField(null=True)
    position_sizer_contribution = MoneyField(null=True)
    regime_performance = JsonField(null=True)
    additional_metrics = JsonField(null=True, default=dict)
    test_symbol = pw.CharField(max_length=20, null=True)
    test_timeframe = pw.CharField(max_length=10, null=True)
    test_parameters = JsonField(null=True)
    created_at = UTCDateTimeField(server_now=True, null=True)
    updated_at = UTCDateTimeField(server_now=True, null=True)

    class Meta:
        table_name = "strategy_performance"
        indexes = (
            (("strategy_id", "period_start", "period_end"), False),
            (("total_return_pct", "sharpe_ratio"), False),
            (("period_type", "period_start"), False),
        )


class StrategyLineage(BaseModel):
    """One ancestor-to-descendant link in strategy evolution, with the reason and the deltas."""

    # Both FKs are indexed by the composites below.
    ancestor = pw.ForeignKeyField(
        StrategyRegistry,
        field="strategy_id",
        column_name="ancestor_id",
        index=False,
        backref="lineage_as_ancestor",
        on_delete="CASCADE",
    )
    descendant = pw.ForeignKeyField(
        StrategyRegistry,
        field="strategy_id",
        column_name="descendant_id",
        index=False,
        backref="lineage_as_descendant",
        on_delete="CASCADE",
    )
    relationship_type = pw.CharField(max_length=20)
    generation_distance = pw.IntegerField()
    created_at = UTCDateTimeField(server_now=True)
    evolution_reason = pw.CharField(max_length=200, null=True)
    change_impact = JsonField(null=True)
    performance_improvement = MoneyField(null=True)
    risk_change = MoneyField(null=True)
    created_at_db = UTCDateTimeField(server_now=True, null=True)

    class Meta:
        table_name = "strategy_lineage"
        indexes = (
            (("ancestor_id", "descendant_id"), True),
            (("ancestor_id", "generation_distance"), False),
            (("descendant_id", "generation_distance"), False),
        )
