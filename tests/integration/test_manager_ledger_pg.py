"""DatabaseManager ledger groups on PostgreSQL: JSONB storage, exact numerics, cache expiry and
size limit, retention cleanup, SQL-computed metrics, and concurrent logging."""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import threading
import time
from decimal import Decimal as D

import peewee as pw
import pytest

from atb.db.enums import OrderStatus, OrderType, PartialOperationType
from atb.db.manager import DatabaseManager
from atb.db.models import (
    AccountBalance,
    Order,
    PartialTrade,
    PerformanceMetrics,
    Position,
    PredictionCache,
    SystemEvent,
    Trade,
    TradingSession,
)

pytestmark = pytest.mark.postgres
UTC = dt.UTC


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


@pytest.fixture
def manager(pg_db: pw.PostgresqlDatabase) -> DatabaseManager:
    return DatabaseManager(database=pg_db, apply_migrations=False)


def scalar(db: pw.Database, sql: str, *params):
    return db.execute_sql(sql, params).fetchone()[0]


def make_session(*, ended_days_ago: float | None = None, initial_balance: str = "1000") -> int:
    ended = ended_days_ago is not None
    return TradingSession.create(
        start_time=now() - dt.timedelta(days=(ended_days_ago or 0) + 1),
        end_time=now() - dt.timedelta(days=ended_days_ago) if ended else None,
        is_active=not ended,
        mode="PAPER",
        initial_balance=D(initial_balance),
        strategy_name="ml_basic",
        symbol="BTCUSDT",
        timeframe="1h",
    ).id


def make_trade(session_id, pnl, pnl_percent, *, hours=1.0, position_id=None) -> int:
    exit_time = now() - dt.timedelta(minutes=5)
    return Trade.create(
        symbol="BTCUSDT",
        side="LONG",
        entry_price=D("100"),
        exit_price=D("101"),
        size=D("0.1"),
        entry_time=exit_time - dt.timedelta(hours=hours),
        exit_time=exit_time,
        pnl=D(pnl),
        pnl_percent=D(pnl_percent),
        strategy_name="ml_basic",
        session=session_id,
        position=position_id,
    ).id


def populate_session(manager: DatabaseManager, session_id: int) -> None:
    """One row in every table that belongs to a session."""
    position_id = Position.create(
        symbol="BTCUSDT",
        side="LONG",
        entry_price=D("100"),
        size=D("0.1"),
        entry_time=now(),
        strategy_name="ml_basic",
        session=session_id,
    ).id
    Order.create(
        position=position_id,
        order_type=OrderType.ENTRY,
        status=OrderStatus.FILLED,
        internal_order_id=f"entry-{position_id}",
        symbol="BTCUSDT",
        side="LONG",
        quantity=D("1"),
        strategy_name="ml_basic",
        session=session_id,
    )
    PartialTrade.create(
        position=position_id,
        operation_type=PartialOperationType.SCALE_IN,
        size=D("0.25"),
        price=D("99"),
    )
    trade_id = make_trade(session_id, "10", "1", position_id=position_id)
    manager.log_strategy_execution(
        "ml_basic",
        "BTCUSDT",
        "exit",
        "closed_position",
        101,
        session_id=session_id,
        trade_id=trade_id,
    )
    manager.log_account_snapshot(1000, 1000, 0, 1, 100, 0, session_id=session_id)
    manager.update_balance(1010, "trade_pnl", session_id=session_id)
    manager.log_event("TEST", "hello", session_id=session_id)
    PerformanceMetrics.create(
        period="daily", period_start=now(), period_end=now(), session=session_id
    )
    manager.log_dynamic_performance_metrics(session_id, rolling_win_rate=0.5)
    manager.log_risk_adjustment(session_id, "volatility", None, "stop_loss_multiplier", 1, 1.5, 1.5)
    manager.record_optimization_cycle(
        "ml_basic", "BTCUSDT", "1h", {"sharpe": 1}, None, None, None, "apply", session_id=session_id
    )


SESSION_TABLES = (
    "strategy_executions",
    "trades",
    "partial_trades",
    "orders",
    "positions",
    "account_history",
    "account_balances",
    "system_events",
    "performance_metrics",
    "dynamic_performance_metrics",
    "risk_adjustments",
    "optimization_cycles",
    "trading_sessions",
)


class SqlLog:
    """The statements peewee sends while the block runs."""

    def __init__(self, caplog: pytest.LogCaptureFixture):
        self.caplog = caplog

    def __enter__(self) -> list[str]:
        self.caplog.clear()
        self.caplog.set_level(logging.DEBUG, logger="peewee")
        self.statements: list[str] = []
        return self.statements

    def __exit__(self, *exc) -> None:
        self.statements.extend(
            record.msg[0] for record in self.caplog.records if record.name == "peewee"
        )


# --- JSONB and exact numerics -----------------------------------------------------------------


def test_event_details_are_stored_as_a_jsonb_object(manager, pg_db):
    event_id = manager.log_event(
        "alert", "spike", details={"price": D("101.25"), "z": float("nan"), "tags": ["a"]}
    )

    assert (
        scalar(pg_db, "SELECT jsonb_typeof(details) FROM system_events WHERE id = %s", event_id)
        == "object"
    )
    assert (
        scalar(
            pg_db, "SELECT jsonb_typeof(details->'z') FROM system_events WHERE id = %s", event_id
        )
        == "null"
    )
    assert scalar(
        pg_db, "SELECT (details->>'price')::numeric FROM system_events WHERE id = %s", event_id
    ) == D("101.25")
    assert (
        scalar(
            pg_db, "SELECT jsonb_typeof(details->'tags') FROM system_events WHERE id = %s", event_id
        )
        == "array"
    )


def test_unset_event_details_are_sql_null_not_json_null(manager, pg_db):
    event_id = manager.log_event("TEST", "plain")

    assert (
        scalar(pg_db, "SELECT details IS NULL FROM system_events WHERE id = %s", event_id) is True
    )


def test_strategy_execution_indicators_keep_numbers_and_null_out_nan(manager, pg_db):
    row_id = manager.log_strategy_execution(
        "ml_basic",
        "BTCUSDT",
        "entry",
        "opened_long",
        D("43210.12345678"),
        indicators={"rsi": float("nan"), "atr": D("12.5")},
    )

    assert (
        scalar(
            pg_db,
            "SELECT jsonb_typeof(indicators->'rsi') FROM strategy_executions WHERE id = %s",
            row_id,
        )
        == "null"
    )
    assert (
        scalar(
            pg_db,
            "SELECT jsonb_typeof(indicators->'atr') FROM strategy_executions WHERE id = %s",
            row_id,
        )
        == "number"
    )
    assert (
        scalar(pg_db, "SELECT price::text FROM strategy_executions WHERE id = %s", row_id)
        == "43210.12345678"
    )


def test_account_snapshot_money_is_exact(manager, pg_db):
    snapshot_id = manager.log_account_snapshot(
        "9999999999.99999999", "0.1", "0.30000000", 0, "0.00000001", 0
    )

    row = pg_db.execute_sql(
        "SELECT balance::text, equity::text, total_pnl::text, total_exposure::text "
        "FROM account_history WHERE id = %s",
        (snapshot_id,),
    ).fetchone()
    assert row == ("9999999999.99999999", "0.10000000", "0.30000000", "0.00000001")


def test_balance_ledger_is_exact_numeric(manager, pg_db):
    sid = make_session()
    manager.update_balance(D("1234.56789012"), "deposit", session_id=sid)

    assert scalar(pg_db, "SELECT total_balance::text FROM account_balances") == "1234.56789012"


def test_a_failed_adjustment_event_rolls_back_its_balance_row(manager, monkeypatch):
    sid = make_session()

    def broken_insert(*args, **kwargs):
        raise RuntimeError("event table unavailable")

    monkeypatch.setattr(SystemEvent, "insert", broken_insert)
    with pytest.raises(RuntimeError):
        manager.manual_balance_adjustment(1500, "audit", session_id=sid)

    assert AccountBalance.select().count() == 0


# --- prediction cache -------------------------------------------------------------------------


def cache(manager, key="k1", **kwargs) -> int:
    values = dict(
        model_name="lstm",
        features_hash="f" * 64,
        config_hash="c" * 64,
        predicted_price="43000.12345678",
        confidence="0.875",
        direction=-1,
    )
    values.update(kwargs)
    return manager.cache_prediction(key, **values)


def test_the_cache_never_returns_an_expired_entry(manager, pg_db):
    cache(manager, ttl_seconds=600)
    pg_db.execute_sql("UPDATE prediction_cache SET expires_at = now() - interval '1 second'")

    assert manager.get_cached_prediction("k1") is None
    assert scalar(pg_db, "SELECT access_count FROM prediction_cache") == 0


def test_a_short_ttl_entry_stops_being_served_once_it_expires(manager):
    cache(manager, ttl_seconds=1)
    assert manager.get_cached_prediction("k1") is not None

    time.sleep(1.1)

    assert manager.get_cached_prediction("k1") is None


def test_a_cache_hit_is_one_update_returning_the_row(manager, caplog):
    cache(manager)

    with SqlLog(caplog) as statements:
        hit = manager.get_cached_prediction("k1")

    assert hit["predicted_price"] == 43000.12345678
    assert len(statements) == 1
    assert statements[0].startswith("UPDATE") and "RETURNING" in statements[0]


def test_caching_is_one_upsert_statement(manager, caplog):
    manager.prediction_cache_max_entries = None

    with SqlLog(caplog) as statements:
        cache(manager)
        cache(manager, predicted_price=1)

    assert len(statements) == 2
    assert all("ON CONFLICT" in sql for sql in statements)
    assert PredictionCache.select().count() == 1
    assert PredictionCache.get().predicted_price == D("1")


def test_the_cache_size_limit_deletes_the_oldest_in_one_statement(manager, caplog):
    manager.prediction_cache_max_entries = 5
    for i in range(5):
        cache(manager, f"k{i}")
    manager.get_cached_prediction("k0")  # k0 becomes the most recently used

    with SqlLog(caplog) as statements:
        cache(manager, "k5")

    deletes = [sql for sql in statements if sql.startswith("DELETE")]
    assert len(deletes) == 1
    assert sorted(r.cache_key for r in PredictionCache.select()) == ["k0", "k2", "k3", "k4", "k5"]


def test_trimming_a_large_overflow_is_still_one_statement(manager, caplog):
    manager.prediction_cache_max_entries = None
    for i in range(300):
        cache(manager, f"k{i}")

    with SqlLog(caplog) as statements:
        deleted = manager.trim_prediction_cache(100)

    assert deleted == 200
    assert len(statements) == 1
    assert PredictionCache.select().count() == 100


def test_prediction_values_are_stored_exactly(manager, pg_db):
    cache(manager)

    row = pg_db.execute_sql(
        "SELECT predicted_price::text, confidence::text, direction FROM prediction_cache"
    ).fetchone()
    assert row == ("43000.12345678", "0.87500000", -1)


# --- maintenance ------------------------------------------------------------------------------


def rows_of(pg_db, session_id: int) -> dict[str, int]:
    counts = {}
    for table in SESSION_TABLES:
        if table == "trading_sessions":
            sql = "SELECT count(*) FROM trading_sessions WHERE id = %s"
        elif table == "partial_trades":
            sql = (
                "SELECT count(*) FROM partial_trades WHERE position_id IN "
                "(SELECT id FROM positions WHERE session_id = %s)"
            )
        else:
            sql = f"SELECT count(*) FROM {table} WHERE session_id = %s"
        counts[table] = scalar(pg_db, sql, session_id)
    return counts


def test_cleanup_removes_exactly_an_old_sessions_rows_and_keeps_recent_ones(manager, pg_db):
    old, recent, active = (
        make_session(ended_days_ago=200),
        make_session(ended_days_ago=5),
        make_session(),
    )
    for sid in (old, recent, active):
        populate_session(manager, sid)

    deleted = manager.cleanup_old_data(days_to_keep=90)

    assert deleted == {table: 1 for table in SESSION_TABLES}
    assert set(rows_of(pg_db, old).values()) == {0}
    assert set(rows_of(pg_db, recent).values()) == {1}
    assert set(rows_of(pg_db, active).values()) == {1}


def test_cleanup_dry_run_deletes_nothing(manager, pg_db):
    old = make_session(ended_days_ago=200)
    populate_session(manager, old)

    assert manager.cleanup_old_data(90, dry_run=True) == {table: 1 for table in SESSION_TABLES}
    assert set(rows_of(pg_db, old).values()) == {1}


def test_cleanup_uses_set_based_deletes(manager, caplog):
    for _ in range(3):
        populate_session(manager, make_session(ended_days_ago=200))

    with SqlLog(caplog) as statements:
        deleted = manager.cleanup_old_data(90)

    assert deleted["trading_sessions"] == 3
    assert len([sql for sql in statements if sql.startswith("DELETE")]) == len(SESSION_TABLES)


def test_table_stats_are_exact_counts(manager):
    sid = make_session()
    for i in range(7):
        manager.log_event("TEST", f"event {i}", session_id=sid)

    stats = manager.get_table_stats()

    assert stats["system_events"] == 7
    assert stats["trading_sessions"] == 1


# --- metrics ----------------------------------------------------------------------------------


def test_performance_metrics_equal_a_hand_computed_result(manager):
    sid = make_session()
    for pnl, pct, hours in (("100", "10", 2), ("-50", "-5", 4), ("30", "3", 1), ("-20", "-2", 1)):
        make_trade(sid, pnl, pct, hours=hours)
    start = now() - dt.timedelta(hours=1)
    for minute, balance in enumerate((1000, 1100, 990, 1050, 1200, 1140)):
        manager.log_account_snapshot(
            balance,
            balance,
            0,
            0,
            0,
            0,
            session_id=sid,
            timestamp=start + dt.timedelta(minutes=minute),
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
        "avg_trade_duration_hours": 2.0,
    }


def insert_many_trades(pg_db, sessions: int, per_session: int) -> list[int]:
    ids = [make_session() for _ in range(sessions)]
    pg_db.execute_sql(
        """
        INSERT INTO trades (symbol, side, entry_price, exit_price, size, entry_time, exit_time,
                            pnl, pnl_percent, strategy_name, session_id)
        SELECT 'BTCUSDT', 'LONG', 100, 101, 0.1,
               now() - (g || ' minutes')::interval - interval '1 hour',
               now() - (g || ' minutes')::interval,
               mod(g, 7) - 3, (mod(g, 7) - 3) / 10.0, 'ml_basic', s.id
        FROM unnest(%s::int[]) AS s(id), generate_series(1, %s) AS g
        """,
        (ids, per_session),
    )
    pg_db.execute_sql("ANALYZE trades")
    return ids


def explain(pg_db, query: pw.Select) -> str:
    sql, params = query.sql()
    return "\n".join(row[0] for row in pg_db.execute_sql("EXPLAIN " + sql, params).fetchall())


def test_session_metrics_over_100000_trades_never_scan_the_whole_table(manager, pg_db):
    sessions = insert_many_trades(pg_db, sessions=10, per_session=10_000)

    plan = explain(pg_db, manager._trade_aggregate_query(None, None, sessions[3]))

    assert "Seq Scan" not in plan
    assert "Index" in plan


def test_session_metrics_are_served_by_the_session_exit_time_index(manager, pg_db):
    sessions = insert_many_trades(pg_db, sessions=10, per_session=10_000)
    query = manager._trade_aggregate_query(now() - dt.timedelta(hours=2), None, sessions[3])

    plan = explain(pg_db, query)

    assert "trades_session_id_exit_time" in plan


def test_session_metrics_over_100000_trades_are_fast(manager, pg_db):
    sessions = insert_many_trades(pg_db, sessions=10, per_session=10_000)

    started = time.perf_counter()
    metrics = manager.get_performance_metrics(session_id=sessions[3])
    elapsed = time.perf_counter() - started

    assert metrics["total_trades"] == 10_000
    assert elapsed < 0.5
    assert (
        manager.get_performance_metrics(start_date=now() - dt.timedelta(days=30))["total_trades"]
        == 100_000
    )


# --- concurrency ------------------------------------------------------------------------------


def test_events_logged_from_eight_threads_all_land(manager):
    per_thread = 25
    errors: list[BaseException] = []
    ids: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                event_id = manager.log_event("TEST", f"thread {n} event {i}", details={"n": n})
                with lock:
                    ids.append(event_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(ids)) == 8 * per_thread
    assert SystemEvent.select().count() == 8 * per_thread
