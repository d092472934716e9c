"""Time `atb db adopt` on a legacy database with many trades (issue 9: 1,000,000 in under 5 min).

    .venv/bin/python scripts/bench_adopt.py [TRADES]      # default 1,000,000

Uses TEST_DATABASE_URL's server, else the local embedded one; the scratch database is dropped.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from legacy_data import load_legacy  # noqa: E402

from atb.db import connection  # noqa: E402
from atb.db.admin.adopt import adopt_database, plan_adoption  # noqa: E402
from atb.db.admin.verify import verify_database  # noqa: E402
from atb.testing import create_scratch_database, drop_database, settings_for_tests  # noqa: E402


def server_url() -> str:
    import os

    if os.environ.get("TEST_DATABASE_URL"):
        return os.environ["TEST_DATABASE_URL"]
    from atb.db import local

    return local.start().url_for("postgres")


def main() -> None:
    trades = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    server = server_url()
    url = create_scratch_database(server, "atb_bench_adopt")
    try:
        started = time.perf_counter()
        load_legacy(url, trades=trades)
        print(
            f"legacy database with {trades:,} trades built in {time.perf_counter() - started:.1f} s"
        )
        db = connection.build_database(settings_for_tests(url))
        try:
            started = time.perf_counter()
            plan = plan_adoption(db)
            print(
                f"plan: {len(plan.changes)} changes, {len(plan.problems)} problems "
                f"in {time.perf_counter() - started:.2f} s"
            )
            result = adopt_database(db)
            print(f"adopt: {result.duration_s:.1f} s ({', '.join(result.applied)})")
            report = verify_database(db)
            print(f"verify: {'ok' if report.ok else report.problems}")
        finally:
            db.close_all()
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    main()
