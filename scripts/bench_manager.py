"""Measure DatabaseManager against the raw driver on PostgreSQL (a measurement, not a test).

    python scripts/bench_manager.py [--url postgresql://postgres@127.0.0.1:5432/postgres] [--calls 2000]

Creates a scratch database on the server, migrates it, and times, per call:
- single-row writes: log_trade, log_position, update_position, update_order_status, each against
  psycopg2 doing the same INSERT/UPDATE statements and COMMIT on one connection;
- bulk: log_trades of 20,000 rows against execute_values (page_size 1000) and COPY;
- reads with 100,000 trades and 100 open positions (with orders) present: median milliseconds.
The scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402

from atb.db import connection  # noqa: E402
from atb.db.migrate import apply_pending_migrations  # noqa: E402
from atb.db.settings import redact_url  # noqa: E402
from atb.testing import create_scratch_database, drop_database, settings_for_tests  # noqa: E402

UTC = dt.UTC
D = decimal.Decimal
BULK_ROWS = 20_000
READ_TRADES = 100_000
OPEN_POSITIONS = 100

TRADE_COLUMNS = (
    "symbol, side, source, entry_price, exit_price, size, quantity, entry_time, exit_time, pnl, "
    "pnl_percent, commission, stop_loss, take_profit, exit_reason, strategy_name, "
    "strategy_config, confidence_score, order_id, exchange, timeframe, mfe, mae, mfe_price, "
    "mae_price, mfe_time, mae_time, position_id, session_id, created_at, updated_at"
)
TRADE_INSERT = f"INSERT INTO trades ({TRADE_COLUMNS}) VALUES %s RETURNING id"
TRADE_INSERT_ONE = TRADE_INSERT.replace("%s", "(" + ", ".join(["%s"] * 31) + ")")
DAILY_UPSERT = """
INSERT INTO performance_metrics (period, period_start, period_end, session_id, total_trades,
    winning_trades, losing_trades, win_rate, total_return, best_trade_pnl, worst_trade_pnl,
    updated_at)
VALUES ('daily', %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (period, period_start, session_id) DO UPDATE SET
    total_trades = performance_metrics.total_trades + EXCLUDED.total_trades,
    winning_trades = performance_metrics.winning_trades + EXCLUDED.winning_trades,
    losing_trades = performance_metrics.losing_trades + EXCLUDED.losing_trades,
    win_rate = 100.0 * (performance_metrics.winning_trades + EXCLUDED.winning_trades)
        / (performance_metrics.total_trades + EXCLUDED.total_trades),
    total_return = performance_metrics.total_return + EXCLUDED.total_return,
    best_trade_pnl = GREATEST(performance_metrics.best_trade_pnl, EXCLUDED.best_trade_pnl),
    worst_trade_pnl = LEAST(performance_metrics.worst_trade_pnl, EXCLUDED.worst_trade_pnl),
    updated_at = EXCLUDED.updated_at
"""
POSITION_INSERT = """
INSERT INTO positions (symbol, side, status, entry_price, size, quantity, original_size,
    current_size, stop_loss, take_profit, strategy_name, entry_time, exchange, session_id,
    confidence_score, end_of_day_exit, weekend_exit, created_at, updated_at, last_update)
VALUES (%s, %s, 'OPEN', %s, %s, %s, %s, 1, %s, %s, %s, %s, 'binance', %s, %s, false, false,
    %s, %s, %s) RETURNING id
"""
ORDER_INSERT = """
INSERT INTO orders (position_id, order_type, status, exchange_order_id, internal_order_id, symbol,
    side, quantity, price, filled_quantity, filled_price, average_fill_price, filled_at,
    strategy_name, session_id, size_fraction, commission, created_at, last_update)
VALUES (%s, 'ENTRY', 'FILLED', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, 0, %s, %s)
"""
POSITION_UPDATE = """
UPDATE positions SET current_price = %s, unrealized_pnl = %s, unrealized_pnl_percent = %s,
    last_update = %s, updated_at = %s
WHERE id = %s AND status = 'OPEN'
"""
ORDER_UPDATE = """
UPDATE orders SET status = %s, last_update = %s,
    filled_quantity = CASE WHEN filled_quantity > %s THEN filled_quantity ELSE %s END
WHERE id = %s AND status NOT IN ('CANCELLED', 'FAILED', 'FILLED') AND quantity >= %s
"""


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every measurement on a scratch database, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    server_url = args.url or _local_server_url()
    url = create_scratch_database(server_url, "atb_bench")
    print(f"scratch database {redact_url(url)}; {args.calls} calls per single-row figure")
    try:
        settings = settings_for_tests(url)
        db = connection.connect(settings=settings)
        apply_pending_migrations(db=db)
        manager = _manager(db)
        raw = psycopg2.connect(**_raw_params(settings))
        try:
            _run(manager, raw, args.calls)
        finally:
            raw.close()
    finally:
        connection.disconnect()
        drop_database(server_url, url)
    return 0


def _local_server_url() -> str:
    from atb.db import local

    return local.start().url_for("postgres")


def _raw_params(settings: Any) -> dict[str, Any]:
    params = settings.connect_params()
    params["dbname"] = params.pop("database")
    return params


def _manager(db: Any) -> Any:
    from atb.db.manager import DatabaseManager

    return DatabaseManager(database=db, apply_migrations=False)


def _compare(ours: Callable[[int], Any], theirs: Callable[[int], Any], calls: int) -> tuple:
    """Per-call µs of both, timed in alternating blocks so drift in a noisy host hits both alike."""
    for i in range(min(50, calls)):  # warm up connections and caches
        ours(-1 - i)
        theirs(-1 - i)
    totals = [0.0, 0.0]
    blocks = 10
    for block in range(blocks):
        for side, work in enumerate((ours, theirs)):
            started = time.perf_counter()
            for i in range(block * calls // blocks, (block + 1) * calls // blocks):
                work(i)
            totals[side] += time.perf_counter() - started
    return totals[0] / calls * 1e6, totals[1] / calls * 1e6


def _trade_args(i: int, session_id: int) -> dict[str, Any]:
    exit_time = dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=i % 10_000)
    pnl = D(i % 7 - 3) + D("0.12345678")
    return {
        "symbol": "BTCUSDT", "side": "LONG", "entry_price": D("42000.5"),
        "exit_price": D("42100.25"), "size": D("0.1"), "entry_time": exit_time - dt.timedelta(hours=1),
        "exit_time": exit_time, "pnl": pnl, "exit_reason": "take_profit", "strategy_name": "bench",
        "order_id": uuid.uuid4().hex, "quantity": D("0.01"), "commission": D("0.42"),
        "timeframe": "1h", "session_id": session_id,
    }  # fmt: skip


def _trade_tuple(args: dict[str, Any]) -> tuple:
    now = dt.datetime.now(UTC)
    pct = (args["exit_price"] - args["entry_price"]) / args["entry_price"] * 100
    return (
        args["symbol"], args["side"], "LIVE", args["entry_price"], args["exit_price"],
        args["size"], args["quantity"], args["entry_time"], args["exit_time"], args["pnl"],
        pct.quantize(D("0.00000001")), args["commission"], None, None, args["exit_reason"],
        args["strategy_name"], None, None, args["order_id"], "binance", args["timeframe"],
        0, 0, None, None, None, None, None, args["session_id"], now, now,
    )  # fmt: skip


def _raw_log_trade(raw: Any, args: dict[str, Any]) -> int:
    day = args["exit_time"].replace(hour=0, minute=0, second=0, microsecond=0)
    pnl = args["pnl"]
    with raw.cursor() as cur:
        cur.execute(TRADE_INSERT_ONE, _trade_tuple(args))
        trade_id = cur.fetchone()[0]
        win = 1 if pnl > 0 else 0
        cur.execute(
            DAILY_UPSERT,
            (day, day + dt.timedelta(days=1), args["session_id"], win, 1 if pnl < 0 else 0,
             100 * win, pnl, pnl, pnl, dt.datetime.now(UTC)),
        )  # fmt: skip
    raw.commit()
    return trade_id


def _raw_log_position(raw: Any, i: int, session_id: int) -> int:
    now = dt.datetime.now(UTC)
    with raw.cursor() as cur:
        cur.execute(
            POSITION_INSERT,
            ("BTCUSDT", "LONG", D("42000.5"), D("0.1"), D("0.01"), D("0.1"), D("41000"),
             D("44000"), "bench", now, session_id, None, now, now, now),
        )  # fmt: skip
        position_id = cur.fetchone()[0]
        cur.execute(
            ORDER_INSERT,
            (position_id, None, f"atb-{uuid.uuid4().hex}", "BTCUSDT", "LONG", D("0.01"),
             D("42000.5"), D("0.01"), D("42000.5"), D("42000.5"), now, "bench", session_id,
             now, now),
        )  # fmt: skip
    raw.commit()
    return position_id


def _raw_execute(raw: Any, sql: str, params: tuple) -> None:
    with raw.cursor() as cur:
        cur.execute(sql, params)
    raw.commit()


def _single_row(manager: Any, raw: Any, calls: int, session_id: int) -> list[tuple]:
    results = []
    results.append(("log_trade", *_compare(
        lambda i: manager.log_trade(**_trade_args(i, session_id)),
        lambda i: _raw_log_trade(raw, _trade_args(i, session_id)), calls)))  # fmt: skip
    positions: list[int] = []

    def log_position(i: int) -> None:
        positions.append(
            manager.log_position("BTCUSDT", "long", D("42000.5"), D("0.1"), "bench",
                                 quantity=D("0.01"), stop_loss=D("41000"), take_profit=D("44000"))
        )  # fmt: skip

    results.append(("log_position", *_compare(
        log_position, lambda i: _raw_log_position(raw, i, session_id), calls)))  # fmt: skip
    target = positions[0]

    def update_position(i: int) -> None:
        manager.update_position(target, current_price=D(42000 + i % 100), unrealized_pnl=D(i % 50),
                                unrealized_pnl_percent=D("0.5"))  # fmt: skip

    def raw_update_position(i: int) -> None:
        now = dt.datetime.now(UTC)
        _raw_execute(
            raw, POSITION_UPDATE, (D(42000 + i % 100), D(i % 50), D("0.5"), now, now, target)
        )

    results.append(("update_position", *_compare(update_position, raw_update_position, calls)))
    orders = _working_orders(raw, positions, 2 * (calls + 100), session_id)
    mine, theirs = orders[: calls + 100], orders[calls + 100 :]

    def update_order(i: int) -> None:
        manager.update_order_status(mine[i], "partially_filled", filled_quantity=D("0.005"))

    def raw_update_order(i: int) -> None:
        now = dt.datetime.now(UTC)
        fill = D("0.005")
        _raw_execute(raw, ORDER_UPDATE, ("PARTIALLY_FILLED", now, fill, fill, theirs[i], fill))

    results.append(("update_order_status", *_compare(update_order, raw_update_order, calls)))
    return results


def _working_orders(raw: Any, positions: list[int], count: int, session_id: int) -> list[int]:
    rows = [
        (positions[i % len(positions)], "PARTIAL_EXIT", "PENDING", f"bench-{i}", "BTCUSDT",
         "SHORT", D("0.01"), "bench", session_id)
        for i in range(count)
    ]  # fmt: skip
    with raw.cursor() as cur:
        ids = psycopg2.extras.execute_values(
            cur,
            "INSERT INTO orders (position_id, order_type, status, internal_order_id, symbol, side,"
            " quantity, strategy_name, session_id) VALUES %s RETURNING id",
            rows,
            page_size=1000,
            fetch=True,
        )
    raw.commit()
    # Negative indexes (the warm-up calls) wrap to the end of the list, which is never timed.
    return [row[0] for row in ids]


def _bulk(manager: Any, raw: Any, session_id: int) -> list[tuple]:
    rows = [_trade_args(i, session_id) for i in range(BULK_ROWS)]
    started = time.perf_counter()
    manager.log_trades(rows)
    ours = time.perf_counter() - started
    tuples = [_trade_tuple({**row, "order_id": uuid.uuid4().hex}) for row in rows]
    started = time.perf_counter()
    with raw.cursor() as cur:
        psycopg2.extras.execute_values(cur, TRADE_INSERT, tuples, page_size=1000, fetch=True)
    raw.commit()
    values = time.perf_counter() - started
    started = time.perf_counter()
    _copy_trades(raw, [_trade_tuple({**row, "order_id": uuid.uuid4().hex}) for row in rows])
    copy = time.perf_counter() - started
    return [("log_trades 20k vs execute_values", ours * 1e3, values * 1e3),
            ("log_trades 20k vs COPY", ours * 1e3, copy * 1e3)]  # fmt: skip


def _copy_trades(raw: Any, tuples: list[tuple]) -> None:
    def cell(value: Any) -> str:
        if value is None:
            return "\\N"
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return str(value)

    buffer = io.StringIO("".join("\t".join(cell(v) for v in row) + "\n" for row in tuples))
    with raw.cursor() as cur:
        cur.copy_expert(f"COPY trades ({TRADE_COLUMNS}) FROM STDIN", buffer)
    raw.commit()


def _reads(manager: Any, raw: Any, session_id: int) -> list[tuple]:
    with raw.cursor() as cur:
        cur.execute("SELECT count(*) FROM trades")
        present = cur.fetchone()[0]
    missing = max(0, READ_TRADES - present)
    _copy_trades(raw, [_trade_tuple({**_trade_args(i, session_id), "order_id": None})
                       for i in range(missing)])  # fmt: skip
    with raw.cursor() as cur:  # exactly OPEN_POSITIONS open ones, each with its ENTRY order
        cur.execute("UPDATE positions SET status = 'CLOSED'")
    raw.commit()
    for _ in range(OPEN_POSITIONS):
        _raw_log_position(raw, 0, session_id)
    with raw.cursor() as cur:
        cur.execute("ANALYZE")
    raw.commit()
    checks: list[tuple[str, Callable[[], Any]]] = [
        ("get_recent_trades(50)", lambda: manager.get_recent_trades(50, session_id=session_id)),
        ("get_active_positions()", lambda: manager.get_active_positions(session_id=session_id)),
    ]
    if hasattr(manager, "get_performance_metrics"):
        checks.append(("get_performance_metrics()",
                       lambda: manager.get_performance_metrics(session_id=session_id)))  # fmt: skip
    results = []
    for name, read in checks:
        read()
        samples = []
        for _ in range(50):
            started = time.perf_counter()
            read()
            samples.append((time.perf_counter() - started) * 1e3)
        results.append((name, statistics.median(samples)))
    return results


def _run(manager: Any, raw: Any, calls: int) -> None:
    session_id = manager.create_trading_session("bench", "BTCUSDT", "1h", "paper", 10_000)
    started = time.perf_counter()
    single = _single_row(manager, raw, calls, session_id)
    bulk = _bulk(manager, raw, session_id)
    reads = _reads(manager, raw, session_id)
    print(f"\n{'single-row write':<34}{'manager µs':>12}{'raw µs':>10}{'ratio':>8}")
    for name, ours, theirs in single:
        print(f"{name:<34}{ours:>12.0f}{theirs:>10.0f}{ours / theirs:>8.2f}")
    print(f"\n{'bulk (20,000 rows)':<34}{'manager ms':>12}{'raw ms':>10}{'ratio':>8}")
    for name, ours, theirs in bulk:
        print(f"{name:<34}{ours:>12.0f}{theirs:>10.0f}{ours / theirs:>8.2f}")
    print(f"\n{'read (100k trades, 100 positions)':<34}{'median ms':>12}")
    for name, median in reads:
        print(f"{name:<34}{median:>12.2f}")
    print(
        "\nraw = psycopg2 on one connection, BEGIN + the same statements + COMMIT per call. On"
        " PostgreSQL the manager sends log_trade (trade + daily upsert) and log_position"
        " (position + ENTRY order) as one statement each; update_* are one UPDATE each."
    )
    print(f"total {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    raise SystemExit(main())
