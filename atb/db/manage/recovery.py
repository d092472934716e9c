"""Restart recovery: what an engine needs to carry on after a crash, a deploy or a clean stop.

`resume_trading_session` reads the whole picture in one consistent snapshot (REPEATABLE READ on
PostgreSQL) and a fixed number of statements, whatever the size of the tables.
`recover_last_balance` is the one recovery call that writes: a session without a ledger row gets
one, rebuilt from its initial balance and its trades, so the next restart finds it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import peewee as pw

from .. import connection
from ..fields import utc_now
from ..models import AccountBalance, AccountHistory, Trade, TradingSession
from .accounts import ledger_time, lock_session_ledger
from .base import ManagerBase

TS = TradingSession
RECOVERED_REASON = "recovered_from_trades"
_SCALE = Decimal("0.00000001")


def _ledger_balance(sid: Any, before: dt.datetime | None = None) -> Any:
    """The session's newest ledger balance (optionally: newest before `before`)."""
    query = AccountBalance.select(AccountBalance.total_balance).where(AccountBalance.session == sid)
    if before is not None:
        query = query.where(AccountBalance.last_updated < before)
    return query.order_by(AccountBalance.last_updated.desc(), AccountBalance.id.desc()).limit(1)


def _pnl_sum(sid: Any, before: dt.datetime | None = None) -> Any:
    """The sum of the session's closed-trade pnl (optionally: of trades closed before `before`)."""
    query = Trade.select(pw.fn.COALESCE(pw.fn.SUM(Trade.pnl), 0)).where(Trade.session == sid)
    if before is not None:
        query = query.where(Trade.exit_time < before)
    return query


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(_SCALE)


def _start_of_utc_day(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


class RecoveryMixin(ManagerBase):
    """resume_trading_session, get_last_session_id, recover_last_balance."""

    if TYPE_CHECKING:  # provided by the sessions, positions and orders mixins

        def get_active_session_id(self) -> int | None: ...
        def get_trading_session(self, session_id: int) -> dict[str, Any] | None: ...
        def get_active_positions(self, session_id: int | None = None) -> list[dict[str, Any]]: ...
        def get_pending_orders(self, session_id: int | None = None) -> list[dict[str, Any]]: ...

    def get_last_session_id(self, include_active: bool = False) -> int | None:
        """The newest ended session (to carry its balance forward after a clean restart);
        with `include_active=True`, the newest session of any state. None when there is none."""
        query = TS.select(TS.id).order_by(TS.start_time.desc(), TS.id.desc()).limit(1)
        if not include_active:
            query = query.where(TS.end_time.is_null(False))
        return self._run_statement(query.scalar)

    def recover_last_balance(self, session_id: int | None = None) -> float | None:
        """The session's balance for a restart: its newest ledger row (even 0) as it is; without
        one, its initial balance plus the pnl of its trades, recorded as a ledger row (reason
        `recovered_from_trades`) so the next restart reads it. None without a session or for an
        unknown one. Retry-safe: a second call finds the row the first one wrote."""
        sid = self._session(session_id)
        if sid is None:
            return None

        def work() -> float | None:
            if not lock_session_ledger(sid):  # one recovery (or balance change) at a time
                return None
            initial = TS.select(TS.initial_balance).where(TS.id == sid).scalar()
            ledger = _ledger_balance(sid).scalar()
            if ledger is not None:
                return float(ledger)
            balance = _money(initial) + _money(_pnl_sum(sid).scalar())
            AccountBalance.insert(
                {
                    AccountBalance.session: sid,
                    AccountBalance.base_currency: "USD",
                    AccountBalance.total_balance: balance,
                    AccountBalance.available_balance: balance,
                    AccountBalance.reserved_balance: 0,
                    AccountBalance.asset_balances: {},
                    AccountBalance.last_updated: ledger_time(),
                    AccountBalance.updated_by: "system",
                    AccountBalance.update_reason: RECOVERED_REASON,
                }
            ).execute()
            return float(balance)

        return self._run_transaction(work)

    def resume_trading_session(self, session_id: int | None = None) -> dict[str, Any] | None:
        """Everything an engine needs after a restart, read in one consistent snapshot.

        The given session, or the newest active one: the session (as `get_trading_session`), its
        open positions with their orders, its working orders (PENDING / OPEN /
        PARTIALLY_FILLED), its balance (newest ledger row, else initial balance plus trade pnl;
        `balance_source` says which), its peak equity (for drawdown after the restart) and its
        balance at the start of the current UTC day. At most seven statements, whatever the table
        sizes;
        writes nothing (see `recover_last_balance` to record a rebuilt balance). It becomes the
        manager's current session. None when there is nothing to resume.
        """
        explicit = self._session(session_id) if session_id is not None else None
        day_start = _start_of_utc_day(utc_now())
        nested = connection.bound_database().in_transaction()

        def work() -> dict[str, Any] | None:
            if connection.is_postgres() and not nested:
                connection.bound_database().execute_sql(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                )
            sid = explicit if explicit is not None else self.get_active_session_id()
            session = None if sid is None else self.get_trading_session(sid)
            if sid is None or session is None:
                return None
            figures = self._balance_figures(sid, day_start)
            return {
                "session": session,
                "positions": self.get_active_positions(sid),
                "orders": self.get_pending_orders(sid),
                **figures,
                "day_start": day_start,
            }

        state = self._run_transaction(work)
        if state is not None:
            self._current_session_id = state["session"]["id"]
        return state

    @staticmethod
    def _balance_figures(sid: int, day_start: dt.datetime) -> dict[str, Any]:
        """Balance, its source, peak equity and the day-start balance: one statement."""
        peak_snapshot = AccountHistory.select(pw.fn.MAX(AccountHistory.equity)).where(
            AccountHistory.session == sid
        )
        peak_ledger = AccountBalance.select(pw.fn.MAX(AccountBalance.total_balance)).where(
            AccountBalance.session == sid
        )
        query = TS.select(
            TS.initial_balance,
            _ledger_balance(sid).alias("ledger"),
            _pnl_sum(sid).alias("pnl"),
            _ledger_balance(sid, before=day_start).alias("ledger_day_start"),
            _pnl_sum(sid, before=day_start).alias("pnl_day_start"),
            peak_snapshot.alias("peak_snapshot"),
            peak_ledger.alias("peak_ledger"),
        ).where(TS.id == sid)
        row: Any = query.tuples().get()
        initial, ledger, pnl, ledger_day, pnl_day, peak_snapshot, peak_ledger = row
        initial = _money(initial)
        from_trades = initial + _money(pnl)
        balance = _money(ledger) if ledger is not None else from_trades
        day_balance = _money(ledger_day) if ledger_day is not None else initial + _money(pnl_day)
        peaks = [initial, balance]
        peaks += [_money(v) for v in (peak_snapshot, peak_ledger) if v is not None]
        return {
            "balance": float(balance),
            "balance_source": "ledger" if ledger is not None else "trades",
            "peak_equity": float(max(peaks)),
            "day_start_balance": float(day_balance),
        }
