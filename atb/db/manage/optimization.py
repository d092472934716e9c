"""The optimizer's history: one row per cycle (baseline, candidate, validation, decision)."""

from __future__ import annotations

from typing import Any

from .. import validate
from ..models import OptimizationCycle
from .base import ManagerBase, request_id_of
from .statements import insert_row

_JSON_COLUMNS = ("baseline_metrics", "candidate_params", "candidate_metrics", "validator_report")


# How each row this module writes is validated: the model's columns plus these rules.
_CYCLE_ROW = validate.Cleaner(OptimizationCycle)


class OptimizationMixin(ManagerBase):
    """record_optimization_cycle and fetch_optimization_cycles."""

    def record_optimization_cycle(
        self,
        strategy_name: str,
        symbol: str,
        timeframe: str,
        baseline_metrics: Any,
        candidate_params: Any,
        candidate_metrics: Any,
        validator_report: Any,
        decision: str | None,
        session_id: int | None = None,
        *,
        request_id: str | None = None,
    ) -> int:
        """Insert one optimizer cycle (JSON payloads sanitised; unset stays SQL NULL). Returns its id.

        `decision` is free text up to 20 characters ('propose', 'reject', 'apply' by convention).
        Exactly once per `request_id`: a repeat returns the first call's id, writing nothing.
        """
        row = _CYCLE_ROW(
            strategy_name=strategy_name,
            symbol=symbol,
            timeframe=timeframe,
            decision=decision,
            baseline_metrics=baseline_metrics,
            candidate_params=candidate_params,
            candidate_metrics=candidate_metrics,
            validator_report=validator_report,
        )
        row["session"] = self._session(session_id)
        row["request_id"] = request_id_of(request_id)
        return self._run_statement(lambda: insert_row(OptimizationCycle, row))

    def fetch_optimization_cycles(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Cycles newest first as plain dicts; an unset JSON value reads as `{}`."""
        limit = validate.integer("limit", limit, minimum=1)
        offset = validate.integer("offset", offset, minimum=0)
        query = (
            OptimizationCycle.select()
            .order_by(OptimizationCycle.timestamp.desc(), OptimizationCycle.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return self._dashboard_read(lambda: [_cycle_dict(cycle) for cycle in query])


def _cycle_dict(cycle: OptimizationCycle) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": cycle.id,
        "timestamp": cycle.timestamp.isoformat() if cycle.timestamp else None,
        "strategy_name": cycle.strategy_name,
        "symbol": cycle.symbol,
        "timeframe": cycle.timeframe,
    }
    for name in _JSON_COLUMNS:
        value = getattr(cycle, name)
        row[name] = {} if value is None else value
    row["decision"] = cycle.decision
    row["session_id"] = cycle.session_id
    return row
