"""Time every `atb db ui` page with a million trades and a million snapshots (a measurement,
not a test; the target is < 300 ms per page).

    python scripts/bench_ui.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
                               [--trades 1000000] [--snapshots 1000000] [--runs 7]

Creates a scratch database on the server, migrates it, loads with COPY: 50 sessions, the first
(ended) holding 90 % of the trades and of the account snapshots, the rest spread over the others
(the two newest still running, so their figures come live from get_performance_metrics), 2,000
positions with 2 orders each and 100,000 system events. Then renders each page through Flask's
test client (database, SQL and template included) and prints the median and worst time of
`--runs` renders after one warm-up, and finally the big session's page while it is marked running
(its figures computed by get_performance_metrics). The scratch database is dropped at the end. Without --url or
TEST_DATABASE_URL the embedded local server is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402

from atb.db.manager import DatabaseManager  # noqa: E402
from atb.db.settings import parse_url, redact_url  # noqa: E402
from atb.testing import create_scratch_database, drop_database, migrate_to_head  # noqa: E402
from atb.ui.app import create_app  # noqa: E402
from atb.ui.config import UiConfig  # noqa: E402

SESSIONS = 50
TARGET_MS = 300.0
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
CHUNK = 100_000


def server_url(explicit: str | None) -> str:
    if explicit or os.environ.get("TEST_DATABASE_URL"):
        return explicit or os.environ["TEST_DATABASE_URL"]
    from atb.db import local

    return local.start().url_for("postgres")


def raw_connect(url: str):
    p = parse_url(url)
    kwargs = {
        "host": p.host,
        "port": p.port,
        "user": p.user,
        "password": p.password,
        "dbname": p.database,
    }
    return psycopg2.connect(**{k: v for k, v in kwargs.items() if v is not None})


def copy_rows(cur, table: str, columns: str, rows) -> None:
    """COPY `rows` (tuples) into `table` in chunks of CHUNK rows."""
    buffer, count = io.StringIO(), 0
    for row in rows:
        buffer.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
        count += 1
        if count % CHUNK == 0:
            buffer.seek(0)
            cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)
            buffer = io.StringIO()
    buffer.seek(0)
    cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)


def owner_of(i: int, total: int) -> int:
    """Session 1 owns the first 90 % of rows; the rest go round sessions 2..SESSIONS."""
    big = int(total * 0.9)
    return 1 if i < big else 2 + (i - big) % (SESSIONS - 1)


def load(url: str, trades: int, snapshots: int) -> None:
    conn = raw_connect(url)
    cur = conn.cursor()
    started = time.perf_counter()
    copy_rows(
        cur, "trading_sessions",
        "id, session_name, start_time, end_time, is_active, mode, initial_balance, strategy_name, symbol, timeframe",
        (
            (s, f"bench_{s}", T0 + dt.timedelta(days=s), None if s > SESSIONS - 2 else T0 + dt.timedelta(days=400 + s),
             "t" if s > SESSIONS - 2 else "f", "PAPER", "10000", f"strategy_{s % 5}", "BTCUSDT", "1m")
            for s in range(1, SESSIONS + 1)
        ),
    )  # fmt: skip
    cur.execute("SELECT setval('trading_sessions_id_seq', %s)", (SESSIONS,))
    copy_rows(
        cur, "trades",
        "symbol, side, source, entry_price, exit_price, size, entry_time, exit_time, pnl, pnl_percent, strategy_name, session_id, exit_reason",
        (
            ("BTCUSDT", "LONG" if i % 2 else "SHORT", "PAPER", "64000.50000000", f"{64000 + (i % 400) - 200}.12345678",
             "0.10000000", T0 + dt.timedelta(minutes=i), T0 + dt.timedelta(minutes=i, seconds=30),
             f"{(i % 400) - 195}.00000001", f"{((i % 400) - 195) / 1000:.8f}", "strategy_1", owner_of(i, trades), "tp")
            for i in range(trades)
        ),
    )  # fmt: skip
    copy_rows(
        cur, "account_history", '"timestamp", balance, equity, session_id',
        (
            (T0 + dt.timedelta(minutes=i), f"{10000 + 800 * math.sin(i / 20000):.8f}",
             f"{10000 + 800 * math.sin(i / 20000) + (i % 50):.8f}", owner_of(i, snapshots))
            for i in range(snapshots)
        ),
    )  # fmt: skip
    copy_rows(
        cur, "positions", "symbol, side, status, entry_price, size, entry_time, strategy_name, session_id",
        (
            ("BTCUSDT", "LONG", "OPEN" if i % 10 == 0 else "CLOSED", "64000.00000000", "0.10000000",
             T0 + dt.timedelta(hours=i), "strategy_1", 1)
            for i in range(2000)
        ),
    )  # fmt: skip
    copy_rows(
        cur, "orders",
        "position_id, order_type, status, internal_order_id, symbol, side, quantity, strategy_name, session_id",
        (
            (p, "ENTRY" if k == 0 else "FULL_EXIT", "FILLED", f"o{p}_{k}", "BTCUSDT", "LONG", "0.10000000", "strategy_1", 1)
            for p in range(1, 2001) for k in range(2)
        ),
    )  # fmt: skip
    severities = ("info", "info", "info", "warning", "error", "critical")
    kinds = ("ENGINE_START", "WARNING", "ERROR", "ALERT", "TEST", "MODEL_UPDATE")
    copy_rows(
        cur, "system_events", '"timestamp", event_type, severity, message, component, session_id',
        (
            (T0 + dt.timedelta(minutes=10 * i), kinds[i % 6], severities[i % 6], f"event {i}", "bench", owner_of(i, 100_000))
            for i in range(100_000)
        ),
    )  # fmt: skip
    conn.commit()
    cur.execute("SELECT id FROM trading_sessions WHERE end_time IS NOT NULL")
    ended = [row[0] for row in cur.fetchall()]
    conn.close()
    manager = DatabaseManager(url, apply_migrations=False, replace=True)
    for sid in ended:  # the totals the sessions list shows for ended sessions, computed in SQL
        manager._current_session_id = sid
        manager.end_trading_session(sid)
    conn = raw_connect(url)
    conn.autocommit = True
    conn.cursor().execute("VACUUM ANALYZE")
    conn.close()
    print(f"loaded {trades:,} trades, {snapshots:,} snapshots, 2,000 positions, 4,000 orders, "
          f"100,000 events in {time.perf_counter() - started:.1f} s")  # fmt: skip


def execute(url: str, sql: str) -> None:
    conn = raw_connect(url)
    try:
        conn.cursor().execute(sql)
        conn.commit()
    finally:
        conn.close()


def cursor_id(url: str, sql: str) -> int:
    conn = raw_connect(url)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchone()[0]
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--snapshots", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--keep", action="store_true", help="Keep the scratch database (prints its URL)."
    )
    parser.add_argument(
        "--reuse", metavar="URL", help="Time a database an earlier --keep run loaded."
    )
    args = parser.parse_args()
    server = server_url(args.url)
    url = args.reuse or migrate_to_head(create_scratch_database(server, "atb_bench_ui"))
    print(f"scratch database: {redact_url(url)}")
    try:
        if not args.reuse:
            load(url, args.trades, args.snapshots)
        manager = DatabaseManager(url, apply_migrations=False, replace=True)
        client = create_app(UiConfig(), manager).test_client()
        deep_trade = cursor_id(
            url,
            "SELECT id FROM trades WHERE session_id = 1 ORDER BY exit_time, id LIMIT 1 OFFSET 1000",
        )
        mid_event = cursor_id(
            url, "SELECT id FROM system_events ORDER BY timestamp, id LIMIT 1 OFFSET 5000"
        )
        pages = [
            ("sessions list", "/sessions"),
            ("sessions list, by strategy", "/sessions?sort=strategy"),
            ("session (900k trades/snapshots)", "/sessions/1"),
            ("  same, pnl sort asked (not offered)", "/sessions/1?t_sort=pnl"),
            ("  same, a deep trades page", f"/sessions/1?t_after={deep_trade}"),
            ("running session (live figures)", f"/sessions/{SESSIONS}"),
            ("  same, trades sorted by pnl", f"/sessions/{SESSIONS}?t_sort=pnl"),
            ("system events", "/events"),
            ("  severity=error", "/events?severity=error"),
            ("  type=ALERT, a deep page", f"/events?type=ALERT&after={mid_event}"),
            ("/health", "/health"),
        ]
        print(f"\n{'page':<36} {'median ms':>10} {'worst ms':>10}  target < {TARGET_MS:.0f} ms")
        misses = 0
        for label, path in pages:
            assert client.get(path).status_code == 200, path  # warm-up (and a check)
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, path
            median = statistics.median(times)
            verdict = "PASS" if median < TARGET_MS else "MISS"
            misses += verdict == "MISS"
            print(f"{label:<36} {median:>10.1f} {max(times):>10.1f}  {verdict}")
        started = time.perf_counter()
        manager.get_performance_metrics(session_id=1)
        metrics_ms = (time.perf_counter() - started) * 1000
        # The same 900k session, still running: its figures take get_performance_metrics.
        execute(url, "UPDATE trading_sessions SET is_active = true, end_time = NULL WHERE id = 1")
        try:
            fresh = create_app(UiConfig(), manager).test_client()
            started = time.perf_counter()
            first = fresh.get("/sessions/1")
            first_ms = (time.perf_counter() - started) * 1000
            computing = "computing" in first.get_data(as_text=True)
            time.sleep(metrics_ms / 1000 + 1)
            started = time.perf_counter()
            fresh.get("/sessions/1")
            later_ms = (time.perf_counter() - started) * 1000
        finally:
            execute(url, "UPDATE trading_sessions SET is_active = false, end_time = start_time "
                    "+ interval '400 days' WHERE id = 1")  # fmt: skip
        print(
            f"\nthe 900k session while running: get_performance_metrics takes {metrics_ms:.0f} ms, "
            f"so its first view renders in {first_ms:.0f} ms showing the figures as "
            f"{'computing' if computing else 'ready'}, the next in {later_ms:.0f} ms with them"
        )
        manager.close()
        return 1 if misses else 0
    finally:
        from atb.db import connection

        connection.disconnect()
        if not (args.keep or args.reuse):
            drop_database(server, url)


if __name__ == "__main__":
    raise SystemExit(main())
