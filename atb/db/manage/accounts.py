"""Account state: balance/equity snapshots and the balance ledger the engine resumes from.

A balance change and the event that explains it are written in one transaction, so the ledger
and the event log never disagree. Balance reads return floats, as the earlier layer did.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from .. import connection, validate
from ..enums import EventType
from ..fields import utc_now
from ..models import AccountBalance, AccountHistory, SystemEvent, TradingSession
from .base import ManagerBase, request_id_of
from .statements import insert_row

MANUAL_REASON_PREFIX = "Manual adjustment: "
_SNAPSHOT_RULES: dict[str, dict[str, Any]] = {
    "balance": {"non_negative": True},
    "open_positions": {"minimum": 0, "optional": False},
    "total_exposure": {"non_negative": True, "optional": False},
    "drawdown": {"non_negative": True, "optional": False},
    "margin_used": {"non_negative": True, "optional": True},
    "margin_available": {"optional": True},
    "daily_pnl": {"optional": True},
    "equity": {"optional": False},
    "total_pnl": {"optional": False},
}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def lock_session_ledger(sid: int) -> bool:
    """Serialise the balance changes of one session: lock its row until the transaction ends.

    FOR NO KEY UPDATE does not block inserts of rows referencing the session (their foreign-key
    checks take KEY SHARE), so trades and events keep flowing. False for an unknown session.
    SQLite needs no lock: it runs one writing transaction at a time.
    """
    query = TradingSession.select(TradingSession.id).where(TradingSession.id == sid)
    if connection.is_postgres():
        query = query.for_update("FOR NO KEY UPDATE")  # type: ignore[arg-type]  # stubs: bool only
    return query.scalar() is not None


def ledger_time() -> Any:
    """The time a ledger row is stamped with: the server's clock when it is written (under the
    session's lock, so ledger order is commit order), not a Python time taken before."""
    return pw.fn.clock_timestamp() if connection.is_postgres() else utc_now()


def _insert_ledger_row(row: dict[pw.Field, Any]) -> bool:
    """Insert a ledger row; False when its request id is stored already (nothing written)."""
    query = (
        AccountBalance.insert(row)
        .on_conflict(action="nothing", conflict_target=[AccountBalance.request_id])
        .returning(AccountBalance.id)
    )
    return bool(list(query.tuples().execute()))  # type: ignore[call-overload]


# How each row this module writes is validated: the model's columns plus these rules.
_SNAPSHOT_ROW = validate.Cleaner(AccountHistory, _SNAPSHOT_RULES)


class AccountsMixin(ManagerBase):
    """log_account_snapshot, the balance ledger (update, manual adjustment, history) and recovery."""

    def log_account_snapshot(
        self,
        balance: Any,
        equity: Any,
        total_pnl: Any,
        open_positions: Any,
        total_exposure: Any,
        drawdown: Any,
        daily_pnl: Any = 0,
        margin_used: Any = 0,
        session_id: int | None = None,
        margin_available: Any = None,
        timestamp: dt.datetime | None = None,
        *,
        request_id: str | None = None,
    ) -> int:
        """Append one account snapshot; `margin_available` defaults to balance − margin used.

        Exactly once per `request_id`: a repeat returns the first call's id, writing nothing."""
        row = _SNAPSHOT_ROW(
            balance=balance,
            equity=equity,
            total_pnl=total_pnl,
            daily_pnl=daily_pnl,
            open_positions=open_positions,
            total_exposure=total_exposure,
            drawdown=drawdown,
            margin_used=margin_used,
            margin_available=margin_available,
        )
        now = utc_now()
        row["timestamp"] = (
            validate.column(AccountHistory.timestamp, timestamp, optional=True) or now
        )
        row["daily_pnl"] = row["daily_pnl"] or 0
        row["margin_used"] = row["margin_used"] or 0
        if row["margin_available"] is None:
            row["margin_available"] = row["balance"] - row["margin_used"]
        row.update(
            session=self._session(session_id), created_at=now, request_id=request_id_of(request_id)
        )
        return self._run_statement(lambda: insert_row(AccountHistory, row))

    def get_current_balance(self, session_id: int | None = None) -> float:
        """The session's newest ledger balance; 0.0 when there is no session or no ledger row."""
        sid = self._session(session_id)
        if sid is None:
            return 0.0
        query = (
            AccountBalance.select(AccountBalance.total_balance)
            .where(AccountBalance.session == sid)
            .order_by(AccountBalance.last_updated.desc(), AccountBalance.id.desc())
            .limit(1)
        )
        value = self._run_statement(query.scalar)
        return 0.0 if value is None else float(value)

    def update_balance(
        self,
        new_balance: Any,
        update_reason: Any,
        updated_by: Any = "system",
        session_id: int | None = None,
        *,
        request_id: str | None = None,
    ) -> bool:
        """Append a ledger row; False (nothing written) without a session or for an unknown one.

        Exactly once per `request_id`: a repeat returns True and writes nothing."""
        row = self._balance_row(new_balance, update_reason, updated_by, "update_reason")
        row[AccountBalance.request_id] = request_id_of(request_id)
        sid = self._session(session_id)
        if sid is None:
            return False

        def work() -> bool:
            if not lock_session_ledger(sid):
                return False
            stamped = {**row, AccountBalance.last_updated: ledger_time()}
            _insert_ledger_row({**stamped, AccountBalance.session: sid})
            return True

        return self._run_transaction(work)

    def manual_balance_adjustment(
        self,
        new_balance: Any,
        reason: Any,
        updated_by: Any = "user",
        session_id: int | None = None,
        *,
        request_id: str | None = None,
    ) -> bool:
        """Set the balance by hand: a ledger row and a BALANCE_ADJUSTMENT event, in one transaction.

        Balance changes of a session are serialised (see `lock_session_ledger`): the old balance in
        the event is the new balance of the change committed just before (ledger, else snapshot,
        else initial). Returns False, writing nothing, without a session or for an unknown one.
        Exactly once per `request_id`: a repeat returns True and writes neither row again.
        """
        room = AccountBalance.update_reason.max_length - len(MANUAL_REASON_PREFIX)
        reason = validate.text("reason", reason, room)
        row = self._balance_row(new_balance, MANUAL_REASON_PREFIX + reason, updated_by, "reason")
        row[AccountBalance.request_id] = request_id_of(request_id)
        new = float(row[AccountBalance.total_balance])
        who = row[AccountBalance.updated_by]
        sid = self._session(session_id)
        if sid is None:
            return False

        def work() -> bool:
            if not lock_session_ledger(sid):
                return False  # no such session
            # Read after the lock, in a statement of its own: it sees the last committed change
            # (on PostgreSQL the same statement reads the server's clock for the new row).
            stamp = ledger_time()
            if isinstance(stamp, pw.Node):
                found: Any = self._last_balance_query(sid, stamp).tuples().get()
                old, now = found
            else:
                old, now = self._last_balance_query(sid).scalar(), stamp
            old = float(old)
            ledger_row = {**row, AccountBalance.last_updated: now, AccountBalance.session: sid}
            if not _insert_ledger_row(ledger_row):
                return True  # this request was recorded already, with its event
            SystemEvent.insert(
                {
                    SystemEvent.timestamp: now,
                    SystemEvent.event_type: EventType.BALANCE_ADJUSTMENT,
                    SystemEvent.severity: "info",
                    SystemEvent.message: f"Balance manually adjusted from {old:.2f} to {new:.2f}",
                    SystemEvent.details: {
                        "old_balance": old,
                        "new_balance": new,
                        "reason": reason,
                        "adjusted_by": who,
                    },
                    SystemEvent.component: "accounts",
                    SystemEvent.session: sid,
                }
            ).execute()
            return True

        return self._run_transaction(work)

    def get_balance_history(
        self, session_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The session's ledger rows, newest first (empty without a session)."""
        limit = validate.integer("limit", limit, minimum=1)
        sid = self._session(session_id)
        if sid is None:
            return []
        query = (
            AccountBalance.select()
            .where(AccountBalance.session == sid)
            .order_by(AccountBalance.last_updated.desc(), AccountBalance.id.desc())
            .limit(limit)
        )
        return self._dashboard_read(
            lambda: [
                {
                    "id": b.id,
                    "balance": float(b.total_balance),
                    "available": float(b.available_balance),
                    "reserved": _float(b.reserved_balance) or 0.0,
                    "timestamp": b.last_updated,
                    "updated_by": b.updated_by,
                    "reason": b.update_reason,
                    "base_currency": b.base_currency,
                }
                for b in query
            ]
        )

    @staticmethod
    def _last_balance_query(sid: int, *also: Any) -> pw.ModelSelect[TradingSession]:
        ledger = (
            AccountBalance.select(AccountBalance.total_balance)
            .where(AccountBalance.session == sid)
            .order_by(AccountBalance.last_updated.desc(), AccountBalance.id.desc())
            .limit(1)
        )
        snapshot = (
            AccountHistory.select(AccountHistory.balance)
            .where(AccountHistory.session == sid)
            .order_by(AccountHistory.timestamp.desc(), AccountHistory.id.desc())
            .limit(1)
        )
        return TradingSession.select(
            pw.fn.COALESCE(ledger, snapshot, TradingSession.initial_balance), *also
        ).where(TradingSession.id == sid)

    @staticmethod
    def _balance_row(
        new_balance: Any, reason: Any, updated_by: Any, reason_field: str
    ) -> dict[pw.Field, Any]:
        balance = validate.money("new_balance", new_balance, non_negative=True)
        return {
            AccountBalance.base_currency: "USD",
            AccountBalance.total_balance: balance,
            AccountBalance.available_balance: balance,
            AccountBalance.reserved_balance: 0,
            AccountBalance.asset_balances: {},
            AccountBalance.last_updated: utc_now(),
            AccountBalance.updated_by: validate.column(
                AccountBalance.updated_by, updated_by, optional=False
            ),
            AccountBalance.update_reason: validate.column(
                AccountBalance.update_reason, reason, name=reason_field, optional=False
            ),
        }
