"""All-time metrics from per-day rollups equal the aggregate over the rows, Decimal for Decimal,
whatever the rollups' state: none yet, current, made stale by backfills and deletes, refreshed.
And the write path touches no rollup: a trade of today probes the marker, writes nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import peewee as pw
import pytest
from helpers import T0, log_trade
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atb.db.manage import rollups
from atb.db.manage.metrics import _metrics_statement
from atb.db.manager import DatabaseManager
from atb.db.models import AccountHistory, MetricRollup, PerformanceMetrics, Trade, TradingSession
from atb.db.models.rollups import ALL_SESSIONS
from atb.testing import truncate_all

UTC = dt.UTC
TODAY = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
FIRST_DAY = TODAY - dt.timedelta(days=6)  # six completed days and today


@pytest.fixture
def manager(pg_db: pw.PostgresqlDatabase) -> DatabaseManager:
    return DatabaseManager(database=pg_db, apply_migrations=False)


def _sessions(count: int) -> list[int]:
    return [
        TradingSession.insert(
            start_time=FIRST_DAY, mode="LIVE", initial_balance=D(1000), strategy_name="s",
            symbol="BTCUSDT", timeframe="1h",
        ).execute()
        for _ in range(count)
    ]  # fmt: skip


money = st.decimals(min_value=-500, max_value=500, places=8, allow_nan=False)
moments = st.integers(min_value=0, max_value=7 * 24 * 3600 - 1).map(
    lambda seconds: FIRST_DAY + dt.timedelta(seconds=seconds)
)
trades = st.lists(
    st.tuples(st.integers(0, 3), moments, st.integers(0, 90_000), money,
              money),
    max_size=40,
)  # fmt: skip
snapshots = st.lists(
    st.tuples(st.integers(0, 3), moments,
              st.decimals(min_value=0, max_value=5000, places=8, allow_nan=False)),
    max_size=40,
)  # fmt: skip


def _insert_trades(rows: list[tuple], sessions: list[int | None]) -> None:
    for index, (session, exit_time, held, pnl, pct) in enumerate(rows):
        Trade.insert(
            symbol="BTCUSDT", side="LONG", entry_price=D(100), exit_price=D(101), size=D(1),
            quantity=D(1), entry_time=exit_time - dt.timedelta(seconds=held), exit_time=exit_time,
            pnl=pnl, pnl_percent=pct, strategy_name="s", source="LIVE",
            order_id=f"o{index}-{id(rows)}", session=sessions[session],
        ).execute()  # fmt: skip


def _insert_snapshots(rows: list[tuple], sessions: list[int | None]) -> None:
    for session, timestamp, balance in rows:
        AccountHistory.insert(
            timestamp=timestamp, balance=balance, equity=balance, session=sessions[session]
        ).execute()


def _full_scan(session_id: int | None) -> tuple:
    statement = _metrics_statement(True, session_id is not None, False, False)
    return tuple(statement.execute({"session": session_id, "start": None, "end": None}).fetchone())


def _assert_rollups_agree(sessions: list[int | None]) -> None:
    for session_id in {None, *sessions}:
        figures, _ = rollups.read_metrics(session_id)
        assert figures == _full_scan(session_id), f"session {session_id}"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=trades, later=trades, first_snapshots=snapshots, later_snapshots=snapshots,
       delete_every=st.integers(2, 5))  # fmt: skip
def test_rollups_equal_the_aggregate_over_the_rows_in_every_state(
    pg_db, first, later, first_snapshots, later_snapshots, delete_every
):
    truncate_all(pg_db)
    sessions: list[int | None] = [None, *_sessions(3)]
    _insert_trades(first, sessions)
    _insert_snapshots(first_snapshots, sessions)
    _assert_rollups_agree(sessions)  # nothing rolled up: all live

    rollups.refresh(days_per_transaction=2)
    assert not rollups.read_metrics(None)[1]  # nothing due any more
    _assert_rollups_agree(sessions)

    _insert_trades(later, sessions)  # backfills into rolled-up days, and today
    _insert_snapshots(later_snapshots, sessions)
    Trade.delete().where(pw.fn.MOD(Trade.id, delete_every) == 0).execute()
    AccountHistory.delete().where(pw.fn.MOD(AccountHistory.id, delete_every) == 0).execute()
    _assert_rollups_agree(sessions)  # stale days read live

    rollups.refresh()
    _assert_rollups_agree(sessions)


def test_a_backfill_marks_only_its_day_stale_and_a_refresh_rolls_it_up(manager, pg_db):
    (session,) = _sessions(1)
    _insert_trades([(1, FIRST_DAY + dt.timedelta(hours=1), 60, D(5), D(5))], [None, session])
    assert manager.refresh_metric_rollups() == 6
    stale = MetricRollup.select().where(MetricRollup.stale)
    assert not stale.exists()

    backfill = FIRST_DAY + dt.timedelta(days=2, hours=3)
    _insert_trades([(1, backfill, 60, D(-2), D(-2))], [None, session])
    assert [row.day for row in stale] == [FIRST_DAY + dt.timedelta(days=2)]
    assert manager.get_performance_metrics(session_id=session)["total_pnl"] == 3.0
    assert not stale.exists()  # the read found the day due and rolled it up again
    (row,) = MetricRollup.select().where(
        (MetricRollup.session_key == session)
        & (MetricRollup.day == FIRST_DAY + dt.timedelta(days=2))
    )
    assert (row.total_trades, row.total_pnl) == (1, D(-2))


def test_a_trade_of_today_writes_no_rollup(manager, pg_db):
    (session,) = _sessions(1)
    manager.refresh_metric_rollups()
    before = list(MetricRollup.select().dicts())
    manager.log_trade("BTCUSDT", "LONG", 100, 101, 1, TODAY, TODAY + dt.timedelta(minutes=1), 1,
                      "tp", "s", session_id=session)  # fmt: skip
    assert list(MetricRollup.select().dicts()) == before
    assert manager.get_performance_metrics(session_id=session)["total_trades"] == 1


def test_a_refresh_writes_each_sessions_daily_performance_row(manager, pg_db):
    (session,) = _sessions(1)
    day = FIRST_DAY + dt.timedelta(days=1)
    _insert_trades(
        [
            (1, day + dt.timedelta(hours=h), 60, pnl, pnl)
            for h, pnl in ((1, D(4)), (2, D(-1)), (3, D(0)))
        ],
        [None, session],
    )
    manager.refresh_metric_rollups()
    (daily,) = PerformanceMetrics.select().where(PerformanceMetrics.session == session)
    assert (daily.period, daily.period_start, daily.total_trades, daily.winning_trades) == (
        "daily",
        day,
        3,
        1,
    )
    assert (daily.total_return, daily.best_trade_pnl, daily.worst_trade_pnl) == (D(3), D(4), D(-1))


def test_every_completed_day_is_covered_once_refreshed(manager, pg_db):
    manager.refresh_metric_rollups()  # an empty database: yesterday's marker alone
    (marker,) = MetricRollup.select().where(MetricRollup.session_key == ALL_SESSIONS)
    assert marker.day == TODAY - dt.timedelta(days=1)
    assert manager.refresh_metric_rollups() == 0


# --- the daily performance_metrics rows a refresh writes --------------------------------------


def _daily(session_id: int | None = None) -> list[PerformanceMetrics]:
    query = PerformanceMetrics.select().where(PerformanceMetrics.period == "daily")
    if session_id is not None:
        query = query.where(PerformanceMetrics.session == session_id)
    return list(query.order_by(PerformanceMetrics.period_start))


def test_the_daily_row_counts_every_trade_of_the_day(manager):
    manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "paper", 1000)
    log_trade(manager, pnl=10)
    log_trade(manager, pnl=-4, exit_time=T0 + dt.timedelta(hours=3))
    log_trade(manager, pnl=25, exit_time=T0 - dt.timedelta(hours=11))
    assert _daily() == []  # no write path touches it

    manager.refresh_metric_rollups()

    (row,) = _daily(manager._current_session_id)
    assert (row.total_trades, row.winning_trades, row.losing_trades) == (3, 2, 1)
    assert row.win_rate == D("66.66666667")
    assert row.total_return == 31
    assert (row.best_trade_pnl, row.worst_trade_pnl) == (25, -4)
    assert (row.avg_win, row.avg_loss) == (D("17.5"), D(-4))
    assert row.period_start == dt.datetime(2024, 3, 1, tzinfo=UTC)
    assert row.period_end == dt.datetime(2024, 3, 2, tzinfo=UTC)


def test_trades_on_different_days_get_their_own_daily_rows(manager):
    session_id = manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "paper", 1000)
    manager.log_trades([
        {"symbol": "BTCUSDT", "side": "LONG", "entry_price": "100", "exit_price": "110",
         "size": "0.1", "entry_time": T0 - dt.timedelta(hours=1), "exit_time": exit_time,
         "pnl": pnl, "exit_reason": "tp", "strategy_name": "ml_basic"}
        for exit_time, pnl in ((T0, 5), (T0, -2), (T0, 8), (T0 + dt.timedelta(days=1), 1))
    ])  # fmt: skip

    manager.refresh_metric_rollups()

    rows = _daily(session_id)
    assert [(r.period_start.day, r.total_trades, r.total_return) for r in rows] == [
        (1, 3, 11), (2, 1, 1)
    ]  # fmt: skip


def test_a_trade_without_a_session_adds_no_daily_row(manager):
    log_trade(manager)
    log_trade(manager)

    manager.refresh_metric_rollups()

    assert Trade.select().count() == 2
    assert _daily() == []
    assert manager.get_performance_metrics()["total_trades"] == 2


# --- what keeps rollups honest ----------------------------------------------------------------


def test_a_truncate_empties_the_rollups_and_the_figures_stay_exact(manager, pg_db):
    (session,) = _sessions(1)
    _insert_trades([(1, FIRST_DAY + dt.timedelta(hours=1), 60, D(5), D(5))], [None, session])
    manager.refresh_metric_rollups()
    assert MetricRollup.select().where(MetricRollup.session_key == session).exists()

    pg_db.execute_sql("TRUNCATE trades CASCADE")

    assert not MetricRollup.select().exists()
    assert manager.get_performance_metrics(session_id=session)["total_trades"] == 0
    _assert_rollups_agree([None, session])


def test_verify_reports_a_disabled_or_missing_rollup_trigger(pg_db):
    from atb.db.admin.verify import verify_database

    assert verify_database(pg_db).ok
    pg_db.execute_sql("ALTER TABLE trades DISABLE TRIGGER trades_rollups_insert")
    pg_db.execute_sql("DROP TRIGGER account_history_rollups_delete ON account_history")
    try:
        problems = [str(p) for p in verify_database(pg_db).problems]
        assert problems == [
            "trades: trigger trades_rollups_insert is disabled",
            "account_history: trigger account_history_rollups_delete is missing",
        ]
    finally:
        pg_db.execute_sql("ALTER TABLE trades ENABLE TRIGGER trades_rollups_insert")
        pg_db.execute_sql(
            "CREATE TRIGGER account_history_rollups_delete AFTER DELETE ON account_history "
            "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION atb_account_history_changed()"
        )


def test_a_read_rolls_up_one_chunk_of_days_at_most(manager, pg_db):
    (session,) = _sessions(1)
    first = TODAY - dt.timedelta(days=20)
    _insert_trades([(1, first + dt.timedelta(hours=1), 60, D(5), D(5))], [None, session])

    assert manager.get_performance_metrics()["total_trades"] == 1

    covered = MetricRollup.select().where(MetricRollup.session_key == ALL_SESSIONS)
    assert covered.count() == rollups.DAYS_PER_TRANSACTION
    assert manager.refresh_metric_rollups() == 20 - rollups.DAYS_PER_TRANSACTION
    assert manager.get_performance_metrics(session_id=session)["total_pnl"] == 5.0
