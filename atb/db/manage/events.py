"""System events and strategy decisions: the engine's audit trail.

Each log call is one INSERT (one round trip, no BEGIN/COMMIT); the bulk path for backtests
validates every row first and then writes them in batches inside one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from .. import validate
from ..enums import EventType
from ..errors import ValidationError
from ..fields import utc_now
from ..models import StrategyExecution, SystemEvent
from .base import ManagerBase, request_id_of
from .statements import BATCH_REQUEST_ID_LENGTH, insert_row, stored_batch

SEVERITIES = ("info", "warning", "error", "critical")
BULK_BATCH_SIZE = 1000

_EXECUTION_PARAMS = (
    "strategy_name",
    "symbol",
    "signal_type",
    "action_taken",
    "price",
    "timeframe",
    "signal_strength",
    "confidence_score",
    "indicators",
    "sentiment_data",
    "ml_predictions",
    "position_size",
    "reasons",
    "volume",
    "volatility",
    "session_id",
    "trade_id",
    "timestamp",
)
_EXECUTION_RULES = {
    "price": {"positive": True},
    **{name: {"non_negative": True} for name in ("position_size", "volume", "volatility")},
}
_EXECUTION_REQUIRED = ("strategy_name", "symbol", "signal_type", "action_taken", "price")


# How each row this module writes is validated: the model's columns plus these rules.
_EVENT_ROW = validate.Cleaner(
    SystemEvent, {"stack_trace": {"allow_empty": True}, "message": {"optional": False}}
)
_EXECUTION_ROW = validate.Cleaner(StrategyExecution, _EXECUTION_RULES)


class EventsMixin(ManagerBase):
    """log_event / get_recent_events, and strategy executions one at a time or in bulk."""

    def log_event(
        self,
        event_type: EventType | str,
        message: str,
        severity: str = "info",
        details: Any = None,
        component: str | None = None,
        error_code: str | None = None,
        stack_trace: str | None = None,
        alert_sent: bool = False,
        alert_method: str | None = None,
        session_id: int | None = None,
        timestamp: dt.datetime | None = None,
        *,
        request_id: str | None = None,
    ) -> int:
        """Record a system event; `details` is stored as sanitised JSON. Returns the event id.

        Exactly once per `request_id`: a repeat returns the first call's id, writing nothing."""
        now = utc_now()
        row = _EVENT_ROW(
            timestamp=now if timestamp is None else timestamp,
            event_type=event_type,
            message=message,
            details=details,
            component=component,
            error_code=error_code,
            stack_trace=stack_trace,
            alert_sent=False if alert_sent is None else alert_sent,
            alert_method=alert_method,
        )
        row.update(
            severity=validate.choice("severity", severity, SEVERITIES),
            session=self._session(session_id),
            created_at=now,
            request_id=request_id_of(request_id),
        )
        return self._run_statement(lambda: insert_row(SystemEvent, row))

    def get_recent_events(
        self,
        limit: int = 100,
        severity: str | None = None,
        event_type: EventType | str | None = None,
        session_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Events newest first; filtered by severity/type, and by the session (explicit or current)."""
        limit = validate.integer("limit", limit, minimum=1)
        query = SystemEvent.select()
        if severity is not None:
            query = query.where(
                SystemEvent.severity == validate.choice("severity", severity, SEVERITIES)
            )
        if event_type is not None:
            query = query.where(
                SystemEvent.event_type == validate.enum_value("event_type", event_type, EventType)
            )
        sid = self._session(session_id)
        if sid is not None:
            query = query.where(SystemEvent.session == sid)
        query = query.order_by(SystemEvent.timestamp.desc(), SystemEvent.id.desc()).limit(limit)
        return self._dashboard_read(lambda: [_event_dict(event) for event in query])

    def log_strategy_execution(
        self,
        strategy_name: str,
        symbol: str,
        signal_type: str,
        action_taken: str,
        price: Any,
        timeframe: str | None = None,
        signal_strength: Any = None,
        confidence_score: Any = None,
        indicators: Any = None,
        sentiment_data: Any = None,
        ml_predictions: Any = None,
        position_size: Any = None,
        reasons: Any = None,
        volume: Any = None,
        volatility: Any = None,
        session_id: int | None = None,
        trade_id: int | None = None,
        *,
        timestamp: dt.datetime | None = None,
        request_id: str | None = None,
    ) -> int:
        """Record one strategy decision with its inputs (JSON sanitised). Returns the row id.

        Exactly once per `request_id`: a repeat returns the first call's id, writing nothing."""
        row = self._execution_row(
            strategy_name=strategy_name,
            symbol=symbol,
            signal_type=signal_type,
            action_taken=action_taken,
            price=price,
            timeframe=timeframe,
            signal_strength=signal_strength,
            confidence_score=confidence_score,
            indicators=indicators,
            sentiment_data=sentiment_data,
            ml_predictions=ml_predictions,
            position_size=position_size,
            reasons=reasons,
            volume=volume,
            volatility=volatility,
            session_id=session_id,
            trade_id=trade_id,
            timestamp=timestamp,
        )
        row["request_id"] = request_id_of(request_id)
        return self._run_statement(lambda: insert_row(StrategyExecution, row))

    def log_strategy_executions(
        self, rows: Iterable[Mapping[str, Any]], *, request_id: str | None = None
    ) -> list[int]:
        """Bulk version for backtests: every row is validated first, then all are written in
        batches of 1,000 in one transaction (all or nothing). Row keys are the single method's
        parameter names. Returns the new ids in input order. Exactly once per `request_id` (at
        most 88 characters: row i stores `<id>#<i>`): a repeat returns the first call's ids.
        """
        batch_id = request_id_of(request_id, max_length=BATCH_REQUEST_ID_LENGTH)
        clean = []
        for index, raw in enumerate(rows):
            if not isinstance(raw, Mapping):
                raise ValidationError(f"rows[{index}]", f"{raw!r} is not a mapping")
            unknown = sorted(set(raw) - set(_EXECUTION_PARAMS))
            if unknown:
                raise ValidationError(
                    f"rows[{index}]",
                    f"unknown keys {', '.join(map(str, unknown))}; allowed: "
                    + ", ".join(_EXECUTION_PARAMS),
                )
            missing = [key for key in _EXECUTION_REQUIRED if key not in raw]
            if missing:
                raise ValidationError(f"rows[{index}]", f"missing {', '.join(missing)}")
            try:
                clean.append(self._execution_row(**raw))
            except ValidationError as exc:
                raise ValidationError(f"rows[{index}].{exc.field}", str(exc)) from None
        if not clean:
            return []
        for index, row in enumerate(clean):
            row["request_id"] = f"{batch_id}#{index}"
        dict_rows = clean

        def work() -> list[int]:
            stored = stored_batch(StrategyExecution, dict_rows)
            if stored is not None:
                return stored
            ids: list[int] = []
            for start in range(0, len(dict_rows), BULK_BATCH_SIZE):
                batch = dict_rows[start : start + BULK_BATCH_SIZE]
                cursor = (
                    StrategyExecution.insert_many(batch)
                    .returning(StrategyExecution.id)
                    .tuples()
                    .execute()
                )
                ids.extend(row[0] for row in cursor)
            return ids

        return self._run_transaction(work)

    def _execution_row(
        self,
        strategy_name: Any,
        symbol: Any,
        signal_type: Any,
        action_taken: Any,
        price: Any,
        timeframe: Any = None,
        signal_strength: Any = None,
        confidence_score: Any = None,
        indicators: Any = None,
        sentiment_data: Any = None,
        ml_predictions: Any = None,
        position_size: Any = None,
        reasons: Any = None,
        volume: Any = None,
        volatility: Any = None,
        session_id: Any = None,
        trade_id: Any = None,
        timestamp: Any = None,
    ) -> dict[str, Any]:
        row = _EXECUTION_ROW(
            timestamp=utc_now() if timestamp is None else timestamp,
            strategy_name=strategy_name,
            symbol=symbol,
            timeframe=timeframe,
            signal_type=signal_type,
            signal_strength=signal_strength,
            confidence_score=confidence_score,
            indicators=indicators,
            sentiment_data=sentiment_data,
            ml_predictions=ml_predictions,
            action_taken=action_taken,
            position_size=position_size,
            reasons=reasons,
            price=price,
            volume=volume,
            volatility=volatility,
            trade=trade_id,
        )
        row["session"] = self._session(session_id)
        return row


def _event_dict(event: SystemEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "timestamp": event.timestamp,
        "event_type": event.event_type.value,
        "severity": event.severity,
        "message": event.message,
        "details": event.details if event.details is not None else {},
        "component": event.component,
        "error_code": event.error_code,
        "stack_trace": event.stack_trace,
        "alert_sent": bool(event.alert_sent),
        "alert_method": event.alert_method,
        "session_id": event.session_id,
    }
