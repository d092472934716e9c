"""Housekeeping: drop finished sessions past their retention with everything they own; count rows.

Cleanup is a fixed plan of set-based DELETEs (children before parents) in one transaction, each
`WHERE ... IN (the old sessions)`: no per-row loops, so it costs the same for 10 rows or 10 million,
and a failure part-way leaves nothing deleted. The foreign keys' ON DELETE rules are not relied on:
most references to a session are SET NULL, which would orphan rows rather than remove them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from .. import validate
from ..fields import utc_now
from ..models import (
    ALL_MODELS,
    AccountBalance,
    AccountHistory,
    DynamicPerformanceMetrics,
    OptimizationCycle,
    Order,
    PartialTrade,
    PerformanceMetrics,
    Position,
    RiskAdjustment,
    StrategyExecution,
    SystemEvent,
    Trade,
    TradingSession,
)
from .base import ManagerBase


def _old_sessions(cutoff: dt.datetime) -> pw.Select:
    """Ids of sessions that ended before `cutoff` and are not marked active."""
    return TradingSession.select(TradingSession.id).where(
        TradingSession.end_time.is_null(False)
        & (TradingSession.end_time < cutoff)
        & ((TradingSession.is_active == False) | TradingSession.is_active.is_null())  # noqa: E712
    )


def _cleanup_plan(cutoff: dt.datetime) -> list[tuple[type[pw.Model], pw.Expression]]:
    """(model, rows to delete) in a safe order: every child before what it references."""
    old = _old_sessions(cutoff)
    old_positions = Position.select(Position.id).where(Position.session.in_(old))
    by_session = [
        (model, model.session.in_(old))
        for model in (
            AccountHistory,
            AccountBalance,
            SystemEvent,
            PerformanceMetrics,
            DynamicPerformanceMetrics,
            RiskAdjustment,
            OptimizationCycle,
        )
    ]
    return [
        (StrategyExecution, StrategyExecution.session.in_(old)),
        (Trade, Trade.session.in_(old)),
        (PartialTrade, PartialTrade.position.in_(old_positions)),
        (Order, Order.session.in_(old) | Order.position.in_(old_positions)),
        (Position, Position.session.in_(old)),
        *by_session,
        (TradingSession, TradingSession.id.in_(old)),
    ]


class MaintenanceMixin(ManagerBase):
    """cleanup_old_data and get_table_stats."""

    def cleanup_old_data(self, days_to_keep: int = 90, *, dry_run: bool = False) -> dict[str, int]:
        """Delete sessions that ended more than `days_to_keep` days ago with all their rows.

        Active and recently ended sessions stay. Returns {table: rows deleted} (children first);
        with `dry_run` nothing is deleted and the counts say what would be.
        """
        days = validate.integer("days_to_keep", days_to_keep, minimum=0, maximum=100_000)
        dry_run = validate.flag("dry_run", dry_run)
        plan = _cleanup_plan(utc_now() - dt.timedelta(days=days))

        def count() -> dict[str, int]:
            return {
                model._meta.table_name: model.select().where(condition).count()
                for model, condition in plan
            }

        def delete() -> dict[str, int]:
            return {
                model._meta.table_name: model.delete().where(condition).execute()
                for model, condition in plan
            }

        return self._run_transaction(count if dry_run else delete)

    def get_table_stats(self) -> dict[str, int]:
        """Exact row counts of every atb table, in one UNION ALL query."""
        parts = [
            model.select(pw.Value(model._meta.table_name).alias("name"), pw.fn.COUNT(pw.SQL("*")))
            for model in ALL_MODELS
        ]
        union: Any = parts[0]
        for part in parts[1:]:
            union = union.union_all(part)
        rows = self._run_statement(lambda: list(union.tuples()))
        counts = {name: int(rows_) for name, rows_ in rows}
        return {
            model._meta.table_name: counts.get(model._meta.table_name, 0) for model in ALL_MODELS
        }
