"""Exactly-once writes across real server restarts, with no retry logic in the callers.

The soak: 4 writer processes log trades (with their daily-metrics upsert), events and ledger
rows while the server is restarted (`pg_ctl restart -m fast`). Every call must succeed, every
acknowledged row exist once, nothing be doubled. Then an outage longer than the retry budget:
DatabaseUnavailable within budget + call timeout, and the caller's retry with the same request
id afterwards writes exactly one row."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from atb.db import DatabaseManager, DatabaseUnavailable, connection, local
from atb.db.migrate import apply_pending_migrations
from atb.testing import execute_sql, settings_for_tests

pytestmark = pytest.mark.postgres

WRITERS = 4
RUN_S = 6.0

WORKER = textwrap.dedent(
    """
    import datetime as dt, json, logging, sys, time
    from atb.db import DatabaseManager
    url, sid, worker, run_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    retries = []
    class Count(logging.Handler):
        def emit(self, record):
            if "retrying" in record.getMessage():
                retries.append(1)
    logging.getLogger("atb").addHandler(Count())
    manager = DatabaseManager(url, apply_migrations=False)
    t0 = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)
    acked, errors, slowest, k = [], [], 0.0, 0
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()
    end = time.monotonic() + run_s
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            trade = manager.log_trade("BTCUSDT", "LONG", "100", "110", "0.1", t0, t0, "1",
                                      "tp", "soak", order_id=f"w{worker}-{k}", session_id=sid)
            event = manager.log_event("TEST", f"w{worker}-{k}", request_id=f"ev-{worker}-{k}")
            assert manager.update_balance(1000 + k, "soak", session_id=sid,
                                          request_id=f"bal-{worker}-{k}")
            acked.append([k, trade, event])
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        slowest = max(slowest, time.monotonic() - started)
        k += 1
    print(json.dumps({"acked": acked, "errors": errors, "retries": len(retries),
                      "slowest_s": slowest}))
    """
)


def _figures(label: str, **values) -> None:
    print(f"\n[soak] {label}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def test_writers_see_no_error_and_nothing_is_lost_or_doubled_across_a_restart(private_server):
    root, server = private_server
    connection.connect(settings=settings_for_tests(server.url), replace=True)
    apply_pending_migrations()
    sid = DatabaseManager(
        database=connection.bound_database(), apply_migrations=False
    ).create_trading_session("soak", "BTCUSDT", "1h", "paper", 1000)
    connection.disconnect()

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, server.url, str(sid), str(i), str(RUN_S)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(WRITERS)
    ]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    time.sleep(RUN_S / 3)
    restarted = time.monotonic()
    local.restart(root)
    restart_s = time.monotonic() - restarted
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))

    errors = [e for report in reports for e in report["errors"]]
    acked = {
        (w, k): (trade, event) for w, r in enumerate(reports) for k, trade, event in r["acked"]
    }
    trades = {
        order_id: (count, trade_id)
        for order_id, count, trade_id in execute_sql(
            server.url,
            "SELECT order_id, count(*), min(id) FROM trades WHERE strategy_name = 'soak' "
            "GROUP BY order_id",
        )
    }
    lost = [key for key, (trade, _) in acked.items()
            if trades.get(f"w{key[0]}-{key[1]}", (0, None))[1] != trade]  # fmt: skip
    doubled = [order_id for order_id, (count, _) in trades.items() if count > 1]
    events = execute_sql(server.url, "SELECT count(*) FROM system_events WHERE event_type = 'TEST'")
    ledger = execute_sql(
        server.url, f"SELECT count(*) FROM account_balances WHERE session_id = {sid}"
    )
    connection.connect(settings=settings_for_tests(server.url), replace=True)
    try:  # the daily rows are written off the write path, by a refresh
        DatabaseManager(
            database=connection.bound_database(), apply_migrations=False
        ).refresh_metric_rollups()
    finally:
        connection.disconnect()
    counted = execute_sql(
        server.url, f"SELECT sum(total_trades) FROM performance_metrics WHERE session_id = {sid}"
    )
    _figures(
        "restart", calls=3 * len(acked), errors=len(errors), lost=len(lost), doubled=len(doubled),
        retried_calls=sum(r["retries"] for r in reports), restart_s=f"{restart_s:.2f}",
        slowest_call_s=f"{max(r['slowest_s'] for r in reports):.2f}",
    )  # fmt: skip
    assert errors == []
    assert lost == [] and doubled == []
    assert len(trades) == len(acked) and len(acked) > 100
    assert events[0][0] == len(acked) and ledger[0][0] == len(acked)
    assert counted[0][0] == len(acked)  # the daily metrics counted every trade once


def test_an_outage_longer_than_the_budget_fails_then_the_retry_writes_one_row(private_server):
    root, server = private_server
    budget, call_timeout = 2, 5
    settings = settings_for_tests(server.url, retry_s=budget, call_timeout_s=call_timeout)
    connection.connect(settings=settings, replace=True)
    apply_pending_migrations()
    manager = DatabaseManager(database=connection.bound_database(), apply_migrations=False)
    manager.log_event("TEST", "before")
    local.stop(root)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="gave up after"):
            manager.log_event("TEST", "during", request_id="outage-1")
        waited = time.monotonic() - started
        _figures("outage", budget_s=budget, failed_after_s=f"{waited:.2f}")
        assert budget - 0.5 <= waited <= budget + call_timeout  # it retried, then gave up
    finally:
        local.start(root)
    first = manager.log_event("TEST", "during", request_id="outage-1")
    assert manager.log_event("TEST", "during", request_id="outage-1") == first
    rows = execute_sql(
        server.url, "SELECT count(*) FROM system_events WHERE request_id = 'outage-1'"
    )
    assert rows[0][0] == 1
