"""Trading sessions: start and stop an engine run, with its lifecycle events and final totals."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from .. import connection, validate
from ..enums import EventType
from ..fields import to_json_safe, utc_now
from ..models import AccountHistory, SystemEvent, Trade, TradingSession
from .base import ManagerBase, request_id_of
from .metrics import running_peak
from .statements import FromParent, Rows, Slot, Statement, insert_row, insert_with_child, literal

TS = TradingSession
AH = AccountHistory

# One statement computes every total: a single aggregate over the session's trades, and the
# deepest fall of the account balance below its running peak (seeded with the initial balance,
# a window function over account_history). Sessions already ended are not matched, which makes
# ending idempotent. ROUND(…, 8) gives SQLite's floats the column's scale; PostgreSQL would round
# on assignment anyway. Constants stay literals (see `statements.literal`).
_ZERO, _EIGHT, _HUNDRED = literal("0"), literal("8"), literal("100.0")
_IN_SESSION = Slot("session")


def _end_session_query() -> pw.Node:
    count = pw.fn.COUNT(pw.SQL("*"))
    wins = pw.fn.SUM(pw.Case(None, [(Trade.pnl > _ZERO, literal("1"))], _ZERO))
    agg = (
        Trade.select(
            count.alias("trades"),
            pw.fn.COALESCE(pw.fn.SUM(Trade.pnl), _ZERO).alias("pnl"),
            pw.fn.COALESCE(
                pw.fn.ROUND(_HUNDRED * wins / pw.fn.NULLIF(count, _ZERO), _EIGHT), _ZERO
            ).alias("win_rate"),
        )
        .where(Trade.session == _IN_SESSION)
        .alias("agg")
    )
    history = (
        AH.select(AH.balance, running_peak().alias("running_peak"))
        .where(AH.session == _IN_SESSION)
        .alias("h")
    )
    initial = TS.select(TS.initial_balance).where(TS.id == _IN_SESSION).alias("s")
    peak_so_far, start = history.c.running_peak, initial.c.initial_balance
    peak = pw.Case(None, [(peak_so_far > start, peak_so_far)], start)
    running = (
        pw.Select(
            [pw.Join(history, initial, pw.JOIN.CROSS)], [history.c.balance, peak.alias("peak")]
        )
    ).alias("r")
    fall = (running.c.peak - running.c.balance) * _HUNDRED / running.c.peak
    dd = (
        pw.Select(
            [running],
            [pw.fn.COALESCE(pw.fn.ROUND(pw.fn.MAX(fall), _EIGHT), _ZERO).alias("max_drawdown")],
        )
        .where(running.c.peak > _ZERO)
        .alias("dd")
    )
    return (
        pw.ModelUpdate(
            TS,
            {
                TS.end_time: Slot("now", TS.end_time),
                TS.updated_at: Slot("now", TS.updated_at),
                TS.is_active: False,
                TS.final_balance: pw.fn.COALESCE(Slot("final_balance"), TS.final_balance),
                TS.total_trades: agg.c.trades,
                TS.total_pnl: agg.c.pnl,
                TS.win_rate: agg.c.win_rate,
                TS.max_drawdown: dd.c.max_drawdown,
            },
        )
        .from_(agg, dd)
        .where((TS.id == _IN_SESSION) & (TS.end_time.is_null() | (TS.is_active == True)))  # noqa: E712
        .returning(*(TS._meta.fields[name] for name in _TOTALS))
    )


_TOTALS = ("start_time", "end_time", "total_trades", "total_pnl", "win_rate", "max_drawdown",
           "final_balance")  # fmt: skip
_END_SESSION = Statement(_end_session_query)
_NEWEST_ACTIVE = Statement(
    lambda: (
        TS.select(TS.id)
        .where(TS.is_active == True)  # noqa: E712
        .order_by(TS.start_time.desc(), TS.id.desc())
        .limit(literal("1"))
    )
)
_ONE_SESSION = Rows(TS, lambda query: query.where(TS.id == Slot("id")))
_ENDED = Statement(
    lambda: TS.select(TS.id).where(
        (TS.id == Slot("id")) & TS.end_time.is_null(False) & (TS.is_active == False)  # noqa: E712
    )
)


# How each row this module writes is validated: the model's columns plus these rules.
_SESSION_ROW = validate.Cleaner(TS, {"initial_balance": {"non_negative": True}})


class SessionsMixin(ManagerBase):
    """Create, end and read trading sessions; the new session becomes the manager's current one."""

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
        *,
        request_id: str | None = None,
    ) -> int:
        """Insert a session and its ENGINE_START event in one transaction; it becomes current.

        Exactly once per `request_id`: a repeat returns the first call's session (which becomes
        current) and writes nothing."""
        now = utc_now()
        values = _SESSION_ROW(
            strategy_name=strategy_name,
            symbol=symbol,
            timeframe=timeframe,
            mode=mode,
            initial_balance=initial_balance,
            strategy_config=strategy_config,
            session_name=session_name,
            time_exit_config=time_exit_config,
            market_timezone=market_timezone,
        )
        if values["session_name"] is None:
            name = f"{values['strategy_name']}_{values['symbol']}_{now:%Y%m%d_%H%M%S}"
            values["session_name"] = name[:100]
        values["request_id"] = request_id_of(request_id)

        # One statement on PostgreSQL: the event's message and details take the new session's id
        # in SQL (_STARTED); two in one transaction on SQLite.
        event = _lifecycle_event(None, EventType.ENGINE_START, now, values)
        session_id = insert_with_child(
            TS, {"start_time": now, **values}, SystemEvent, event, "session", _STARTED
        )
        self._current_session_id = session_id
        return session_id

    def end_trading_session(self, session_id: int | None = None, final_balance: Any = None) -> bool:
        """Close a session, computing its totals in SQL; False when there is nothing to end.

        Retried after a lost connection: when the first attempt ended the session (and logged its
        ENGINE_STOP event), the retry returns True and writes nothing more."""
        target = self._session(session_id)
        balance = validate.money("final_balance", final_balance, optional=True)
        if target is None:
            return False

        def work() -> dict[str, Any] | None:
            totals = _close_session(target, balance)
            if totals is not None:
                _log_lifecycle(target, EventType.ENGINE_STOP, totals["end_time"], totals)
            elif connection.retrying() and _ENDED.scalar(id=target) is not None:
                return {}  # ended by this call's first attempt, whose answer was lost
            return totals

        totals = self._run_transaction(work)
        if self._current_session_id == target:
            self._current_session_id = None
        return totals is not None

    def get_active_session_id(self) -> int | None:
        """The newest session still marked active, from the database (not the current one)."""
        return self._run_statement(_NEWEST_ACTIVE.scalar)

    def get_trading_session(self, session_id: int) -> dict[str, Any] | None:
        """One session as a dict (every column), or None when there is no such session."""
        target = validate.integer("session_id", session_id, minimum=1)
        rows = self._run_statement(lambda: _ONE_SESSION.fetch(id=target))
        return rows[0] if rows else None


def _close_session(session_id: int, final_balance: Any) -> dict[str, Any] | None:
    params = {"now": utc_now(), "final_balance": final_balance, "session": session_id}
    row = _END_SESSION.execute(params).fetchone()
    if row is None:
        return None
    return {
        name: TS._meta.fields[name].python_value(value)
        for name, value in zip(_TOTALS, row, strict=True)
    }


def _log_lifecycle(
    session_id: int, event_type: EventType, when: dt.datetime, facts: dict[str, Any]
) -> None:
    insert_row(SystemEvent, _lifecycle_event(session_id, event_type, when, facts))


def _lifecycle_event(
    session_id: int | None, event_type: EventType, when: dt.datetime, facts: dict[str, Any]
) -> dict[str, Any]:
    """The ENGINE_START/ENGINE_STOP event row; without a session id (not known yet), the
    message and details leave it out and `_STARTED` puts it in."""
    started = event_type is EventType.ENGINE_START
    details = {key: value for key, value in facts.items() if key not in ("strategy_config",)}
    if not started and facts.get("start_time") and facts.get("end_time"):
        elapsed = facts["end_time"] - facts["start_time"]
        details["duration_hours"] = round(elapsed.total_seconds() / 3600, 6)
    known = {} if session_id is None else {"session_id": session_id}
    event = {
        "timestamp": when,
        "event_type": event_type,
        "severity": "info",
        "message": _lifecycle_message(session_id, started),
        "details": to_json_safe({**known, **details}),
        "component": "trading_session",
    }
    if session_id is not None:
        event["session"] = session_id
    return event


def _lifecycle_message(session_id: Any, started: bool) -> str:
    return f"Trading session {session_id} {'started' if started else 'ended'}"


# The ENGINE_START event's columns that carry the new session's id: (SQL, Python) forms.
_STARTED: dict[str, FromParent] = {
    "message": (
        lambda session_id, _slot: pw.fn.CONCAT(
            literal("'Trading session '"), session_id, literal("' started'")
        ),
        lambda session_id, _value: _lifecycle_message(session_id, True),
    ),
    "details": (
        lambda session_id, slot: pw.NodeList(
            (pw.fn.jsonb_build_object(literal("'session_id'"), session_id), pw.SQL("||"), slot)
        ),
        lambda session_id, details: {"session_id": session_id, **(details or {})},
    ),
}
