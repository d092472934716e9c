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


class Worker:
    """One thread that runs calls handed to it, so the calls reuse the connection it already holds
    (a fresh connection would be bounded by connect_timeout alone and prove nothing)."""

    def __init__(self):
        import queue

        self.calls: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            call = self.calls.get()
            started = time.monotonic()
            try:
                value = call()
            except BaseException as exc:  # noqa: BLE001 - handed back to the test
                value = exc
            self.results.put((value, time.monotonic() - started))

    def run(self, call, timeout: float) -> tuple[bool, object, float]:
        """(returned within `timeout`, result or exception, seconds taken)."""
        import queue

        self.calls.put(call)
        try:
            value, took = self.results.get(timeout=timeout)
        except queue.Empty:
            return False, None, timeout
        return True, value, took


def test_calls_fail_within_the_bound_while_frozen_and_work_after(scratch_server):
    assert scratch_server.pid
    url = migrate_to_head(scratch_server.url)
    db = connection.connect(settings=settings_for_tests(url, call_timeout_s=2))
    manager = DatabaseManager(database=db)
    worker = Worker()
    returned, value, _ = worker.run(lambda: manager.log_event("ENGINE_START", "before"), 30)
    assert returned and not isinstance(value, BaseException), value

    pids = server_pids(scratch_server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        returned, value, took = worker.run(
            lambda: manager.log_event("ENGINE_START", "while frozen"), FREEZE_AT_MOST_S / 2
        )
        assert returned, "log_event blocked on a frozen server"
        assert isinstance(value, DatabaseUnavailable), value
        print(f"log_event on a frozen server failed after {took:.1f}s")

        returned, value, _ = worker.run(lambda: manager.log_event("ENGINE_START", "again"), 30)
        assert returned
        time.sleep(1.2)  # past the pool's ping-after: the checkout ping goes to the server
        returned, value, took = worker.run(connection.ping, FREEZE_AT_MOST_S / 2)
        assert returned, "the checkout ping blocked on a frozen server"
        assert isinstance(value, DatabaseUnavailable), value
        print(f"ping on a frozen server failed after {took:.1f}s")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    returned, value, _ = worker.run(lambda: manager.log_event("ENGINE_START", "after"), 30)
    assert returned and not isinstance(value, BaseException), value
    manager.log_event("ENGINE_START", "after, main thread")
    messages = [e["message"] for e in manager.get_recent_events()]
    assert {"before", "after", "after, main thread"} <= set(messages)
