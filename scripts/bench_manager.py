"""Measure DatabaseManager against the raw driver on PostgreSQL (a measurement, not a test).

    python scripts/bench_manager.py [--url postgresql://postgres@127.0.0.1:5432/postgres] [--calls 2000]
        [--threads 16] [--thread-calls 300] [--scale 5000000]

Creates a scratch database on the server, migrates it, and times, per call:
- every single-row write (log_trade, log_position, update_position, close_position, create_order,
  update_order_status, log_partial_trade, log_account_snapshot, log_event,
  log_strategy_execution, cache_prediction, get_cached_prediction, create_trading_session,
  end_trading_session) against raw psycopg2 in its default transaction mode (BEGIN, the
  statements, COMMIT: hand-written SQL for six of them, atb's own statements for the rest) and
  against raw psycopg2 sending atb's own statements in autocommit (captured from the manager in
  a rolled-back transaction), the three sides interleaved; each with its round trips per call
  (statements through execute_sql, as the tests' counter sees them, plus BEGIN and COMMIT);
- bulk: log_trades of 20,000 rows against execute_values (page_size 1000) and COPY;
- reads with 100,000 trades and 100 open positions (with orders) present: median milliseconds of
  get_recent_trades(50), get_active_positions(), get_performance_metrics(session_id=...) of a
  session with exactly 1,000 trades and 1,000 snapshots (each beside psycopg2 running the same
  SELECTs, for reference), and the all-time get_performance_metrics() against one hand-written
  SQL aggregate computing the same figures (the figures are checked to agree).
- startup and pool (scripts/bench_startup.py): the import time, the statements of a call after
  an idle minute's worth of pool idleness, checkout cost, CPU burnt waiting for a full pool;
- atb's own client CPU per call with a cursor that sends nothing (scripts/bench_overhead.py);
- `--threads N` (default 16): log_trade from N threads against raw psycopg2, a connection each;
- `--scale N`: N trades over 100 sessions, 8 symbols and a year in a second scratch database,
  the metrics and trade reads timed at that size (scripts/bench_scale.py).
Prints one table with each figure's target and PASS/MISS. The scratch databases are dropped at
the end. Without --url or TEST_DATABASE_URL the embedded local server is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402
import psycopg2.extras  # noqa: E402

from atb.db import connection  # noqa: E402
from atb.db.migrate import apply_pending_migrations  # noqa: E402
from atb.db.settings import redact_url  # noqa: E402
from atb.testing import create_scratch_database, drop_database, settings_for_tests  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_overhead  # noqa: E402
import bench_scale  # noqa: E402
import bench_startup  # noqa: E402

UTC = dt.UTC
D = decimal.Decimal
BULK_ROWS = 20_000
READ_TRADES = 100_000
OPEN_POSITIONS = 100
SESSION_TRADES = 1_000  # the session whose metrics are read
SNAPSHOTS = 20_000  # account_history rows present for the reads (1,000 of them that session's)
READ_SAMPLES = 50  # timed calls per fast read
AGGREGATE_RUNS = 9  # timed runs of each side of the all-time metrics comparison

TRADE_COLUMNS = (
    "symbol, side, source, entry_price, exit_price, size, quantity, entry_time, exit_time, pnl, "
    "pnl_percent, commission, stop_loss, take_profit, exit_reason, strategy_name, "
    "strategy_config, confidence_score, order_id, exchange, timeframe, mfe, mae, mfe_price, "
    "mae_price, mfe_time, mae_time, position_id, session_id, created_at, updated_at"
)
TRADE_INSERT = f"INSERT INTO trades ({TRADE_COLUMNS}) VALUES %s RETURNING id"
TRADE_INSERT_ONE = TRADE_INSERT.replace("%s", "(" + ", ".join(["%s"] * 31) + ")")
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
EVENT_INSERT = """
INSERT INTO system_events (timestamp, event_type, severity, message, details, component,
    error_code, stack_trace, alert_sent, alert_method, session_id, created_at)
VALUES (%s, %s, %s, %s, %s, %s, NULL, NULL, false, NULL, %s, %s) RETURNING id
"""
SNAPSHOT_INSERT = """
INSERT INTO account_history (timestamp, balance, equity, total_pnl, daily_pnl, open_positions,
    total_exposure, drawdown, margin_used, margin_available, session_id, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
"""
SNAPSHOT_COLUMNS = (
    "timestamp, balance, equity, total_pnl, daily_pnl, open_positions, total_exposure, drawdown,"
    " margin_used, margin_available, session_id, created_at"
)
# What a person would write by hand for get_performance_metrics(): one statement. {where} is
# empty for all time, or a session filter (then both tables are read through their
# (session_id, ...) indexes).
HAND_WRITTEN_METRICS = """
SELECT t.*, d.max_drawdown FROM (
    SELECT count(*) AS total_trades,
           count(*) FILTER (WHERE pnl > 0) AS winning_trades,
           count(*) FILTER (WHERE pnl < 0) AS losing_trades,
           sum(pnl) AS total_pnl,
           coalesce(sum(pnl) FILTER (WHERE pnl > 0), 0) AS gross_profit,
           coalesce(sum(pnl) FILTER (WHERE pnl < 0), 0) AS gross_loss,
           avg(pnl) FILTER (WHERE pnl > 0) AS avg_win,
           avg(pnl) FILTER (WHERE pnl < 0) AS avg_loss,
           max(pnl) AS best_trade, min(pnl) AS worst_trade,
           avg(pnl_percent) AS mean_pct, var_pop(pnl_percent) AS var_pct,
           avg(extract(epoch FROM exit_time - entry_time)) / 3600 AS avg_hours
    FROM trades{where}
) AS t CROSS JOIN (
    SELECT max((peak - balance) * 100 / peak) AS max_drawdown FROM (
        SELECT balance, max(balance) OVER (ORDER BY timestamp, id) AS peak
        FROM account_history{where}
    ) AS running WHERE peak > 0
) AS d
"""
ALL_TIME_METRICS = HAND_WRITTEN_METRICS.format(where="")
SESSION_METRICS = HAND_WRITTEN_METRICS.format(where=" WHERE session_id = %(session)s")
RECENT_TRADES = (
    "SELECT * FROM trades WHERE session_id = %s ORDER BY exit_time DESC, id DESC LIMIT 50"
)
OPEN_POSITIONS_SQL = (
    "SELECT * FROM positions WHERE status = 'OPEN' AND session_id = %s ORDER BY entry_time, id"
)
ORDERS_OF = "SELECT * FROM orders WHERE position_id = ANY(%s) ORDER BY position_id, created_at, id"
# figure: (kind, limit); kind "ratio" = manager / raw at most limit, "ms" = median below limit.
# Single-row writes: at most 1.0x raw psycopg2 in its default transaction mode and at most
# 1.1x raw psycopg2 sending atb's own SQL in autocommit (both limits must hold).
SINGLE_ROW_LIMITS = (1.0, 1.1)
TARGETS = {
    "get_recent_trades(50)": ("ms", 2.0), "get_active_positions()": ("ms", 5.0),
    "get_performance_metrics(session)": ("ms", 5.0),
    "get_performance_metrics() all-time": ("ratio", 1.5),
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every measurement on a scratch database, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument(
        "--threads",
        type=int,
        default=16,
        help="log_trade from this many threads (0: skip); the pool is sized to it",
    )
    parser.add_argument("--thread-calls", type=int, default=300, help="log_trade calls per thread")
    parser.add_argument("--scale", type=int, default=0, metavar="N",
                        help="also build N trades (and N/4 snapshots) and time the reads at that"
                             " size (0: skip; 5000000 takes minutes)")  # fmt: skip
    parser.add_argument(
        "--bulk-rows",
        type=int,
        default=BULK_ROWS,
        help="rows of the log_trades figure (the target is set at 1000000)",
    )
    parser.add_argument("--bulk-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bulk_child:
        url, session_id, rows_count = args.bulk_child
        _bulk_child(url, int(session_id), int(rows_count))
        return 0
    server_url = args.url or _local_server_url()
    if args.calls > 0:
        _in_scratch(server_url, "atb_bench", max(10, args.threads),
                    lambda manager, settings: _run(manager, settings, args))  # fmt: skip
    if args.scale > 0:
        _in_scratch(server_url, "atb_scale", 10,
                    lambda manager, settings: _run_scale(manager, settings, args.scale))  # fmt: skip
    return 0


def _in_scratch(server_url: str, prefix: str, pool_size: int,
                work: Callable[[Any, Any], None]) -> None:  # fmt: skip
    """Run `work(manager, settings)` on a migrated scratch database, dropped afterwards."""
    url = create_scratch_database(server_url, prefix)
    print(f"scratch database {redact_url(url)}")
    try:
        settings = settings_for_tests(url, pool_size=pool_size)
        db = connection.connect(settings=settings, replace=True)
        apply_pending_migrations(db=db)
        work(_manager(db), settings)
    finally:
        connection.disconnect()
        drop_database(server_url, url)


def _run_scale(manager: Any, settings: Any, trades: int) -> None:
    raw = psycopg2.connect(**_raw_params(settings))
    try:
        started = time.perf_counter()
        sessions = bench_scale.build(raw, trades, TRADE_COLUMNS, SNAPSHOT_COLUMNS)
        print(f"\nscale: {trades:,} trades and {trades // 4:,} snapshots over"
              f" {bench_scale.SESSIONS} sessions, {len(bench_scale.SYMBOLS)} symbols and a year,"
              f" plus {bench_scale.TODAY_TRADES:,} of each today; built in"
              f" {time.perf_counter() - started:.0f} s (COPY)")  # fmt: skip
        rows = bench_scale.scale_section(manager, sessions)
    finally:
        raw.close()
    print(f"{'figure':<60}{'manager':>9}{'full scan':>11}  {'target':<9}result")
    for label, ours, scan, target in rows:
        scan_text = "-" if scan is None else f"{scan:.1f}"
        print(f"{label:<60}{ours:>9.2f}{scan_text:>11}  {target:<9}"
              f"{bench_scale.verdict(ours, target)}")  # fmt: skip
    print("metrics: equal to the full-scan aggregate exactly (checked); full scan = the same"
          f" figures aggregated over every row, one run; medians of {bench_scale.SCALE_SAMPLES}"
          " calls.")  # fmt: skip


def _run_startup(manager: Any) -> None:
    rows = bench_startup.startup_section(manager, manager.database)
    print(f"\n{'startup and pool':<60}{'manager':>9}{'reference':>11}  {'target':<9}result")
    for label, ours, reference, target, verdict in rows:
        reference_text = "-" if reference is None else f"{reference:.2f}"
        print(f"{label:<60}{ours:>9.2f}{reference_text:>11}  {target:<9}{verdict}")
    print("import: fresh interpreters, bytecode compiled; reference = peewee + psycopg2 alone."
          "\nidle: statements through any cursor (a checkout ping included); reference = the same"
          " call right after another.")  # fmt: skip


def _run_threads(manager: Any, settings: Any, threads: int, per_thread: int) -> None:
    session_id = manager.create_trading_session("threads", "BTCUSDT", "1h", "paper", 10_000)
    ours, theirs = bench_scale.threads_section(
        manager, _raw_params(settings), threads, per_thread, session_id, _trade_args,
        _raw_log_trade,
    )  # fmt: skip
    ratio = ours / theirs
    verdict = "PASS" if ratio >= bench_scale.THREADS_RATIO else "MISS"
    print(f"\nlog_trade from {threads} threads (pool {settings.pool_size}), {per_thread} calls"
          f" each, one session: manager {ours:,.0f}/s, raw psycopg2 (a connection per thread)"
          f" {theirs:,.0f}/s, ratio {ratio:.2f} (target >= {bench_scale.THREADS_RATIO:g}x)"
          f" {verdict}")  # fmt: skip


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


def _compare(sides: list[Callable[[int], Any]], calls: int) -> list[float]:
    """Per-call µs of each side: the median over 20 blocks of calls/20 calls each, the sides
    taking turns in a rotating order, so a burst of noise on the shared host hits one block of
    each side rather than one side's total."""
    for i in range(min(50, calls)):  # warm up connections and caches
        for work in sides:
            work(-1 - i)
    blocks = max(1, min(20, calls))
    samples: list[list[float]] = [[] for _ in sides]
    for block in range(blocks):
        calls_in_block = range(block * calls // blocks, (block + 1) * calls // blocks)
        order = list(enumerate(sides))
        order = order[block % len(order) :] + order[: block % len(order)]
        for side, work in order:
            started = time.perf_counter()
            for i in calls_in_block:
                work(i)
            samples[side].append((time.perf_counter() - started) / len(calls_in_block) * 1e6)
    return [statistics.median(side) for side in samples]


class _Captured(Exception):
    """Raised to roll back the transaction a capture ran in."""


class Recorder:
    """Counts what the manager sends per call (query strings at the driver), and captures its
    statements so raw psycopg2 can replay atb's own SQL."""

    def __init__(self, manager: Any):
        self.manager = manager
        self.db = manager.database
        self.prefix = getattr(self.db, "_transaction_sql", "")

    def round_trips(self, work: Callable[[int], Any], indices: range) -> float:
        """Mean round trips per call of `work` over `indices` (run for real, in autocommit):
        the query strings the driver sends, BEGIN and COMMIT included (a BEGIN that rides in
        the first statement's query string is not a round trip of its own)."""
        self.db.close_all()
        self.db.connect_params["cursor_factory"] = _CountingCursor
        _CountingCursor.executed = 0
        try:
            for i in indices:
                work(i)
        finally:
            self.db.connect_params.pop("cursor_factory", None)
            self.db.close_all()
        return _CountingCursor.executed / len(indices)

    def capture(self, work: Callable[[int], Any], indices: range) -> dict[int, list[tuple]]:
        """The (sql, params) each call of `work` sends, run inside a transaction rolled back."""
        captured: dict[int, list[tuple]] = {}
        original = self.db.execute_sql
        current: list[tuple] = []

        def execute_sql(sql: str, params: Any = None) -> Any:
            if not sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO")):
                current.append((sql, params))
            return original(sql, params)

        session = self.manager._current_session_id
        self.db.execute_sql = execute_sql
        try:
            with self.manager.get_session():
                for i in indices:
                    current = []
                    returned = work(i)
                    # A later statement may use the id an earlier one returned (a session's
                    # ENGINE_START event): the replay puts its own new id there.
                    if type(returned) is int and len(current) > 1:
                        current[0] = (*current[0], returned)
                    captured[i] = current
                raise _Captured
        except _Captured:
            pass
        finally:
            del self.db.execute_sql
            self.manager._current_session_id = session
        return captured


def _replayer(raw: Any, captured: dict[int, list[tuple]], prefix: str = "") -> Callable[[int], Any]:
    """Raw psycopg2 sending the captured statements of call i (then COMMIT unless autocommit);
    with `prefix`, each one carries atb's SET LOCAL timeouts as atb's autocommit statements do."""

    def replay(i: int) -> None:
        returned = new_id = None
        with raw.cursor() as cur:
            for sql, params, *result in captured[i]:
                if returned is not None:
                    params = [new_id if value == returned else value for value in params]
                cur.execute(prefix + sql, params)
                rows = cur.fetchall() if cur.description is not None else []
                if result:
                    returned, new_id = result[0], rows[0][0]
        if not raw.autocommit:
            raw.commit()

    return replay


class _CountingCursor(psycopg2.extensions.cursor):
    executed = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        _CountingCursor.executed += 1
        return super().execute(*args, **kwargs)


def _captured_trips(captured: dict[int, list[tuple]]) -> float:
    return sum(len(statements) for statements in captured.values()) / len(captured)


def _raw_round_trips(raw: Any, work: Callable[[int], Any], indices: range) -> float:
    """Mean round trips per call of raw psycopg2 work: its statements, plus BEGIN and COMMIT
    when not in autocommit (psycopg2 sends BEGIN on its own before the first statement)."""
    _CountingCursor.executed = 0
    raw.cursor_factory = _CountingCursor
    try:
        for i in indices:
            work(i)
    finally:
        raw.cursor_factory = None
    extra = 0 if raw.autocommit else 2
    return _CountingCursor.executed / len(indices) + extra


def _trade_args(i: int, session_id: int) -> dict[str, Any]:
    exit_time = dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=i % 10_000)
    pnl = D(i % 7 - 3) + D("0.12345678")
    return {
        "symbol": "BTCUSDT", "side": "LONG", "entry_price": D("42000.5"),
        "exit_price": D("42000.5") + D(i % 201 - 100), "size": D("0.1"), "entry_time": exit_time - dt.timedelta(hours=1),
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
    with raw.cursor() as cur:
        cur.execute(TRADE_INSERT_ONE, _trade_tuple(args))
        trade_id = cur.fetchone()[0]
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


def _single_row(manager: Any, raw: Any, auto: Any, calls: int, session_id: int) -> list[tuple]:
    """Each single-row write against raw psycopg2 in its default transaction mode (BEGIN, the
    statements, COMMIT: hand-written SQL where written below, else atb's statements) and raw
    psycopg2 in autocommit sending atb's own statements. Lanes 0, 1, 2 (manager, raw, raw
    autocommit) work on distinct rows where a call consumes one (orders, positions, sessions)."""
    recorder = Recorder(manager)
    warm = min(50, calls)
    indices = range(-warm, calls)
    per_lane = calls + warm + 5  # the last 5 of each lane: the round-trip count
    counted = range(calls, calls + 5)
    positions = [manager.log_position("BTCUSDT", "long", D("42000.5"), D("0.1"), "bench")
                 for _ in range(3)]  # fmt: skip
    target = positions[0]
    orders = _working_orders(raw, positions, 3 * per_lane, session_id)
    to_close = [manager.log_position("BTCUSDT", "long", D("42000.5"), D("0.1"), "bench")
                for _ in range(3 * per_lane)]  # fmt: skip
    sessions = [_raw_session(raw) for _ in range(3 * per_lane)]
    manager.cache_prediction("hit", "m", "f", "c", D("42000"), D("0.9"), 1, ttl_seconds=3600)

    def lane(items: list[int], which: int, i: int) -> int:
        return items[which * per_lane + (i % per_lane)]

    def log_position(_: int, i: int) -> Any:
        return manager.log_position("BTCUSDT", "long", D("42000.5"), D("0.1"), "bench",
                                    quantity=D("0.01"), stop_loss=D("41000"),
                                    take_profit=D("44000"), session_id=session_id)  # fmt: skip

    def create_session(_: int, i: int) -> Any:
        current = manager._current_session_id
        try:
            return manager.create_trading_session("bench", "BTCUSDT", "1h", "paper", 10_000)
        finally:
            manager._current_session_id = current

    figures: list[tuple[str, Callable[[int, int], Any], Callable[[int], Any] | None]] = [
        ("log_trade", lambda _, i: manager.log_trade(**_trade_args(i, session_id)),
         lambda i: _raw_log_trade(raw, _trade_args(i, session_id))),
        ("log_position", log_position, lambda i: _raw_log_position(raw, i, session_id)),
        ("update_position",
         lambda _, i: manager.update_position(target, current_price=D(42000 + i % 100),
                                              unrealized_pnl=D(i % 50),
                                              unrealized_pnl_percent=D("0.5")),
         lambda i: _raw_execute(raw, POSITION_UPDATE, (D(42000 + i % 100), D(i % 50), D("0.5"),
                                                      _now(), _now(), target))),
        ("close_position",
         lambda which, i: manager.close_position(lane(to_close, which, i), exit_price=D("42100")),
         None),
        ("create_order",
         lambda _, i: manager.create_order(target, "partial_exit", "BTCUSDT", "short", D("0.01"),
                                           "bench", session_id=session_id), None),
        ("update_order_status",
         lambda which, i: manager.update_order_status(lane(orders, which, i), "partially_filled",
                                                      filled_quantity=D("0.005")),
         lambda i: _raw_execute(raw, ORDER_UPDATE, ("PARTIALLY_FILLED", _now(), D("0.005"),
                                                   D("0.005"), lane(orders, 1, i), D("0.005")))),
        ("log_partial_trade",
         lambda _, i: manager.log_partial_trade(target, "partial_exit", D("0.01"), D("42100")),
         None),
        ("log_account_snapshot",
         lambda _, i: manager.log_account_snapshot(**_snapshot_args(i), session_id=session_id),
         lambda i: _raw_log_snapshot(raw, _snapshot_args(i), session_id)),
        ("log_event",
         lambda _, i: manager.log_event("TEST", "bench event", details=_event_details(i),
                                        session_id=session_id),
         lambda i: _raw_log_event(raw, i, session_id)),
        ("log_strategy_execution",
         lambda _, i: manager.log_strategy_execution("bench", "BTCUSDT", "BUY", "open",
                                                     D("42000.5"), timeframe="1h",
                                                     indicators={"rsi": 31.5, "step": i},
                                                     session_id=session_id), None),
        ("cache_prediction",
         lambda _, i: manager.cache_prediction(f"key-{i % 100}", "m", "f", "c", D("42000"),
                                               D("0.9"), 1), None),
        ("get_cached_prediction", lambda _, i: manager.get_cached_prediction("hit"), None),
        ("create_trading_session", create_session, None),
        ("end_trading_session",
         lambda which, i: manager.end_trading_session(lane(sessions, which, i)), None),
    ]  # fmt: skip
    results = []
    for name, ours, hand_written in figures:
        replay_txn = recorder.capture(partial(ours, 1), indices)
        replay_auto = recorder.capture(partial(ours, 2), indices)
        raw_txn = hand_written or _replayer(raw, replay_txn)
        raw_auto = _replayer(auto, replay_auto, recorder.prefix)
        mine, theirs, theirs_auto = _compare([partial(ours, 0), raw_txn, raw_auto], calls)
        counts = (
            recorder.round_trips(partial(ours, 0), counted),
            _raw_round_trips(raw, hand_written, counted)
            if hand_written
            else _captured_trips(replay_txn) + 2,
            _captured_trips(replay_auto),
        )
        results.append((name, mine, theirs, theirs_auto, counts))
    return results


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _raw_session(raw: Any) -> int:
    with raw.cursor() as cur:
        cur.execute(
            "INSERT INTO trading_sessions (session_name, strategy_name, symbol, timeframe, mode,"
            " initial_balance, start_time) VALUES ('bench', 'bench', 'BTCUSDT', '1h', 'PAPER',"
            " 10000, now()) RETURNING id"
        )
        session = cur.fetchone()[0]
    raw.commit()
    return session


def _event_details(i: int) -> dict[str, Any]:
    return {"price": 42000.5, "signal": "buy", "step": i}


def _raw_log_event(raw: Any, i: int, session_id: int) -> int:
    now = dt.datetime.now(UTC)
    details = json.dumps(_event_details(i), separators=(",", ":"))
    with raw.cursor() as cur:
        cur.execute(
            EVENT_INSERT, (now, "TEST", "info", "bench event", details, None, session_id, now)
        )
        event_id = cur.fetchone()[0]
    raw.commit()
    return event_id


def _snapshot_args(i: int) -> dict[str, Any]:
    balance = D(10_000 + (i * 37) % 500)
    return {
        "balance": balance, "equity": balance + D("12.5"), "total_pnl": balance - 10_000,
        "open_positions": 1, "total_exposure": D("4200.05"), "drawdown": D("1.25"),
        "daily_pnl": D("3.5"), "margin_used": D("100"),
    }  # fmt: skip


def _raw_log_snapshot(raw: Any, args: dict[str, Any], session_id: int) -> int:
    now = dt.datetime.now(UTC)
    with raw.cursor() as cur:
        cur.execute(
            SNAPSHOT_INSERT,
            (now, args["balance"], args["equity"], args["total_pnl"], args["daily_pnl"],
             args["open_positions"], args["total_exposure"], args["drawdown"],
             args["margin_used"], args["balance"] - args["margin_used"], session_id, now),
        )  # fmt: skip
        snapshot_id = cur.fetchone()[0]
    raw.commit()
    return snapshot_id


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


def _bulk(url: str, raw: Any, session_id: int, rows_count: int) -> list[tuple]:
    """log_trades of `rows_count` rows given as a generator, in a child process (so its peak
    memory is its own), against execute_values and COPY of the same rows from this one."""
    child = subprocess.run(
        [sys.executable, __file__, "--bulk-child", url, str(session_id), str(rows_count)],
        capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    ours, growth_mb = measured["seconds"], measured["rss_growth_mb"]
    rows = (_trade_args(i, session_id) for i in range(rows_count))
    tuples = [_trade_tuple({**row, "order_id": uuid.uuid4().hex}) for row in rows]
    started = time.perf_counter()
    with raw.cursor() as cur:
        psycopg2.extras.execute_values(cur, TRADE_INSERT, tuples, page_size=1000, fetch=True)
    raw.commit()
    values = time.perf_counter() - started
    tuples = [_trade_tuple({**_trade_args(i, session_id), "order_id": uuid.uuid4().hex})
              for i in range(rows_count)]  # fmt: skip
    started = time.perf_counter()
    _copy_trades(raw, tuples)
    copy = time.perf_counter() - started
    del tuples
    label = f"log_trades {rows_count:,} (generator)"
    figures = [(f"{label} vs execute_values", ours * 1e3, values * 1e3, ("ratio", 1.0)),
               (f"{label} vs COPY", ours * 1e3, copy * 1e3, ("ratio", 1 / 0.8)),
               (f"{label}: peak memory growth, MB", growth_mb, None, ("MB", 100.0))]  # fmt: skip
    for name, _ours, _theirs, target in figures:
        TARGETS[name] = target
    return [figure[:3] for figure in figures]


def _bulk_child(url: str, session_id: int, rows_count: int) -> None:
    """In a fresh process: log_trades of a generator; prints seconds and peak RSS growth."""
    import resource

    db = connection.connect(settings=settings_for_tests(url), replace=True)
    manager = _manager(db)
    manager.log_trades([_trade_args(0, session_id)])  # warm: imports, connection, statements
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    ids = manager.log_trades(_trade_args(i, session_id) for i in range(rows_count))
    seconds = time.perf_counter() - started
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(ids) == rows_count
    print(json.dumps({"seconds": seconds, "rss_growth_mb": growth}))


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
    """Fill to READ_TRADES trades (SESSION_TRADES of them in a session of their own) and
    SNAPSHOTS snapshots, leave OPEN_POSITIONS open positions, then time the reads."""
    metrics_session = manager.create_trading_session("metrics", "BTCUSDT", "1h", "paper", 10_000)
    _copy_trades(raw, [_trade_tuple({**_trade_args(i, metrics_session), "order_id": None})
                       for i in range(SESSION_TRADES)])  # fmt: skip
    _copy_snapshots(raw, metrics_session, SESSION_TRADES, 0)
    with raw.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM account_history)")
        trades, snapshots = cur.fetchone()
    _copy_trades(raw, [_trade_tuple({**_trade_args(i, session_id), "order_id": None})
                       for i in range(max(0, READ_TRADES - trades))])  # fmt: skip
    _copy_snapshots(raw, session_id, max(0, SNAPSHOTS - snapshots), snapshots)
    # The session is over; ending it also makes the all-time call below see every trade.
    manager.end_trading_session(metrics_session)
    with raw.cursor() as cur:  # exactly OPEN_POSITIONS open ones, each with its ENTRY order
        cur.execute("UPDATE positions SET status = 'CLOSED'")
    raw.commit()
    for _ in range(OPEN_POSITIONS):
        _raw_log_position(raw, 0, session_id)
    raw.autocommit = True
    with raw.cursor() as cur:  # what autovacuum would have done by now on a live server
        cur.execute("VACUUM ANALYZE")
    raw.autocommit = False
    # (figure, manager call, psycopg2 doing the same reads: a reference, the target is absolute)
    checks: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("get_recent_trades(50)",
         lambda: manager.get_recent_trades(50, session_id=session_id),
         lambda: _raw_read(raw, RECENT_TRADES, (session_id,))),
        ("get_active_positions()",
         lambda: manager.get_active_positions(session_id=session_id),
         lambda: _raw_active_positions(raw, session_id)),
        ("get_performance_metrics(session)",
         lambda: manager.get_performance_metrics(session_id=metrics_session),
         lambda: _raw_read(raw, SESSION_METRICS, {"session": metrics_session})),
    ]  # fmt: skip
    samples: dict[str, tuple[list[float], list[float]]] = {}
    for name, ours, theirs in checks:
        ours(), theirs()
        samples[name] = ([], [])
    # Round robin over the reads and both sides, so a burst of noise on the shared host is
    # spread over every figure instead of swallowing one figure's whole run.
    for _ in range(READ_SAMPLES):
        for name, ours, theirs in checks:
            for side, work in enumerate((ours, theirs)):
                started = time.perf_counter()
                work()
                samples[name][side].append((time.perf_counter() - started) * 1e3)
    results: list[tuple] = [
        (name, statistics.median(mine), statistics.median(reference))
        for name, (mine, reference) in samples.items()
    ]
    session_figures = manager.get_performance_metrics(session_id=metrics_session)
    if session_figures["total_trades"] != SESSION_TRADES:
        raise AssertionError(f"session metrics saw {session_figures['total_trades']} trades")
    results.append(("get_performance_metrics() all-time", *_all_time(manager, raw)))
    return results


def _copy_snapshots(raw: Any, session_id: int, count: int, offset: int) -> None:
    """`count` snapshots of a random-walk balance, one a minute, through COPY."""
    start = dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=offset)
    now = dt.datetime.now(UTC).isoformat()
    lines, balance = [], D(10_000)
    for i in range(count):
        balance += D((i * 7919) % 201 - 99) / 10
        when = (start + dt.timedelta(minutes=i)).isoformat()
        lines.append(f"{when}\t{balance}\t{balance}\t{balance - 10_000}\t0\t1\t100\t0\t0"
                     f"\t{balance}\t{session_id}\t{now}\n")  # fmt: skip
    with raw.cursor() as cur:
        cur.copy_expert(
            f"COPY account_history ({SNAPSHOT_COLUMNS}) FROM STDIN", io.StringIO("".join(lines))
        )
    raw.commit()


def _raw_read(raw: Any, sql: str, params: Any) -> list[tuple]:
    with raw.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    raw.commit()
    return rows


def _raw_active_positions(raw: Any, session_id: int) -> list[tuple]:
    with raw.cursor() as cur:
        cur.execute(OPEN_POSITIONS_SQL, (session_id,))
        positions = cur.fetchall()
        cur.execute(ORDERS_OF, ([row[0] for row in positions],))
        cur.fetchall()
    raw.commit()
    return positions


def _hand_written(raw: Any) -> dict[str, Any]:
    with raw.cursor() as cur:
        cur.execute(ALL_TIME_METRICS)
        names = [column[0] for column in cur.description]
        row = dict(zip(names, cur.fetchone(), strict=True))
    raw.commit()
    return row


def _all_time(manager: Any, raw: Any) -> tuple[float, float]:
    """Median ms of the all-time metrics and of the hand-written query, alternating runs;
    the figures must agree."""
    ours, theirs = manager.get_performance_metrics(), _hand_written(raw)
    _check_same_figures(ours, theirs)
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(AGGREGATE_RUNS):
        for side, work in enumerate((manager.get_performance_metrics, lambda: _hand_written(raw))):
            started = time.perf_counter()
            work()
            samples[side].append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples[0]), statistics.median(samples[1])


def _check_same_figures(ours: dict[str, Any], row: dict[str, Any]) -> None:
    total = row["total_trades"]
    expected = {
        "total_trades": total, "winning_trades": row["winning_trades"],
        "losing_trades": row["losing_trades"], "total_pnl": row["total_pnl"],
        "avg_win": row["avg_win"], "avg_loss": row["avg_loss"],
        "best_trade": row["best_trade"], "worst_trade": row["worst_trade"],
        "max_drawdown": row["max_drawdown"], "avg_trade_duration_hours": row["avg_hours"],
        "profit_factor": row["gross_profit"] / -row["gross_loss"],
        "sharpe_ratio": row["mean_pct"] / D(row["var_pct"]).sqrt() if row["var_pct"] else 0,
    }  # fmt: skip
    for key, value in expected.items():
        if not math.isclose(float(ours[key]), float(value), rel_tol=1e-6, abs_tol=1e-9):
            raise AssertionError(f"all-time {key}: manager {ours[key]!r}, hand-written {value!r}")


def _verdict(name: str, ours: float, theirs: float | None) -> tuple[str, str]:
    if name not in TARGETS:
        return "info", "-"
    kind, limit = TARGETS[name]
    if kind == "ratio":
        return f"<= {limit:.3g}x", "PASS" if theirs and ours / theirs <= limit else "MISS"
    return f"< {limit:g} {kind}", "PASS" if ours < limit else "MISS"


def _run(manager: Any, settings: Any, args: Any) -> None:
    _run_startup(manager)
    raw = psycopg2.connect(**_raw_params(settings))
    auto = psycopg2.connect(**_raw_params(settings))
    auto.autocommit = True
    try:
        _run_single_bulk_reads(manager, raw, auto, args.calls, settings.url, args.bulk_rows)
    finally:
        raw.close()
        auto.close()
    if args.threads > 0:
        _run_threads(manager, settings, args.threads, args.thread_calls)


def _run_single_bulk_reads(
    manager: Any, raw: Any, auto: Any, calls: int, url: str, bulk_rows: int
) -> None:
    with raw.cursor() as cur:
        cur.execute("SHOW server_version")
        print(f"PostgreSQL {cur.fetchone()[0]}")
    raw.commit()
    session_id = manager.create_trading_session("bench", "BTCUSDT", "1h", "paper", 10_000)
    started = time.perf_counter()
    single = _single_row(manager, raw, auto, calls, session_id)
    print(
        f"\n{'single-row write (µs/call)':<28}{'manager':>8}{'trips':>6}"
        f"{'raw txn':>9}{'trips':>6}{'ratio':>7}{'raw auto':>10}{'trips':>6}{'ratio':>7}  result"
    )
    limit_txn, limit_auto = SINGLE_ROW_LIMITS
    for name, ours, theirs, theirs_auto, (n_ours, n_raw, n_auto) in single:
        ratio, ratio_auto = ours / theirs, ours / theirs_auto
        verdict = "PASS" if ratio <= limit_txn and ratio_auto <= limit_auto else "MISS"
        print(
            f"{name:<28}{ours:>8.0f}{n_ours:>6.1f}{theirs:>9.0f}{n_raw:>6.1f}{ratio:>7.2f}"
            f"{theirs_auto:>10.0f}{n_auto:>6.1f}{ratio_auto:>7.2f}  {verdict}"
        )
    print(
        f"targets: ratio <= {limit_txn:g}x raw psycopg2 in its default transaction mode (BEGIN,"
        " the statements, COMMIT; hand-written SQL for log_trade, log_position, update_position,"
        "\nupdate_order_status, log_account_snapshot, log_event, else atb's statements) and <="
        f" {limit_auto:g}x raw psycopg2 sending atb's own statements in autocommit."
        "\ntrips: round trips per call (query strings the driver sends, BEGIN and COMMIT"
        " included)."
    )
    bulk = _bulk(url, raw, session_id, bulk_rows)
    reads = _reads(manager, raw, session_id)
    rows = [(name if "MB" in name else f"{name} (ms)", name, ours, theirs)
            for name, ours, theirs in bulk]  # fmt: skip
    rows += [(f"{name} (median ms)", name, ours, theirs) for name, ours, theirs in reads]
    print(f"\n{'figure':<48}{'manager':>9}{'raw':>9}{'ratio':>7}  {'target':<9}result")
    for label, name, ours, theirs in rows:
        target, verdict = _verdict(name, ours, theirs)
        digits = 0 if ours >= 100 else 2
        raw_text = "-" if theirs is None else f"{theirs:.{digits}f}"
        ratio = "-" if theirs is None else f"{ours / theirs:.2f}"
        print(f"{label:<48}{ours:>9.{digits}f}{raw_text:>9}{ratio:>7}  {target:<9}{verdict}")
    print(
        f"\nwrites: µs/call, median of 20 rotating blocks ({calls} calls a side)."
        f"\nreads: {READ_TRADES:,} trades, {SNAPSHOTS:,} snapshots, {OPEN_POSITIONS} open"
        f" positions; the session has {SESSION_TRADES:,} trades; medians of {READ_SAMPLES} calls,"
        " taken round robin; raw = psycopg2 running the same SELECTs (a reference: the target is"
        " absolute; for the session metrics, the hand-written query)."
        "\nall-time: manager vs one hand-written aggregate query (same figures, checked),"
        f" median of {AGGREGATE_RUNS} alternating runs each."
    )
    _run_overhead(manager, session_id)
    print(f"total {time.perf_counter() - started:.1f}s")


def _run_overhead(manager: Any, session_id: int) -> None:
    rows = bench_overhead.overhead_section(manager, manager.database, session_id)
    print(f"\n{'atb client CPU per call, nothing sent (µs)':<48}{'back to back':>13}"
          f"{'after 1 ms idle':>17}")  # fmt: skip
    for name, hot, cold in rows:
        print(f"{name:<48}{hot:>13.1f}{cold:>17.1f}")
    print("the pool's connections answer every statement at once (scripts/bench_overhead.py):"
          " validation, binding, pool and retry machinery only; information, best of 7 blocks"
          " (after idle: best of 5 blocks of 200 calls, each after a 1 ms sleep).")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
