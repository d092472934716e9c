"""DatabaseManager behaviour that must hold the same on SQLite and on PostgreSQL: every test runs
once per backend (the `backend` fixture); the PostgreSQL variants carry the `postgres` mark.

What only one backend can show lives in tests/unit/test_manager_*.py (SQLite logic checks) and
tests/integration/test_manager_*_pg.py (JSONB, exact 18-digit numerics, statement counts,
concurrency, query plans)."""

from __future__ import annotations

import datetime as dt
import statistics

import pytest
from helpers import (
    SESSION_TABLES,
    cache_prediction,
    expire_prediction,
    log_position,
    log_trade,
    make_trade,
    new_session_id,
    now,
    populate_session,
    session_row_counts,
)

from atb.db import DatabaseError, DuplicateError
from atb.db.manager import DatabaseManager
from atb.db.models import (
    AccountBalance,
    Order,
    PerformanceMetrics,
    Position,
    PredictionCache,
    SystemEvent,
    Trade,
    TradingSession,
)

# --- raw queries and transactions -------------------------------------------------------------


def test_execute_query_takes_percent_s_placeholders_and_double_percent_signs(
    manager: DatabaseManager, session_id: int
) -> None:
    rows = manager.execute_query(
        "SELECT id, symbol, '100%%' AS pct FROM trading_sessions WHERE id = %s", (session_id,)
    )

    assert rows == [{"id": session_id, "symbol": "BTCUSDT", "pct": "100%"}]


def test_execute_query_without_parameters_sends_the_sql_as_written(
    manager: DatabaseManager, session_id: int
) -> None:
    rows = manager.execute_query("SELECT symbol FROM trading_sessions WHERE symbol LIKE 'BTC%'")

    assert rows == [{"symbol": "BTCUSDT"}]


def test_execute_query_refuses_a_write_on_the_read_only_path(
    manager: DatabaseManager, session_id: int
) -> None:
    with pytest.raises(DatabaseError, match="read-?only"):
        manager.execute_query("DELETE FROM trading_sessions")

    assert TradingSession.select().count() == 1


def test_a_read_only_query_inside_a_session_leaves_it_writable(
    manager: DatabaseManager, session_id: int
) -> None:
    with manager.get_session():
        rows = manager.execute_query("SELECT count(*) AS n FROM trades")
        log_trade(manager)

    assert rows == [{"n": 0}]
    assert Trade.select().count() == 1


@pytest.mark.parametrize(
    ("sql", "params"),
    [("SELEC nonsense", None), ("SELECT * FROM no_such_table", None), ("SELECT %s, %s", (1,))],
    ids=["syntax", "unknown-table", "placeholder-count"],
)
def test_bad_sql_raises_database_error(
    manager: DatabaseManager, sql: str, params: tuple | None
) -> None:
    with pytest.raises(DatabaseError):
        manager.execute_query(sql, params)


def test_manager_calls_inside_get_session_roll_back_together(
    manager: DatabaseManager, session_id: int
) -> None:
    with pytest.raises(RuntimeError), manager.get_session():
        log_trade(manager, order_id="a")
        log_position(manager, entry_order_id="b")
        raise RuntimeError("boom")

    assert (Trade.select().count(), Position.select().count(), Order.select().count()) == (0, 0, 0)
    assert PerformanceMetrics.select().count() == 0


# --- duplicates write nothing -----------------------------------------------------------------


@pytest.mark.parametrize("repeated_as", ["order_id", "exit_order_id"])
def test_a_duplicate_order_id_in_a_session_leaves_trades_and_the_metrics_untouched(
    manager: DatabaseManager, session_id: int, repeated_as: str
) -> None:
    log_trade(manager, order_id="ex-1", pnl="1.5")

    with pytest.raises(DuplicateError):
        log_trade(manager, **{repeated_as: "ex-1"}, pnl="-100")

    assert Trade.select().count() == 1
    metrics = manager.get_performance_metrics(session_id=session_id)
    assert (metrics["total_trades"], metrics["total_pnl"], metrics["worst_trade"]) == (1, 1.5, 1.5)


def test_a_taken_entry_order_id_leaves_no_position_behind(
    manager: DatabaseManager, session_id: int
) -> None:
    log_position(manager, entry_order_id="ex-1")

    with pytest.raises(DuplicateError):
        log_position(manager, entry_order_id="ex-1")

    assert Position.select().count() == 1
    assert Order.select().count() == 1


# --- accounts and events ----------------------------------------------------------------------


def test_manual_adjustment_is_atomic_when_the_event_cannot_be_written(
    manager: DatabaseManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = new_session_id()

    def broken_insert(*args, **kwargs):
        raise RuntimeError("event table unavailable")

    monkeypatch.setattr(SystemEvent, "insert", broken_insert)
    with pytest.raises(RuntimeError):
        manager.manual_balance_adjustment(1250, "deposit", session_id=sid)

    assert AccountBalance.select().count() == 0


def test_log_event_stores_unset_details_as_sql_null_not_json_null(
    manager: DatabaseManager,
) -> None:
    event_id = manager.log_event("TEST", "no details")

    stored_as_null = SystemEvent.select().where(
        SystemEvent.id == event_id, SystemEvent.details.is_null()
    )
    assert stored_as_null.count() == 1


# --- metrics ----------------------------------------------------------------------------------


def test_performance_metrics_match_a_hand_computed_example(manager: DatabaseManager) -> None:
    sid = new_session_id()
    for pnl, pct, hours in (("100", "10", 2), ("-50", "-5", 4), ("30", "3", 1), ("-20", "-2", 1)):
        make_trade(sid, pnl, pct, hours=hours)
    start = now() - dt.timedelta(hours=1)
    for minutes, balance in enumerate((1000, 1100, 990, 1050, 1200, 1140)):
        manager.log_account_snapshot(
            balance,
            balance,
            0,
            0,
            0,
            0,
            session_id=sid,
            timestamp=start + dt.timedelta(minutes=minutes),
        )

    metrics = manager.get_performance_metrics(session_id=sid)

    assert metrics == {
        "total_trades": 4,
        "winning_trades": 2,
        "losing_trades": 2,
        "win_rate": 50.0,
        "total_pnl": 60.0,
        "avg_win": 65.0,
        "avg_loss": -35.0,
        "profit_factor": pytest.approx(130 / 70),
        "best_trade": 100.0,
        "worst_trade": -50.0,
        "sharpe_ratio": pytest.approx(
            statistics.fmean([10, -5, 3, -2]) / statistics.pstdev([10, -5, 3, -2])
        ),
        "max_drawdown": 10.0,
        # SQLite measures durations in floating-point days; PostgreSQL's exact result has its
        # own test in test_manager_ledger_pg.py.
        "avg_trade_duration_hours": pytest.approx(2.0, rel=1e-6),
    }
    assert all(isinstance(value, (int, float)) for value in metrics.values())


# --- prediction cache -------------------------------------------------------------------------


def test_an_expired_prediction_is_never_returned(manager: DatabaseManager) -> None:
    cache_prediction(manager, "k1", ttl_seconds=600)
    expire_prediction("k1")

    assert manager.get_cached_prediction("k1") is None
    assert PredictionCache.get(PredictionCache.cache_key == "k1").access_count == 0


# --- maintenance ------------------------------------------------------------------------------


def test_cleanup_removes_an_old_session_with_everything_it_owns_and_keeps_the_rest(
    manager: DatabaseManager,
) -> None:
    old, recent, active = (
        new_session_id(ended_days_ago=200),
        new_session_id(ended_days_ago=5),
        new_session_id(),
    )
    for sid in (old, recent, active):
        populate_session(manager, sid)

    deleted = manager.cleanup_old_data(days_to_keep=90)

    assert deleted == {table: 1 for table in SESSION_TABLES}
    assert set(session_row_counts(old).values()) == {0}
    assert set(session_row_counts(recent).values()) == {1}
    assert set(session_row_counts(active).values()) == {1}
    assert TradingSession.select().count() == 2


def test_cleanup_dry_run_counts_without_deleting(manager: DatabaseManager) -> None:
    old = new_session_id(ended_days_ago=200)
    populate_session(manager, old)

    counts = manager.cleanup_old_data(90, dry_run=True)

    assert counts == {table: 1 for table in SESSION_TABLES}
    assert set(session_row_counts(old).values()) == {1}


def test_table_stats_count_every_table_exactly(manager: DatabaseManager) -> None:
    sid = new_session_id()
    for i in range(7):
        manager.log_event("TEST", f"event {i}", session_id=sid)

    stats = manager.get_table_stats()

    assert stats["system_events"] == 7
    assert stats["trading_sessions"] == 1
    assert stats["trades"] == 0
    assert len(stats) == 23


def test_drawdown_of_whole_number_balances_is_not_truncated(backend):
    """Integer balances must not make the drawdown an integer division (1000 → 997 is 0.3 %)."""
    session_id = backend.create_trading_session("s", "BTCUSDT", "1h", "paper", 1000)
    for balance in (1000, 997, 999):
        backend.log_account_snapshot(
            balance=balance,
            equity=balance,
            total_pnl=0,
            open_positions=0,
            total_exposure=0,
            drawdown=0,
        )
    metrics = backend.get_performance_metrics(session_id=session_id)
    assert metrics["max_drawdown"] == pytest.approx(0.3)
