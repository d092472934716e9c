"""atb through a real PgBouncer (transaction and session pooling, default settings).

The bouncer is started by `make_pgbouncer` (atb.testing) in front of the test server; a missing
`pgbouncer` binary fails these tests with the install hint, it never skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atb.db import connection
from atb.db.errors import DatabaseUnavailable
from atb.db.manager import DatabaseManager
from atb.db.migrate import ADVISORY_LOCK_KEY, available_migrations
from atb.db.pgtools import admin_connect
from atb.db.settings import parse_url
from atb.testing import execute_sql, settings_for_tests

TIMEOUTS = {
    "statement_timeout_ms": 4321,
    "lock_timeout_ms": 1234,
    "idle_in_transaction_timeout_ms": 5678,
}


def advisory_locks(server_db_url: str, granted: bool | None = None) -> int:
    """Advisory locks on atb's migration key, seen by the server itself (not via the bouncer)."""
    key = ADVISORY_LOCK_KEY
    where = f"locktype = 'advisory' AND objid = {key & 0xFFFFFFFF} AND classid = {key >> 32}"
    if granted is not None:
        where += f" AND granted = {str(granted).lower()}"
    return execute_sql(server_db_url, f"SELECT count(*) FROM pg_locks WHERE {where}")[0][0]


def atb_migrate(url: str, *extra: str) -> subprocess.Popen:
    script = Path(sys.executable).with_name("atb")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "ATB_", "RAILWAY"))
    }
    return subprocess.Popen(
        [str(script), "db", "migrate", "--url", url, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_manager_works_through_pgbouncer_with_every_timeout_in_force(
    pool_mode, make_pgbouncer, make_pg_database
):
    server_url = make_pg_database("atb_pgb")
    bouncer = make_pgbouncer(pool_mode, pool_size=1)
    url = bouncer.url(parse_url(server_url).database)
    db = connection.connect(settings=settings_for_tests(url, **TIMEOUTS))
    manager = DatabaseManager(database=db)  # migrates the empty database through the bouncer
    manager.log_event("ENGINE_START", "through pgbouncer")
    assert [e["message"] for e in manager.get_recent_events()] == ["through pgbouncer"]

    expected = {
        "statement_timeout": "4321ms",
        "lock_timeout": "1234ms",
        "idle_in_transaction_session_timeout": "5678ms",
    }
    with db.atomic():
        inside = {name: db.execute_sql(f"SHOW {name}").fetchone()[0] for name in expected}
    alone = {name: db.execute_sql(f"SHOW {name}").fetchone()[0] for name in expected}
    assert inside == expected
    assert alone == expected

    # Nothing stays on the (single) server connection for the bouncer's next client.
    connection.disconnect()
    raw = admin_connect(url)
    try:
        with raw.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "0"
            cur.execute("SELECT count(*) FROM pg_prepared_statements")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            assert cur.fetchone()[0] == 0
    finally:
        raw.close()


def test_two_migrates_at_once_through_transaction_pooling(make_pgbouncer, make_pg_database):
    """One applies, the other waits and finds nothing to do; no lock remains for a third."""
    server_url = make_pg_database("atb_pgb")
    bouncer = make_pgbouncer("transaction", pool_size=3)
    url = bouncer.url(parse_url(server_url).database)

    holder = admin_connect(server_url)  # hold the lock so both migrates really contend
    holder.autocommit = False
    holder.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
    procs = [atb_migrate(url, "--lock-wait", "60") for _ in range(2)]
    try:
        deadline = time.monotonic() + 30
        while advisory_locks(server_url, granted=False) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert advisory_locks(server_url, granted=False) == 2, "both migrates should be waiting"
    finally:
        holder.rollback()
        holder.close()
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("applied 001_initial" in out for out in outputs) == 1, outputs
    assert sum("nothing to migrate" in out for out in outputs) == 1, outputs
    assert advisory_locks(server_url) == 0

    third = atb_migrate(url, "--lock-wait", "5")
    out = third.communicate(timeout=60)[0]
    assert third.returncode == 0 and "nothing to migrate" in out, out
    history = execute_sql(server_url, "SELECT count(*) FROM migratehistory")[0][0]
    assert history == len(available_migrations())
    # migrate's `statement_timeout = 0` did not stay on a pooled server connection.
    assert execute_sql(url, "SHOW statement_timeout") == [("0",)]


def test_lock_wait_gives_up_with_a_clear_message(make_pgbouncer, make_pg_database):
    server_url = make_pg_database("atb_pgb")
    bouncer = make_pgbouncer("transaction")
    holder = admin_connect(server_url)
    holder.autocommit = False
    holder.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
    try:
        proc = atb_migrate(bouncer.url(parse_url(server_url).database), "--lock-wait", "1")
        out = proc.communicate(timeout=60)[0]
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode != 0
    assert "held the migration lock for 1s" in out, out


def test_a_pgbouncer_error_is_reported_as_what_it_is(make_pgbouncer, make_pg_database):
    server_url = make_pg_database("atb_pgb")
    bouncer = make_pgbouncer("transaction")
    url = bouncer.url(parse_url(server_url).database) + "?options=-c%20work_mem%3D64MB"
    db = connection.connect(settings=settings_for_tests(url))
    with pytest.raises(DatabaseUnavailable) as caught:
        connection.run(lambda: db.execute_sql("SELECT 1").fetchone())
    message = str(caught.value)
    assert "unsupported startup parameter: options" in message
    assert "is the server up" not in message


def test_a_full_bouncer_is_reported_as_what_it_is(make_pgbouncer, make_pg_database):
    server_url = make_pg_database("atb_pgb")
    bouncer = make_pgbouncer("transaction", max_client_conn=2)
    url = bouncer.url(parse_url(server_url).database)
    held = [admin_connect(url) for _ in range(2)]
    try:
        db = connection.connect(settings=settings_for_tests(url))
        with pytest.raises(DatabaseUnavailable) as caught:
            connection.run(lambda: db.execute_sql("SELECT 1").fetchone())
    finally:
        for conn in held:
            conn.close()
    message = str(caught.value)
    assert "refused the connection" in message and "max_client_conn" in message
    assert "is the server up" not in message


def test_a_failed_server_login_behind_the_bouncer_is_reported_as_what_it_is(make_pgbouncer):
    """PgBouncer forwards the server's refusal once, then holds new logins while it waits
    server_login_retry (15 s) before trying the server again: neither reads as "server down"."""
    bouncer = make_pgbouncer("transaction")
    db = connection.connect(settings=settings_for_tests(bouncer.url("atb_no_such_database")))
    messages = []
    for _ in range(2):
        with pytest.raises(DatabaseUnavailable) as caught:
            connection.run(lambda: db.execute_sql("SELECT 1").fetchone())
        messages.append(str(caught.value))

    refused, held = messages
    assert "refused the connection" in refused and "does not exist" in refused, refused
    assert "server_login_retry" in held and "PgBouncer" in held, held
    assert not any("is the server up" in m for m in messages)
