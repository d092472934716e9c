"""Every call has a client-side time bound: a frozen server (SIGSTOP) fails calls, it does not hang them.

The server is a scratch embedded PostgreSQL of this module's own (its own data dir and socket), so
freezing it cannot disturb other tests. It is always resumed (SIGCONT) in a `finally`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from atb.db import connection, local
from atb.db.errors import DatabaseUnavailable
from atb.db.manager import DatabaseManager
from atb.testing import migrate_to_head, settings_for_tests

pytestmark = pytest.mark.postgres

FREEZE_AT_MOST_S = 60  # the call must come back well before the server is resumed


@pytest.fixture(scope="module")
def scratch_server() -> Iterator[local.LocalServer]:
    root = Path(tempfile.mkdtemp(prefix="atb_frozen_"))
    os.chmod(root, 0o755)
    try:
        yield local.start(root)
    finally:
        local.stop(root)
        shutil.rmtree(root, ignore_errors=True)


def server_pids(server: local.LocalServer) -> list[int]:
    """The postmaster and all its children (backends, walwriter, ...)."""
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(server.pid)], capture_output=True, text=True
    ).stdout.split()
    return [server.pid, *(int(pid) for pid in children)]


def in_thread(call, timeout: float) -> tuple[bool, object, float]:
    """Run `call` in a daemon thread; (returned in time, result or exception, seconds taken)."""
    outcome: dict[str, object] = {}

    def target():
        started = time.monotonic()
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["value"] = exc
        outcome["took"] = time.monotonic() - started

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), outcome.get("value"), float(outcome.get("took", timeout))


def test_calls_fail_within_the_bound_while_frozen_and_work_after(scratch_server):
    assert scratch_server.pid
    url = migrate_to_head(scratch_server.url)
    db = connection.connect(settings=settings_for_tests(url, call_timeout_s=2))
    manager = DatabaseManager(database=db)
    manager.log_event("ENGINE_START", "before the freeze")

    pids = server_pids(scratch_server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        returned, value, took = in_thread(
            lambda: manager.log_event("ENGINE_START", "while frozen"), FREEZE_AT_MOST_S / 2
        )
        assert returned, "log_event blocked on a frozen server"
        assert isinstance(value, DatabaseUnavailable), value
        print(f"log_event on a frozen server failed after {took:.1f}s")

        time.sleep(1.2)  # past the pool's ping-after: the checkout ping goes to the server
        returned, value, took = in_thread(connection.ping, FREEZE_AT_MOST_S / 2)
        assert returned, "the checkout ping blocked on a frozen server"
        assert isinstance(value, DatabaseUnavailable), value
        print(f"ping on a frozen server failed after {took:.1f}s")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    manager.log_event("ENGINE_START", "after the thaw")
    messages = [e["message"] for e in manager.get_recent_events()]
    assert "after the thaw" in messages and "before the freeze" in messages
