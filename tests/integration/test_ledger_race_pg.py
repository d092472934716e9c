"""The balance ledger under real concurrency: several processes adjusting one session's balance.

Every adjustment must record as its old balance the new balance of the adjustment committed just
before it, and `get_current_balance` must return the last committed row."""

from __future__ import annotations

import json
import textwrap

import pytest
from helpers import run_python_workers_together

from atb.db import DatabaseManager
from atb.testing import execute_sql

pytestmark = pytest.mark.postgres

PROCESSES = 4
ADJUSTMENTS = 15

WORKER = textwrap.dedent(
    """
    import sys
    from atb.db import DatabaseManager
    url, sid, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    manager = DatabaseManager(url, apply_migrations=False)
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # all start together
    for k in range(count):
        new = 1000 + 1000 * (worker + 1) + k  # unique, so the chain of old -> new is unambiguous
        assert manager.manual_balance_adjustment(new, f"w{worker}-{k}", session_id=sid)
    """
)


def test_concurrent_adjustments_form_one_chain_and_current_is_the_last(pg_database_url, pg_db):
    manager = DatabaseManager(database=pg_db, apply_migrations=False)
    sid = manager.create_trading_session("ledger", "BTCUSDT", "1h", "live", "1000")
    run_python_workers_together(
        WORKER, [[pg_database_url, str(sid), str(i), str(ADJUSTMENTS)] for i in range(PROCESSES)]
    )

    details = [
        json.loads(row[0]) if isinstance(row[0], str) else row[0]
        for row in execute_sql(
            pg_database_url,
            f"SELECT details FROM system_events WHERE session_id = {sid} "
            "AND event_type = 'BALANCE_ADJUSTMENT'",
        )
    ]
    olds = sorted(d["old_balance"] for d in details)
    news = [d["new_balance"] for d in details]
    last = sorted(set(news) - set(olds))
    assert len(details) == PROCESSES * ADJUSTMENTS
    assert len(last) == 1, "the adjustments do not form one chain"
    assert olds == sorted([1000.0, *(n for n in news if n != last[0])])
    assert manager.get_current_balance(sid) == last[0]
