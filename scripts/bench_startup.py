"""The startup and pool section of scripts/bench_manager.py (issue targets 6 and 7).

- import: `from atb.db import DatabaseManager` in fresh interpreters (bytecode compiled, as an
  installed package has it), median milliseconds, beside importing only peewee and psycopg2
  (the floor no atb change can go below); target < 100 ms.
- idle: the statements a `log_event` sends after its connection sat idle for longer than the
  pool's old ping threshold, against one right after another call (counted by a cursor that
  the pooled connections are opened with); target: the same number, no `SELECT 1` ping.
- checkout: `connect()` + `close()` of a pooled connection while the pool has free ones,
  median µs; target < 50 µs.
- waiting: 4x more threads than connections, each holding its connection for a few ms (asleep):
  the process's CPU µs per checkout, against as many threads as connections (nobody waits).
  Waiting adds one sleep and one wake-up per checkout; waiters that spin or are all woken on
  every return grow with the queue (a shared notify_all cost ~3 ms per checkout, 40x; target
  <= 3x).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2.extensions

ROOT = Path(__file__).resolve().parents[1]
IMPORT_RUNS = 15
IMPORT_LIMIT_MS = 100.0
CHECKOUT_LIMIT_US = 50.0
WAIT_CPU_RATIO = 3.0
IDLE_S = 1.5  # longer than the 1 s after which peewee's pool used to ping on checkout

# (label, ours, reference or None, target text, verdict)
Row = tuple[str, float, float | None, str, str]


def startup_section(manager: Any, db: Any) -> list[Row]:
    """Every figure of this section, in the order printed."""
    ours, floor = import_ms()
    rows: list[Row] = [
        ("from atb.db import DatabaseManager (median ms)", ours, floor,
         f"< {IMPORT_LIMIT_MS:g} ms", _below(ours, IMPORT_LIMIT_MS)),
    ]  # fmt: skip
    busy, idle = idle_statements(manager, db)
    rows.append((f"statements of a log_event after {IDLE_S:g} s idle", idle, busy,
                 "= busy", "PASS" if idle == busy else "MISS"))  # fmt: skip
    checkout = checkout_us(db)
    rows.append(("checkout + return, pool not full (median µs)", checkout, None,
                 f"< {CHECKOUT_LIMIT_US:g} µs", _below(checkout, CHECKOUT_LIMIT_US)))  # fmt: skip
    size = db._max_connections
    alone, queued = waiting_cpu_us(db, size), waiting_cpu_us(db, 4 * size)
    rows.append((f"CPU µs per checkout, {4 * size} threads on {size} connections", queued, alone,
                 f"<= {WAIT_CPU_RATIO:g}x", _below(queued, WAIT_CPU_RATIO * alone + 1e-9)))  # fmt: skip
    return rows


def _below(value: float, limit: float) -> str:
    return "PASS" if value < limit else "MISS"


def import_ms() -> tuple[float, float]:
    """Median ms of (atb's import, peewee + psycopg2 alone), fresh interpreters taking turns.
    Bytecode goes to a scratch cache (PYTHONPYCACHEPREFIX), written by one unmeasured run, so
    the figure is what an installed package pays, whatever PYTHONDONTWRITEBYTECODE says here."""
    ours = "from atb.db import DatabaseManager"
    floor = "import peewee, playhouse.pool, psycopg2.extras"
    with tempfile.TemporaryDirectory(prefix="atb-bench-pycache-") as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache, "PYTHONPATH": str(ROOT)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        _import_once(floor, env)
        _import_once(ours, env)
        samples: tuple[list[float], list[float]] = ([], [])
        for _ in range(IMPORT_RUNS):
            samples[0].append(_import_once(ours, env))
            samples[1].append(_import_once(floor, env))
    return statistics.median(samples[0]), statistics.median(samples[1])


def _import_once(statement: str, env: dict[str, str]) -> float:
    code = (
        "import time; started = time.perf_counter(); "
        f"{statement}; print((time.perf_counter() - started) * 1000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    return float(out.stdout.strip())


class _CountingCursor(psycopg2.extensions.cursor):
    """Counts every statement sent through any cursor of the pooled connections (peewee's
    checkout ping included, which execute_sql never sees)."""

    sent = 0

    def execute(self, query: Any, vars: Any = None) -> Any:
        type(self).sent += 1
        return super().execute(query, vars)


def idle_statements(manager: Any, db: Any) -> tuple[float, float]:
    """Statements per log_event: (right after another call, after IDLE_S idle)."""
    session_id = manager.create_trading_session("idle", "BTCUSDT", "1h", "paper", 10_000)
    db.close_all()
    db.connect_params["cursor_factory"] = _CountingCursor
    try:

        def sent_by_one_call() -> int:
            before = _CountingCursor.sent
            manager.log_event("TEST", "idle bench", session_id=session_id)
            return _CountingCursor.sent - before

        sent_by_one_call()  # opens the pooled connection
        busy = [sent_by_one_call() for _ in range(3)]
        idle = []
        for _ in range(2):
            time.sleep(IDLE_S)
            idle.append(sent_by_one_call())
    finally:
        db.connect_params.pop("cursor_factory", None)
        db.close_all()
    return max(busy), max(idle)


def checkout_us(db: Any, calls: int = 5_000) -> float:
    """Median µs of one connect() + close() on a warm pool with free connections."""

    def once() -> None:
        db.connect()
        db.close()

    return _median_us(once, calls)


def _median_us(work: Callable[[], None], calls: int) -> float:
    for _ in range(200):
        work()
    samples = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(calls):
            work()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


def waiting_cpu_us(db: Any, threads: int, hold_s: float = 0.005, checkouts: int = 1_280) -> float:
    """CPU µs per checkout while `threads` threads take turns holding a connection for `hold_s`
    (sleeping, not working): the best of three runs."""
    rounds = max(1, checkouts // threads)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(rounds):
                db.connect()
                try:
                    time.sleep(hold_s)
                finally:
                    db.close()
        except BaseException as exc:  # reported below: a failed run must not pass
            errors.append(exc)

    best = float("inf")
    for _ in range(3):
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        cpu = time.process_time()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        best = min(best, (time.process_time() - cpu) / (threads * rounds) * 1e6)
    if errors:
        raise RuntimeError(f"waiting for the pool failed: {errors[0]!r}")
    return best
