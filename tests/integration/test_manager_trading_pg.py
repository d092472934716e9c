"""DatabaseManager trading groups on PostgreSQL: what SQLite cannot show — exact 18-digit numerics,
CHECK constraints, the single-statement write paths, psycopg2's client-side placeholders,
concurrent order updates, and bounded query counts.

Trading behaviour that must hold on SQLite too (read-only queries, rollbacks, duplicates) is
tested on both backends in test_manager_both_backends.py."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal as D

import peewee as pw
import pytest
from helpers import T0, log_position, log_trade, scalar

from atb.db import DatabaseError, ValidationError
from atb.db.enums import EventType, OrderStatus
from atb.db.manager import DatabaseManager
from atb.db.models import (
    AccountHistory,
    Order,
    PerformanceMetrics,
    SystemEvent,
    Trade,
    TradingSession,
)
from atb.db.settings import build_url, parse_url

TERMINAL = {"FILLED", "CANCELLED", "FAILED"}


@pytest.fixture
def manager(pg_db: pw.PostgresqlDatabase) -> DatabaseManager:
    return DatabaseManager(database=pg_db, apply_migrations=False)


@pytest.fixture
def session_id(manager: DatabaseManager) -> int:
    return manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "live", "10000")


# --- exact numerics and constraints -----------------------------------------------------------


def test_eighteen_digit_amounts_round_trip_exactly(
    manager: DatabaseManager, pg_db: pw.Database, session_id: int
) -> None:
    trade_id = log_trade(manager, entry_price="9999999999.99999999", exit_price="0.00000001",
                     pnl="-9999999999.99999998", size="1234567890.12345678")  # fmt: skip

    stored = manager.get_recent_trades()[0]
    assert stored["id"] == trade_id
    assert stored["entry_price"] == D("9999999999.99999999")
    assert stored["exit_price"] == D("0.00000001")
    assert stored["pnl"] == D("-9999999999.99999998")
    assert str(scalar(pg_db, "SELECT size FROM trades WHERE id = %s", trade_id)) == (
        "1234567890.12345678"
    )


def test_a_ninth_decimal_is_rounded_half_even_before_storage(
    manager: DatabaseManager, session_id: int
) -> None:
    log_trade(manager, entry_price="0.123456785", exit_price="0.123456775", pnl="0.000000005")

    stored = manager.get_recent_trades()[0]
    assert (stored["entry_price"], stored["exit_price"]) == (D("0.12345678"), D("0.12345678"))
    assert stored["pnl"] == D("0E-8")


def test_a_pnl_percent_that_does_not_fit_numeric_18_8_is_refused(
    manager: DatabaseManager, session_id: int
) -> None:
    with pytest.raises(ValidationError, match="pnl_percent"):
        log_trade(manager, entry_price="0.00000001", exit_price="9999999999")

    assert Trade.select().count() == 0


def test_check_constraints_refuse_raw_sql_outside_the_enums(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = log_position(manager)

    with pytest.raises(DatabaseError, match="check"):
        manager.execute_query(
            "UPDATE orders SET status = 'PARTIAL' WHERE position_id = %s", (position_id,),
            read_only=False,
        )  # fmt: skip

    assert Order.get(Order.position == position_id).status is OrderStatus.FILLED


def test_end_of_session_totals_are_exact(
    manager: DatabaseManager, pg_db: pw.Database, session_id: int
) -> None:
    for pnl in ("0.10000001", "-0.2", "0.30000002"):
        log_trade(manager, pnl=pnl)
    for hours, balance in ((1, "10500.5"), (2, "9450.45"), (3, "11000")):
        AccountHistory.create(timestamp=T0 + dt.timedelta(hours=hours), balance=D(balance),
                              equity=D(balance), session=session_id)  # fmt: skip

    assert manager.end_trading_session(final_balance="10999.99999999")

    row = TradingSession.get_by_id(session_id)
    assert row.total_pnl == D("0.20000003")
    assert row.win_rate == D("66.66666667")
    assert row.max_drawdown == D("10.00000000")  # 10500.5 -> 9450.45
    assert row.final_balance == D("10999.99999999")


# --- single-statement write paths -------------------------------------------------------------


def test_a_session_and_its_engine_start_event_share_one_statement(
    manager: DatabaseManager, statements: list
) -> None:
    session_id = manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "paper", "500")

    assert len(statements) == 1
    (event,) = SystemEvent.select().where(SystemEvent.session == session_id)
    assert event.event_type is EventType.ENGINE_START
    assert event.message == f"Trading session {session_id} started"
    assert event.details["session_id"] == session_id
    assert event.details["mode"] == "PAPER" and event.details["initial_balance"] == 500


def test_a_position_and_its_entry_order_share_one_statement(
    manager: DatabaseManager, session_id: int, statements: list
) -> None:
    position_id = log_position(manager, entry_order_id="ex-8")

    assert len(statements) == 1
    (order,) = Order.select().where(Order.position == position_id)
    assert (order.exchange_order_id, order.status) == ("ex-8", OrderStatus.FILLED)
    assert order.session_id == session_id


def test_bulk_trades_sum_exactly_into_their_daily_rows(
    manager: DatabaseManager, session_id: int
) -> None:
    rows = [
        {"symbol": "BTCUSDT", "side": "buy", "entry_price": "100", "exit_price": "101",
         "size": "0.1", "entry_time": T0, "exit_time": T0 + dt.timedelta(hours=i % 30),
         "pnl": "0.00000001" if i % 3 else "-0.1", "exit_reason": "x", "strategy_name": "s",
         "order_id": f"o{i}"}
        for i in range(2_100)
    ]  # fmt: skip

    ids = manager.log_trades(rows)
    manager.refresh_metric_rollups()  # daily rows are written for completed days, off the write path

    assert len(ids) == 2_100 and ids == sorted(ids)
    days = list(PerformanceMetrics.select().order_by(PerformanceMetrics.period_start))
    assert sum(day.total_trades for day in days) == 2_100
    assert sum(day.total_return for day in days) == 1_400 * D("0.00000001") - 700 * D("0.1")


# --- reads ------------------------------------------------------------------------------------


def test_active_positions_take_at_most_two_queries_for_a_hundred(
    manager: DatabaseManager, session_id: int, statements: list
) -> None:
    for i in range(100):
        position_id = log_position(manager, entry_order_id=f"e{i}")
        manager.create_order(position_id, "partial_exit", "BTCUSDT", "sell", "0.005", "s")
    statements.clear()

    active = manager.get_active_positions()

    assert len(statements) <= 2
    assert len(active) == 100
    assert all(len(p["orders"]) == 2 for p in active)


def test_a_placeholder_count_mismatch_is_reported_as_such(manager: DatabaseManager) -> None:
    # psycopg2 formats parameters client-side; its IndexError/TypeError must not leak out.
    with pytest.raises(DatabaseError, match="placeholders"):
        manager.execute_query("SELECT %s, %s", (1,))


def test_reads_return_aware_utc_datetimes_and_json(
    manager: DatabaseManager, session_id: int
) -> None:
    log_trade(manager, strategy_config={"risk": D("0.02"), "bad": float("nan")})

    (stored,) = manager.get_recent_trades()
    assert stored["exit_time"] == T0 and stored["exit_time"].utcoffset() == dt.timedelta(0)
    assert stored["strategy_config"] == {"risk": 0.02, "bad": None}


# --- connection -------------------------------------------------------------------------------


def test_info_and_stats_describe_the_pool(manager: DatabaseManager) -> None:
    info = manager.get_database_info()

    assert info["backend"] == "postgresql"
    assert info["server_version"][0].isdigit()
    assert info["pool_size"] >= 1
    assert manager.test_connection() is True


def test_database_info_never_shows_the_password(pg_database_url: str, pg_db: pw.Database) -> None:
    parsed = parse_url(pg_database_url)
    url = build_url(parsed.host, parsed.port, parsed.user or "postgres", "s3cret-pw",
                    parsed.database, parsed.query)  # fmt: skip
    manager = DatabaseManager(
        url, apply_migrations=False, replace=True
    )  # trust auth ignores the password

    info = manager.get_database_info()

    assert "s3cret-pw" not in repr(info)
    assert "***" in info["database_url"]


def test_the_manager_keeps_working_after_close(manager: DatabaseManager, session_id: int) -> None:
    manager.close()
    manager.cleanup_connection_pool()

    log_trade(manager)

    assert manager.get_connection_stats()["pool_in_use"] == 0
    assert len(manager.get_recent_trades()) == 1


# --- concurrency ------------------------------------------------------------------------------


def _race(calls: list) -> list:
    """Run the calls on threads released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # recorded, asserted on by the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_updates_cannot_resurrect_a_terminal_order(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = log_position(manager)
    statuses = ["filled", "cancelled", "open", "partially_filled", "rejected", "pending"]
    for _ in range(15):
        order_id = manager.create_order(
            position_id, "full_exit", "BTCUSDT", "sell", "0.5", "s"
        )  # FILLED at 0.5 is the whole order
        calls = [
            (lambda s=s, o=order_id: manager.update_order_status(o, s, filled_quantity="0.5"))
            for s in statuses
        ]

        results = _race(calls)

        assert not any(isinstance(r, Exception) for r in results), results
        winners = [s for s, ok in zip(statuses, results, strict=True) if ok and s not in
                   ("open", "partially_filled", "pending")]  # fmt: skip
        assert len(winners) == 1, winners
        final = Order.get_by_id(order_id)
        assert final.status.value in TERMINAL
        expected = {"filled": "FILLED", "cancelled": "CANCELLED", "rejected": "FAILED"}
        assert final.status.value == expected[winners[0]]
        assert (final.filled_at is None) != (final.status is OrderStatus.FILLED)
        assert (final.cancelled_at is None) != (final.status is OrderStatus.CANCELLED)


def test_concurrent_closes_succeed_once(manager: DatabaseManager, session_id: int) -> None:
    position_id = log_position(manager)

    results = _race([lambda: manager.close_position(position_id, exit_price="105")] * 6)

    assert results.count(True) == 1 and results.count(False) == 5


# --- plans at scale (migration 002's indexes) ---------------------------------------------------


def _plan(pg_db: pw.Database, manager: DatabaseManager, call) -> str:
    """EXPLAIN of the one statement `call` sends (run once to capture it)."""
    seen: list[tuple] = []
    original = manager.database.execute_sql

    def capture(sql, params=None):
        seen.append((sql, params))
        return original(sql, params)

    manager.database.execute_sql = capture
    try:
        call()
    finally:
        del manager.database.execute_sql
    assert len(seen) == 1
    sql, params = seen[0]
    return "\n".join(row[0] for row in pg_db.execute_sql("EXPLAIN " + sql, params).fetchall())


def test_active_positions_are_read_through_the_open_positions_index(
    manager: DatabaseManager, pg_db: pw.Database, session_id: int
) -> None:
    pg_db.execute_sql(
        "INSERT INTO positions (symbol, side, status, entry_price, size, strategy_name, entry_time,"
        " session_id) SELECT 'BTCUSDT', 'LONG', 'CLOSED', 100, 1, 'ml_basic',"
        " now() - g * interval '1 minute', %s FROM generate_series(1, 20000) AS g",
        (session_id,),
    )
    log_position(manager)
    pg_db.execute_sql("ANALYZE positions")

    plan = _plan(pg_db, manager, lambda: manager.get_active_positions(session_id=None))

    assert "positions_entry_time_id" in plan
    assert "Seq Scan on positions" not in plan


def test_trades_of_a_symbol_since_a_date_are_one_index_range(
    manager: DatabaseManager, pg_db: pw.Database, session_id: int
) -> None:
    pg_db.execute_sql(
        "INSERT INTO trades (symbol, side, entry_price, exit_price, size, entry_time, exit_time,"
        " pnl, pnl_percent, strategy_name, session_id)"
        " SELECT (ARRAY['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT'])[1 + g %% 4], 'LONG', 100, 101,"
        " 1, now() - g * interval '1 minute' - interval '1 hour', now() - g * interval '1 minute',"
        " 1, 1, 'ml_basic', %s FROM generate_series(1, 40000) AS g",
        (session_id,),
    )
    pg_db.execute_sql("ANALYZE trades")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

    plan = _plan(
        pg_db, manager, lambda: manager.get_trades_by_symbol_and_date("ETHUSDT", since, None)
    )

    definitions = pg_db.execute_sql(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'trades'"
    ).fetchall()
    assert any(d.endswith("(symbol, entry_time)") for (d,) in definitions), definitions
    # The plan the index was made for; an adopted database may keep an entry-time index of the
    # earlier layer that the planner also finds cheap, so the name is not pinned.
    assert "BitmapAnd" not in plan and "Seq Scan" not in plan
