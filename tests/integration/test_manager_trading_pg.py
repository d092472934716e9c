"""DatabaseManager trading groups on PostgreSQL: what SQLite cannot show — exact 18-digit numerics,
CHECK constraints, the single-statement write paths, read-only queries, concurrent order updates,
and bounded query counts."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from decimal import Decimal as D

import peewee as pw
import pytest

from atb.db import DatabaseError, DuplicateError, ValidationError
from atb.db.enums import OrderStatus
from atb.db.manager import DatabaseManager
from atb.db.models import (
    AccountHistory,
    Order,
    PerformanceMetrics,
    Position,
    Trade,
    TradingSession,
)
from atb.db.settings import build_url, parse_url

pytestmark = pytest.mark.postgres
UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
TERMINAL = {"FILLED", "CANCELLED", "FAILED"}


@pytest.fixture
def manager(pg_db: pw.PostgresqlDatabase) -> DatabaseManager:
    return DatabaseManager(database=pg_db, apply_migrations=False)


@pytest.fixture
def session_id(manager: DatabaseManager) -> int:
    return manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "live", "10000")


def scalar(db: pw.Database, sql: str, *params):
    return db.execute_sql(sql, params).fetchone()[0]


def trade(manager: DatabaseManager, **overrides) -> int:
    args = {
        "symbol": "BTCUSDT", "side": "LONG", "entry_price": "100", "exit_price": "110",
        "size": "0.1", "entry_time": T0 - dt.timedelta(hours=1), "exit_time": T0, "pnl": "10",
        "exit_reason": "take_profit", "strategy_name": "ml_basic",
    }  # fmt: skip
    return manager.log_trade(**{**args, **overrides})


def position(manager: DatabaseManager, **overrides) -> int:
    args = {"symbol": "BTCUSDT", "side": "long", "entry_price": "100", "size": "0.1",
            "strategy_name": "ml_basic", "quantity": "0.01"}  # fmt: skip
    return manager.log_position(**{**args, **overrides})


@pytest.fixture
def statements(pg_db: pw.PostgresqlDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """Every SQL statement the bound database sends while the test body runs."""
    seen: list[str] = []
    original = pg_db.execute_sql

    def counting(sql, params=None):
        seen.append(sql)
        return original(sql, params)

    monkeypatch.setattr(pg_db, "execute_sql", counting)
    yield seen


# --- exact numerics and constraints -----------------------------------------------------------


def test_eighteen_digit_amounts_round_trip_exactly(
    manager: DatabaseManager, pg_db: pw.Database, session_id: int
) -> None:
    trade_id = trade(manager, entry_price="9999999999.99999999", exit_price="0.00000001",
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
    trade(manager, entry_price="0.123456785", exit_price="0.123456775", pnl="0.000000005")

    stored = manager.get_recent_trades()[0]
    assert (stored["entry_price"], stored["exit_price"]) == (D("0.12345678"), D("0.12345678"))
    assert stored["pnl"] == D("0E-8")


def test_a_pnl_percent_that_does_not_fit_numeric_18_8_is_refused(
    manager: DatabaseManager, session_id: int
) -> None:
    with pytest.raises(ValidationError, match="pnl_percent"):
        trade(manager, entry_price="0.00000001", exit_price="9999999999")

    assert Trade.select().count() == 0


def test_check_constraints_refuse_raw_sql_outside_the_enums(
    manager: DatabaseManager, session_id: int
) -> None:
    position_id = position(manager)

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
        trade(manager, pnl=pnl)
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


def test_a_duplicate_trade_leaves_trades_and_the_daily_row_untouched(
    manager: DatabaseManager, session_id: int
) -> None:
    trade(manager, order_id="ex-1", pnl="1.5")

    with pytest.raises(DuplicateError):
        trade(manager, order_id="ex-1", pnl="-100")

    assert Trade.select().count() == 1
    (daily,) = PerformanceMetrics.select()
    assert (daily.total_trades, daily.total_return, daily.worst_trade_pnl) == (
        1,
        D("1.5"),
        D("1.5"),
    )


def test_a_duplicate_exchange_id_leaves_no_orphan_position(
    manager: DatabaseManager, session_id: int
) -> None:
    position(manager, entry_order_id="ex-7")

    with pytest.raises(DuplicateError):
        position(manager, entry_order_id="ex-7")

    assert Position.select().count() == 1
    assert Order.select().count() == 1


def test_a_position_and_its_entry_order_share_one_statement(
    manager: DatabaseManager, session_id: int, statements: list
) -> None:
    position_id = position(manager, entry_order_id="ex-8")

    assert len(statements) == 1
    (order,) = Order.select().where(Order.position == position_id)
    assert (order.exchange_order_id, order.status) == ("ex-8", OrderStatus.FILLED)
    assert order.session_id == session_id


def test_writes_inside_get_session_roll_back_together(
    manager: DatabaseManager, session_id: int
) -> None:
    with pytest.raises(RuntimeError), manager.get_session():
        trade(manager, order_id="a")
        position(manager, entry_order_id="b")
        raise RuntimeError("boom")

    assert (Trade.select().count(), Position.select().count(), Order.select().count()) == (0, 0, 0)
    assert PerformanceMetrics.select().count() == 0


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

    assert len(ids) == 2_100 and ids == sorted(ids)
    days = list(PerformanceMetrics.select().order_by(PerformanceMetrics.period_start))
    assert sum(day.total_trades for day in days) == 2_100
    assert sum(day.total_return for day in days) == 1_400 * D("0.00000001") - 700 * D("0.1")


# --- reads ------------------------------------------------------------------------------------


def test_active_positions_take_at_most_two_queries_for_a_hundred(
    manager: DatabaseManager, session_id: int, statements: list
) -> None:
    for i in range(100):
        position_id = position(manager, entry_order_id=f"e{i}")
        manager.create_order(position_id, "partial_exit", "BTCUSDT", "sell", "0.005", "s")
    statements.clear()

    active = manager.get_active_positions()

    assert len(statements) <= 2
    assert len(active) == 100
    assert all(len(p["orders"]) == 2 for p in active)


def test_read_only_queries_refuse_writes(manager: DatabaseManager, session_id: int) -> None:
    with pytest.raises(DatabaseError, match="read-only"):
        manager.execute_query("DELETE FROM trading_sessions")

    assert TradingSession.select().count() == 1


def test_a_read_only_query_inside_a_session_leaves_it_writable(
    manager: DatabaseManager, session_id: int
) -> None:
    with manager.get_session():
        rows = manager.execute_query("SELECT count(*) AS n FROM trades")
        trade(manager)

    assert rows == [{"n": 0}]
    assert Trade.select().count() == 1


def test_bad_sql_raises_database_error(manager: DatabaseManager) -> None:
    with pytest.raises(DatabaseError):
        manager.execute_query("SELECT * FROM no_such_table")
    with pytest.raises(DatabaseError, match="placeholders"):
        manager.execute_query("SELECT %s, %s", (1,))


def test_execute_query_placeholders_and_percent_signs(
    manager: DatabaseManager, session_id: int
) -> None:
    like = manager.execute_query("SELECT symbol FROM trading_sessions WHERE symbol LIKE 'BTC%'")
    bound = manager.execute_query(
        "SELECT symbol, '100%%' AS pct FROM trading_sessions WHERE id = %s", (session_id,)
    )

    assert like == [{"symbol": "BTCUSDT"}]
    assert bound == [{"symbol": "BTCUSDT", "pct": "100%"}]


def test_reads_return_aware_utc_datetimes_and_json(
    manager: DatabaseManager, session_id: int
) -> None:
    trade(manager, strategy_config={"risk": D("0.02"), "bad": float("nan")})

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
    manager = DatabaseManager(url, apply_migrations=False)  # trust auth ignores the password

    info = manager.get_database_info()

    assert "s3cret-pw" not in repr(info)
    assert "***" in info["database_url"]


def test_the_manager_keeps_working_after_close(manager: DatabaseManager, session_id: int) -> None:
    manager.close()
    manager.cleanup_connection_pool()

    trade(manager)

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
    position_id = position(manager)
    statuses = ["filled", "cancelled", "open", "partially_filled", "rejected", "pending"]
    for _ in range(15):
        order_id = manager.create_order(position_id, "full_exit", "BTCUSDT", "sell", "1", "s")
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
    position_id = position(manager)

    results = _race([lambda: manager.close_position(position_id, exit_price="105")] * 6)

    assert results.count(True) == 1 and results.count(False) == 5
