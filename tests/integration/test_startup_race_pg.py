"""Several processes starting at once on an empty database: all wait for the one that migrates."""

from __future__ import annotations

import os
import subprocess
import sys
import time

STARTER = """
import sys
from atb.db.manager import DatabaseManager
manager = DatabaseManager(sys.argv[1])
manager.log_event("ENGINE_START", "started")
print("ok")
"""


def test_four_processes_80ms_apart_on_an_empty_database_all_start(make_pg_database):
    url = make_pg_database("atb_race")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "ATB_", "RAILWAY"))
    }
    procs = []
    for _ in range(4):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", STARTER, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        )
        time.sleep(0.08)
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
