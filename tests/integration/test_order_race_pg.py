"""Out-of-order fill reports from several processes: the order keeps its largest fill, with
that report's price and commission, and never moves back to OPEN."""

from __future__ import annotations

import random
import textwrap

import pytest
from helpers import log_position, run_python_workers_together

from atb.db import DatabaseManager
from atb.db.models import Order

pytestmark = pytest.mark.postgres

REPORTS = [(q, 100 + q, q / 10) for q in range(1, 10)]  # (cumulative fill, price, commission)

WORKER = textwrap.dedent(
    """
    import json, sys
    from atb.db import DatabaseManager
    url, order_id, reports = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    manager = DatabaseManager(url, apply_migrations=False)
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()
    for quantity, price, commission in reports:
        manager.update_order_status(order_id, "partially_filled", filled_quantity=quantity,
                                    filled_price=price, commission=str(commission))
        manager.update_order_status(order_id, "open")  # a late OPEN, always stale here
    """
)


def test_reports_in_any_order_from_four_processes_leave_the_largest_fill(pg_database_url, pg_db):
    import json

    manager = DatabaseManager(database=pg_db, apply_migrations=False)
    sid = manager.create_trading_session("orders", "BTCUSDT", "1h", "live", "1000")
    for round_ in range(3):
        order_id = manager.create_order(
            log_position(manager, session_id=sid), "entry", "BTCUSDT", "buy", 10, "orders"
        )
        manager.update_order_status(order_id, "partially_filled", filled_quantity=0.5)
        shuffled = random.Random(round_).sample(REPORTS, len(REPORTS))
        shares = [shuffled[i::4] for i in range(4)]
        run_python_workers_together(
            WORKER, [[pg_database_url, str(order_id), json.dumps(share)] for share in shares]
        )

        stored = Order.get_by_id(order_id)
        assert stored.status.value == "PARTIALLY_FILLED"  # never moved back to OPEN
        assert (stored.filled_quantity, stored.average_fill_price) == (9, 109)
        assert str(stored.commission) == "0.90000000"
