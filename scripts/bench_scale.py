"""The concurrency and scale sections of scripts/bench_manager.py (`--threads N`, `--scale N`).

- threads: `log_trade` from N threads sharing one manager (its pool sized N) against raw
  psycopg2 with one connection per thread inserting the same trades; trades per second of each,
  best of alternating rounds; target >= 0.9x.
- scale: a scratch database with N trades and N/4 account snapshots over 100 sessions, 8
  symbols and the year up to yesterday (built with COPY), plus a live tail of today. Times the
  first rollup build, then the all-time and per-session `get_performance_metrics` (target
  < 20 ms) against the full-scan aggregate it must equal exactly (checked, Decimal for
  Decimal), and the trade reads that grow with the table (on the client, and on the server as
  EXPLAIN ANALYZE times them).
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2

UTC = dt.UTC
D = decimal.Decimal
SESSIONS = 100
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT")
TODAY_TRADES = 2_000  # the live tail: trades and snapshots of today, not rolled up
COPY_CHUNK = 200_000
SCALE_SAMPLES = 21
METRICS_LIMIT_MS = 20.0
THREADS_RATIO = 0.9


# --------------------------------------------------------------------------------------------------
# threads


def threads_section(
    manager: Any, raw_params: dict[str, Any], threads: int, per_thread: int, session_id: int,
    trade_args: Callable[[int, int], dict[str, Any]], raw_log_trade: Callable[[Any, dict], int],
) -> tuple[float, float]:  # fmt: skip
    """Trades per second: (manager, raw), the best of three alternating rounds each."""
    raws = [psycopg2.connect(**raw_params) for _ in range(threads)]

    def live(i: int) -> dict[str, Any]:  # a trade of now, as a live engine logs it
        args = trade_args(i, session_id)
        now = dt.datetime.now(UTC)
        return {**args, "exit_time": now, "entry_time": now - dt.timedelta(minutes=30)}

    def ours(worker: int) -> None:
        for i in range(per_thread):
            manager.log_trade(**live(worker * per_thread + i))

    def theirs(worker: int) -> None:
        for i in range(per_thread):
            raw_log_trade(raws[worker], live(worker * per_thread + i))

    try:
        rates: tuple[list[float], list[float]] = ([], [])
        for _ in range(3):
            for side, work in enumerate((ours, theirs)):
                rates[side].append(threads * per_thread / _wall(work, threads))
    finally:
        for connection in raws:
            connection.close()
    return max(rates[0]), max(rates[1])


def _wall(work: Callable[[int], None], threads: int) -> float:
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        start.wait()
        try:
            work(worker)
        except BaseException as exc:  # noqa: BLE001 - reported after the join
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------------
# scale


def build(raw: Any, trades: int, trade_columns: str, snapshot_columns: str) -> list[int]:
    """Fill an empty migrated database; returns the session ids."""
    with raw.cursor() as cur:
        cur.execute(
            "INSERT INTO trading_sessions (session_name, strategy_name, symbol, timeframe, mode,"
            " initial_balance, start_time) SELECT 'scale-' || g, 'bench', 'BTCUSDT', '1h',"
            " 'PAPER', 10000, now() - interval '366 days' FROM generate_series(1, %s) g"
            " RETURNING id",
            (SESSIONS,),
        )
        sessions = [row[0] for row in cur.fetchall()]
    raw.commit()
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    year_start = today - dt.timedelta(days=365)
    span = (today - year_start).total_seconds()
    live_span = max(1.0, (dt.datetime.now(UTC) - today).total_seconds() - 1)
    snapshots = trades // 4

    def trade_lines(first: int, last: int) -> Iterator[str]:
        now = dt.datetime.now(UTC).isoformat()
        for i in range(first, last):
            if i < trades:
                exit_time = year_start + dt.timedelta(seconds=span * i / trades)
            else:  # today's live tail
                exit_time = today + dt.timedelta(seconds=live_span * (i - trades) / TODAY_TRADES)
            entry_time = exit_time - dt.timedelta(minutes=1 + i % 240)
            pnl = D((i * 7919) % 2001 - 1000) / 100
            pct = D((i * 104729) % 2001 - 1000) / 1000
            yield "\t".join((
                SYMBOLS[i % len(SYMBOLS)], "LONG" if i % 3 else "SHORT", "LIVE", "42000.5",
                "42010.5", "0.1", "0.01", entry_time.isoformat(), exit_time.isoformat(), str(pnl),
                str(pct), "0.42", "\\N", "\\N", "take_profit", "bench", "\\N", "\\N", "\\N",
                "binance", "1h", "0", "0", "\\N", "\\N", "\\N", "\\N", "\\N",
                str(sessions[i % SESSIONS]), now, now,
            )) + "\n"  # fmt: skip

    def snapshot_lines(first: int, last: int) -> Iterator[str]:
        now = dt.datetime.now(UTC).isoformat()
        for i in range(first, last):
            if i < snapshots:
                when = year_start + dt.timedelta(seconds=span * i / snapshots)
            else:
                when = today + dt.timedelta(seconds=live_span * (i - snapshots) / TODAY_TRADES)
            balance = D(10_000) + D((i * 7919) % 5001 - 2500) / 10
            yield (f"{when.isoformat()}\t{balance}\t{balance}\t{balance - 10_000}\t0\t1\t100\t0"
                   f"\t0\t{balance}\t{sessions[i % SESSIONS]}\t{now}\n")  # fmt: skip

    _copy(raw, "trades", trade_columns, trade_lines, trades + TODAY_TRADES)
    _copy(raw, "account_history", snapshot_columns, snapshot_lines, snapshots + TODAY_TRADES)
    raw.autocommit = True
    with raw.cursor() as cur:  # what autovacuum would have done by now on a live server
        cur.execute("VACUUM ANALYZE")
    raw.autocommit = False
    return sessions


def _copy(raw: Any, table: str, columns: str, lines: Callable[[int, int], Iterator[str]],
          total: int) -> None:  # fmt: skip
    for first in range(0, total, COPY_CHUNK):
        text = "".join(lines(first, min(total, first + COPY_CHUNK)))
        with raw.cursor() as cur:
            cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.StringIO(text))
        raw.commit()


def scale_section(manager: Any, sessions: list[int]) -> list[tuple[str, float, float | None, str]]:
    """(figure, manager ms, reference ms or None, target) rows; raises when a figure differs."""
    from atb.db import connection
    from atb.db.manage import rollups
    from atb.db.manage.metrics import _metrics_statement

    rows: list[tuple[str, float, float | None, str]] = []
    started = time.perf_counter()
    days = manager.refresh_metric_rollups()
    rows.append((f"first rollup build ({days} days, s)", time.perf_counter() - started, None,
                 "info"))  # fmt: skip

    def full_scan(session_id: int | None) -> tuple:
        statement = _metrics_statement(True, session_id is not None, False, False)
        params = {"session": session_id, "start": None, "end": None}
        return connection.run(lambda: tuple(statement.execute(params).fetchone()))

    for label, session_id in (("all-time", None), ("one session", sessions[len(sessions) // 2])):
        scan_started = time.perf_counter()
        expected = full_scan(session_id)
        scan_ms = (time.perf_counter() - scan_started) * 1e3
        figures, _due = connection.run(lambda sid=session_id: rollups.read_metrics(sid))
        if figures != expected:
            raise AssertionError(f"{label}: rollups {figures!r} != full scan {expected!r}")
        samples = _samples(lambda sid=session_id: manager.get_performance_metrics(session_id=sid))
        rows.append((f"get_performance_metrics() {label} (median ms)", samples, scan_ms,
                     f"< {METRICS_LIMIT_MS:g} ms"))  # fmt: skip
    from atb.db.manage.trades import _BY_SYMBOL, _RECENT

    session_id = sessions[0]
    yesterday = dt.datetime.now(UTC) - dt.timedelta(days=1)
    rows.append(("get_trades_by_symbol_and_date(1 day, session) (median ms)", _samples(
        lambda: manager.get_trades_by_symbol_and_date(SYMBOLS[0], yesterday, session_id)),
        None, "< 5 ms"))  # fmt: skip
    by_symbol = {"session": session_id, "symbol": SYMBOLS[0], "start": yesterday}
    rows.append(("  the same on the server (planning + execution, median ms)",
                 _server_ms(_BY_SYMBOL[True], by_symbol), None, "< 5 ms"))  # fmt: skip
    rows.append(("get_recent_trades(50) (median ms)", _samples(
        lambda: manager.get_recent_trades(50, session_id=session_id)), None, "< 2 ms"))  # fmt: skip
    rows.append(("  the same on the server (planning + execution, median ms)",
                 _server_ms(_RECENT[True], {"session": session_id, "limit": 50}), None,
                 "< 2 ms"))  # fmt: skip
    return rows


def _server_ms(statement: Any, params: dict[str, Any]) -> float:
    """The server's own time for the manager's statement: planning plus execution as
    EXPLAIN ANALYZE reports them, median of SCALE_SAMPLES runs."""
    from atb.db import connection

    db = connection.bound_database()
    compiled = statement.compiled(db)
    sql, args = "EXPLAIN (ANALYZE, FORMAT JSON) " + compiled.sql, compiled.params(params)

    def once() -> float:
        plan = connection.run(lambda: db.execute_sql(sql, args).fetchone()[0], transaction=False)
        return float(plan[0]["Planning Time"] + plan[0]["Execution Time"])

    once()
    return statistics.median(once() for _ in range(SCALE_SAMPLES))


def _samples(work: Callable[[], Any]) -> float:
    work()
    timings = []
    for _ in range(SCALE_SAMPLES):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1e3)
    return statistics.median(timings)


def verdict(value: float, target: str) -> str:
    """PASS/MISS of a "< N ms" target; "-" for information."""
    if not target.startswith("< "):
        return "-"
    return "PASS" if value < float(target.split()[1]) else "MISS"
