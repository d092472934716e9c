"""atb's own client CPU per call, the part of a single-row write that is not the driver's or
the server's: the section of scripts/bench_manager.py that the shared host's noise cannot move.

The pool's connections are reopened with a cursor that sends nothing (every execute returns at
once, as if the server had answered with id 1 and one row changed), so a call's process CPU
time is validation, statement binding, the pool, the retry and time-bound machinery and
peewee's layers, and nothing else. The wall-clock ratios against raw psycopg2 depend on the
round trip of the moment; this figure does not, so a regression in atb's own code shows here
first. Printed for information: the targets are the ratios.
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
from collections.abc import Callable
from typing import Any

import psycopg2.extensions

D = decimal.Decimal
CALLS = 2_000


class _SilentCursor(psycopg2.extensions.cursor):
    """Sends nothing; answers every statement with one row `(1,)` and one row changed."""

    def execute(self, query: Any, vars: Any = None) -> None:
        return None

    def fetchone(self) -> tuple[int]:
        return (1,)

    def fetchall(self) -> list[tuple[int]]:
        return [(1,)]

    @property
    def rowcount(self) -> int:  # type: ignore[override]
        return 1


def overhead_section(
    manager: Any, db: Any, session_id: int
) -> list[tuple[str, float, float]]:
    """(call, CPU µs per call back to back, CPU µs per call after 1 ms idle) for the inserts
    whose reply is just an id.

    The second figure is what a call costs in real use: a call that follows a wait (for the
    server, or for the next tick) finds the CPU's caches cold, and on a shared virtual machine
    the same Python code then takes two to three times as long. It is the figure that adds to
    the round trip in the single-row ratios."""
    now = dt.datetime.now(dt.UTC)
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("log_trade", lambda: manager.log_trade(
            "BTCUSDT", "long", D("42000.5"), D("42100.25"), D("0.1"),
            now - dt.timedelta(minutes=30), now, D("10.5"), "take_profit", "bench",
            session_id=session_id)),
        ("log_account_snapshot", lambda: manager.log_account_snapshot(
            D("10000"), D("10010"), D("10"), D("1"), 1, D("100"), D("0.5"),
            session_id=session_id)),
        ("log_event", lambda: manager.log_event(
            "TEST", "bench event", details={"i": 1}, session_id=session_id)),
        ("log_strategy_execution", lambda: manager.log_strategy_execution(
            "bench", "BTCUSDT", "entry", "buy", D("42000"), session_id=session_id)),
    ]  # fmt: skip
    db.close_all()
    db.connect_params["cursor_factory"] = _SilentCursor
    try:
        return [(name, _cpu_us(call), _cpu_us_after_idle(call)) for name, call in calls]
    finally:
        db.connect_params.pop("cursor_factory", None)
        db.close_all()


def _cpu_us(call: Callable[[], Any]) -> float:
    for _ in range(200):
        call()
    samples = []
    for _ in range(7):
        started = time.process_time()
        for _ in range(CALLS // 7):
            call()
        samples.append((time.process_time() - started) / (CALLS // 7) * 1e6)
    return min(samples)


def _cpu_us_after_idle(call: Callable[[], Any]) -> float:
    """CPU µs of one call made after 1 ms of sleep (best of 5 blocks of 200 calls)."""
    samples = []
    for _ in range(5):
        spent = 0.0
        for _ in range(200):
            time.sleep(0.001)
            started = time.process_time()
            call()
            spent += time.process_time() - started
        samples.append(spent / 200 * 1e6)
    return min(samples)
