"""Trading sessions: start and stop an engine run, with its lifecycle events and final totals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import validate
from ..enums import EventType
from ..fields import to_json_safe, utc_now
from ..models import SystemEvent, TradingSession
from .statements import execute_template, insert_row, select_rows

TS = TradingSession

# One statement computes every total: a single aggregate over the session's trades, and the
# deepest fall of the account balance below its running peak (seeded with the initial balance,
# a window function over account_history). `{p}` is the backend's placeholder. Sessions already
# ended are not matched, which makes ending idempotent. ROUND(…, 8) gives SQLite's floats the
# column's scale; PostgreSQL would round on assignment anyway.
_END_SESSION_SQL = """
UPDATE trading_sessions
SET end_time = {p}, updated_at = {p}, is_active = {p},
    final_balance = COALESCE({p}, trading_sessions.final_balance),
    total_trades = agg.trades, total_pnl = agg.pnl, win_rate = agg.win_rate,
    max_drawdown = dd.max_drawdown
FROM (
    SELECT COUNT(*) AS trades,
           COALESCE(SUM(pnl), 0) AS pnl,
           COALESCE(
               ROUND(100.0 * SUM(CASE WHEN pnl > 0 THEN 1 ELSE 0 END) / NULLIF(COUNT(*), 0), 8), 0
           ) AS win_rate
    FROM trades WHERE session_id = {p}
) AS agg, (
    SELECT COALESCE(ROUND(MAX((r.peak - r.balance) * 100.0 / r.peak), 8), 0) AS max_drawdown
    FROM (
        SELECT h.balance,
               CASE WHEN h.running_peak > s.initial_balance THEN h.running_peak
                    ELSE s.initial_balance END AS peak
        FROM (
            SELECT balance,
                   MAX(balance) OVER (
                       ORDER BY timestamp, id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS running_peak
            FROM account_history WHERE session_id = {p}
        ) AS h
        CROSS JOIN (SELECT initial_balance FROM trading_sessions WHERE id = {p}) AS s
    ) AS r
    WHERE r.peak > 0
) AS dd
WHERE trading_sessions.id = {p}
  AND (trading_sessions.end_time IS NULL OR trading_sessions.is_active = {p})
RETURNING trading_sessions.start_time, trading_sessions.end_time, trading_sessions.total_trades,
          trading_sessions.total_pnl, trading_sessions.win_rate, trading_sessions.max_drawdown,
          trading_sessions.final_balance
"""
_TOTALS = ("start_time", "end_time", "total_trades", "total_pnl", "win_rate", "max_drawdown",
           "final_balance")  # fmt: skip


class SessionsMixin:
    """Create, end and read trading sessions; the new session becomes the manager's current one."""

    _current_session_id: int | None

    def create_trading_session(
        self,
        strategy_name: str,
        symbol: str,
        timeframe: str,
        mode: Any,
        initial_balance: Any,
        strategy_config: Any = None,
        session_name: str | None = None,
        time_exit_config: Any = None,
        market_timezone: str | None = None,
    ) -> int:
        """Insert a session and its ENGINE_START event in one transaction; it becomes current."""
        now = utc_now()
        values = {
            "strategy_name": validate.text("strategy_name", strategy_name, 100),
            "symbol": validate.text("symbol", symbol, 20),
            "timeframe": validate.text("timeframe", timeframe, 10),
            "mode": validate.trade_source(mode, "mode"),
            "initial_balance": validate.money(
                "initial_balance", initial_balance, non_negative=True
            ),
            "strategy_config": validate.json_payload("strategy_config", strategy_config),
            "session_name": validate.text("session_name", session_name, 100, optional=True),
            "time_exit_config": validate.json_payload("time_exit_config", time_exit_config),
            "market_timezone": validate.text("market_timezone", market_timezone, 50, optional=True),
        }
        if values["session_name"] is None:
            name = f"{values['strategy_name']}_{values['symbol']}_{now:%Y%m%d_%H%M%S}"
            values["session_name"] = name[:100]

        def work() -> int:
            session_id = insert_row(TS, {"start_time": now, **values})
            _log_lifecycle(session_id, EventType.ENGINE_START, now, values)
            return session_id

        session_id = self._write(work)
        self._current_session_id = session_id
        return session_id

    def end_trading_session(self, session_id: int | None = None, final_balance: Any = None) -> bool:
        """Close a session, computing its totals in SQL; False when there is nothing to end."""
        target = self._session(session_id)
        balance = validate.money("final_balance", final_balance, optional=True)
        if target is None:
            return False

        def work() -> dict[str, Any] | None:
            totals = _close_session(target, balance)
            if totals is not None:
                _log_lifecycle(target, EventType.ENGINE_STOP, totals["end_time"], totals)
            return totals

        totals = self._write(work)
        if self._current_session_id == target:
            self._current_session_id = None
        return totals is not None

    def get_active_session_id(self) -> int | None:
        """The newest session still marked active, from the database (not the current one)."""
        sql = "SELECT id FROM trading_sessions WHERE is_active = {p} ORDER BY start_time DESC, id DESC"
        row = self._one(lambda: execute_template(sql + " LIMIT 1", (True,)).fetchone())
        return row[0] if row else None

    def get_trading_session(self, session_id: int) -> dict[str, Any] | None:
        """One session as a dict (every column), or None when there is no such session."""
        target = validate.integer("session_id", session_id, minimum=1)
        rows = self._one(lambda: select_rows(TS, "id = {p}", (target,)))
        return rows[0] if rows else None


def _close_session(session_id: int, final_balance: Any) -> dict[str, Any] | None:
    now = TS.end_time.db_value(utc_now())
    params = (now, now, False, final_balance, session_id, session_id, session_id, session_id, True)
    row = execute_template(_END_SESSION_SQL, params).fetchone()
    if row is None:
        return None
    return {
        name: TS._meta.fields[name].python_value(value)
        for name, value in zip(_TOTALS, row, strict=True)
    }


def _log_lifecycle(
    session_id: int, event_type: EventType, when: dt.datetime, facts: dict[str, Any]
) -> None:
    started = event_type is EventType.ENGINE_START
    details = {key: value for key, value in facts.items() if key not in ("strategy_config",)}
    if not started and facts.get("start_time") and facts.get("end_time"):
        elapsed = facts["end_time"] - facts["start_time"]
        details["duration_hours"] = round(elapsed.total_seconds() / 3600, 6)
    event = {
        "timestamp": when,
        "event_type": event_type,
        "severity": "info",
        "message": f"Trading session {session_id} {'started' if started else 'ended'}",
        "details": to_json_safe({"session_id": session_id, **details}),
        "component": "trading_session",
        "session": session_id,
    }
    insert_row(SystemEvent, event)
