"""DatabaseManager ledger groups on PostgreSQL: JSONB storage, exact numerics, cache expiry and
size limit, set-based retention cleanup, SQL-computed metrics, and concurrent logging.

Ledger behaviour that must hold on SQLite too is tested on both backends in
test_manager_both_backends.py."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from decimal import Decimal as D

import peewee as pw
import pytest
from helpers import (
    SESSION_TABLES,
    cache_prediction,
    make_trade,
    new_session_id,
    now,
    populate_session,
    scalar,
)

from atb.db.manager import DatabaseManager
from atb.db.models import PredictionCache, SystemEvent


@pytest.fixture
def manager(pg_db: pw.PostgresqlDatabase) -> DatabaseManager:
    return DatabaseManager(database=pg_db, apply_migrations=False)


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
    sid = new_session_id()
    manager.update_balance(D("1234.56789012"), "deposit", session_id=sid)

    assert scalar(pg_db, "SELECT total_balance::text FROM account_balances") == "1234.56789012"


# --- prediction cache -------------------------------------------------------------------------


def test_a_short_ttl_entry_stops_being_served_once_it_expires(manager):
    cache_prediction(manager, ttl_seconds=1)
    assert manager.get_cached_prediction("k1") is not None

    time.sleep(1.1)

    assert manager.get_cached_prediction("k1") is None


def test_a_cache_hit_is_one_update_returning_the_row(manager, caplog):
    cache_prediction(manager, predicted_price="43000.12345678")

    with SqlLog(caplog) as statements:
        hit = manager.get_cached_prediction("k1")

    assert hit["predicted_price"] == 43000.12345678
    assert len(statements) == 1
    assert statements[0].startswith("UPDATE") and "RETURNING" in statements[0]


def test_caching_is_one_upsert_statement(manager, caplog):
    manager.prediction_cache_max_entries = None

    with SqlLog(caplog) as statements:
        cache_prediction(manager)
        cache_prediction(manager, predicted_price=1)

    assert len(statements) == 2
    assert all("ON CONFLICT" in sql for sql in statements)
    assert PredictionCache.select().count() == 1
    assert PredictionCache.get().predicted_price == D("1")


def test_the_cache_size_limit_deletes_the_oldest_in_one_statement(manager, caplog):
    manager.prediction_cache_max_entries = 5
    for i in range(5):
        cache_prediction(manager, f"k{i}")
    manager.get_cached_prediction("k0")  # k0 becomes the most recently used

    with SqlLog(caplog) as statements:
        cache_prediction(manager, "k5")

    deletes = [sql for sql in statements if sql.startswith("DELETE")]
    assert len(deletes) == 1
    assert sorted(r.cache_key for r in PredictionCache.select()) == ["k0", "k2", "k3", "k4", "k5"]


def test_trimming_a_large_overflow_is_still_one_statement(manager, caplog):
    manager.prediction_cache_max_entries = None
    for i in range(300):
        cache_prediction(manager, f"k{i}")

    with SqlLog(caplog) as statements:
        deleted = manager.trim_prediction_cache(100)

    assert deleted == 200
    assert len(statements) == 1
    assert PredictionCache.select().count() == 100


def test_prediction_values_are_stored_exactly(manager, pg_db):
    cache_prediction(manager, predicted_price="43000.12345678", confidence="0.875", direction=-1)

    row = pg_db.execute_sql(
        "SELECT predicted_price::text, confidence::text, direction FROM prediction_cache"
    ).fetchone()
    assert row == ("43000.12345678", "0.87500000", -1)


# --- maintenance ------------------------------------------------------------------------------


def test_cleanup_uses_set_based_deletes(manager, caplog):
    for _ in range(3):
        populate_session(manager, new_session_id(ended_days_ago=200))

    with SqlLog(caplog) as statements:
        deleted = manager.cleanup_old_data(90)

    assert deleted["trading_sessions"] == 3
    assert len([sql for sql in statements if sql.startswith("DELETE")]) == len(SESSION_TABLES)


# --- metrics ----------------------------------------------------------------------------------


def test_the_average_trade_duration_is_exact(manager):
    sid = new_session_id()
    for hours in (2, 4, 1, 1):
        make_trade(sid, "1", "1", hours=hours)

    metrics = manager.get_performance_metrics(session_id=sid)

    assert metrics["avg_trade_duration_hours"] == 2.0


def insert_many_trades(pg_db, sessions: int, per_session: int) -> list[int]:
    ids = [new_session_id() for _ in range(sessions)]
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


def test_all_time_metrics_over_100000_trades_read_rollups_and_an_index_range(manager, pg_db):
    """A week of trades, stored out of time order: once rolled up, the all-time read of every
    session or of one touches only today's rows, through an index; the figures stay whole."""
    from atb.db.manage import rollups

    sessions = insert_many_trades(pg_db, sessions=10, per_session=10_000)
    manager.refresh_metric_rollups()
    pg_db.execute_sql("ANALYZE")

    for session_id in (None, sessions[3]):
        sql = rollups._METRICS_SQL[session_id is not None]
        plan = "\n".join(
            row[0]
            for row in pg_db.execute_sql(
                sql.replace("WITH cover AS", "EXPLAIN WITH cover AS", 1), {"session": session_id}
            ).fetchall()
        )
        assert "Seq Scan on trades" not in plan, plan
        assert "metric_rollups" in plan
    assert manager.get_performance_metrics(session_id=sessions[3])["total_trades"] == 10_000
    assert manager.get_performance_metrics()["total_trades"] == 100_000
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
