"""Read replicas: a real streaming standby (pg_basebackup -R) of a private embedded server.

Dashboard reads go to the replica while it is reachable and fresh; writes, the engine's own reads
and everything inside `get_session()` stay on the primary; a lagging or unreachable replica is
skipped with one warning, and `atb db verify` reports its health.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee as pw
import pytest
from click.testing import CliRunner
from helpers import log_trade

from atb.cli import cli
from atb.db import DatabaseManager, connection, local
from atb.testing import execute_sql, migrate_to_head

pytestmark = pytest.mark.postgres

DATABASE = "atb_replica_test"


def _tool(name: str, *args: str, owner, timeout: float = 120) -> None:
    code, output = local._run([str(local.bin_dir() / name), *args], owner=owner, timeout=timeout)
    assert code == 0, f"{name} failed ({code}): {output[-2000:]}"


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def servers(private_server) -> Iterator[tuple[str, str]]:
    """(primary URL, replica URL): a migrated database on the private server, streamed to a
    standby built from the same binaries and listening on its own socket."""
    root, server = private_server
    primary_url = local.create_database(server, DATABASE)
    migrate_to_head(primary_url)
    owner = local._data_owner(server.data_dir)
    standby = Path(root) / "standby"
    standby.mkdir(mode=0o700)
    if owner is not None:
        import os

        os.chown(standby, owner.uid, owner.gid)
    _tool("pg_basebackup", "-D", str(standby), "-R", "-X", "stream", "-c", "fast",
          "-h", str(server.socket_dir), "-p", str(server.port), "-U", local.SUPERUSER,
          owner=owner)  # fmt: skip
    port = server.port + 1
    options = f"-h '' -k {shlex.quote(str(server.socket_dir))} -p {port} -c listen_addresses=''"
    _tool("pg_ctl", "start", "-D", str(standby), "-w", "-t", "60", "-l", str(standby / "log"),
          "-o", options, owner=owner)  # fmt: skip
    replica = local.LocalServer(standby, server.socket_dir, port, None, server.version)
    replica_url = replica.url_for(DATABASE)
    try:
        _wait_for(lambda: _streaming(replica_url), "the standby streams from the primary")
        yield primary_url, replica_url
    finally:
        _tool("pg_ctl", "stop", "-D", str(standby), "-m", "immediate", "-w", owner=owner)


def _streaming(replica_url: str) -> bool:
    try:
        rows = execute_sql(replica_url, "SELECT status FROM pg_stat_wal_receiver")
    except Exception:
        return False
    return rows == [("streaming",)]


def _caught_up(primary_url: str, replica_url: str) -> Callable[[], bool]:
    (target,) = execute_sql(primary_url, "SELECT pg_current_wal_lsn()::text")[0]

    def check() -> bool:
        sql = f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
        return execute_sql(replica_url, sql) == [(True,)]

    return check


class _Counter:
    """Counts the statements a Peewee database object sends (the server is real)."""

    def __init__(self, db: pw.Database, monkeypatch: pytest.MonkeyPatch):
        self.count = 0
        original = db.execute_sql

        def counting(sql, params=None, *args, **kwargs):
            self.count += 1
            return original(sql, params, *args, **kwargs)

        monkeypatch.setattr(db, "execute_sql", counting)

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.fixture
def manager_with_replica(servers, monkeypatch) -> Callable[..., DatabaseManager]:
    primary_url, replica_url = servers

    def make(replica: str = replica_url, max_lag_s: int = 30) -> DatabaseManager:
        monkeypatch.setenv("DATABASE_REPLICA_URL", replica)
        monkeypatch.setenv("ATB_DB_REPLICA_MAX_LAG_S", str(max_lag_s))
        manager = DatabaseManager(primary_url, apply_migrations=False)
        return manager

    return make


DASHBOARD_READS: dict[str, Callable[[DatabaseManager, int], object]] = {
    "get_recent_trades": lambda m, sid: m.get_recent_trades(10, session_id=sid),
    "get_trades_by_symbol_and_date": lambda m, sid: m.get_trades_by_symbol_and_date(
        "BTCUSDT", "2020-01-01T00:00:00Z", session_id=sid
    ),
    "get_performance_metrics": lambda m, sid: m.get_performance_metrics(session_id=sid),
    "get_recent_events": lambda m, sid: m.get_recent_events(10, session_id=sid),
    "get_balance_history": lambda m, sid: m.get_balance_history(sid),
    "fetch_optimization_cycles": lambda m, sid: m.fetch_optimization_cycles(5),
    "execute_query": lambda m, sid: m.execute_query("SELECT count(*) AS n FROM trades"),
}

ENGINE_READS: dict[str, Callable[[DatabaseManager, int], object]] = {
    "get_active_positions": lambda m, sid: m.get_active_positions(sid),
    "get_pending_orders": lambda m, sid: m.get_pending_orders(sid),
    "get_current_balance": lambda m, sid: m.get_current_balance(sid),
    "get_cached_prediction": lambda m, sid: m.get_cached_prediction("no-such-key"),
}


def test_dashboard_reads_are_served_by_the_replica_and_the_rest_by_the_primary(
    servers, manager_with_replica, monkeypatch
):
    primary_url, replica_url = servers
    manager = manager_with_replica()
    sid = manager.create_trading_session("replica", "BTCUSDT", "1h", "PAPER", 1000)
    trade_id = log_trade(manager, session_id=sid)
    manager.refresh_metric_rollups()  # as a nightly job would: a read then has none due
    _wait_for(_caught_up(primary_url, replica_url), "the standby replayed the trade")
    primary = _Counter(connection.database.primary, monkeypatch)
    replica = _Counter(connection._replica.db, monkeypatch)

    for name, read in DASHBOARD_READS.items():
        read(manager, sid)
        assert (primary.taken(), replica.taken() > 0) == (0, True), name
    for name, read in ENGINE_READS.items():
        read(manager, sid)
        assert (primary.taken() > 0, replica.taken()) == (True, 0), name
    log_trade(manager, session_id=sid)
    assert (primary.taken() > 0, replica.taken()) == (True, 0), "a write"
    with manager.get_session():
        inside = manager.get_recent_trades(10, session_id=sid)
    assert (primary.taken() > 0, replica.taken()) == (True, 0), "inside get_session()"
    assert len(inside) == 2  # the read inside the transaction sees the primary's latest write
    assert [t["id"] for t in manager.get_recent_trades(10, session_id=sid)][-1] == trade_id


def test_a_lagging_replica_is_skipped_with_one_warning_until_it_catches_up(
    servers, manager_with_replica, caplog
):
    primary_url, replica_url = servers
    manager = manager_with_replica(max_lag_s=1)
    sid = manager.create_trading_session("lagging", "BTCUSDT", "1h", "PAPER", 1000)
    _wait_for(_caught_up(primary_url, replica_url), "the standby replayed the session")
    execute_sql(replica_url, "SELECT pg_wal_replay_pause()")
    try:
        log_trade(manager, session_id=sid)
        time.sleep(1.5)  # the replica's last replayed commit is now older than the limit
        with caplog.at_level(logging.WARNING, logger="atb.db"):
            first = manager.get_recent_trades(10, session_id=sid)
            second = manager.get_recent_trades(10, session_id=sid)
        assert len(first) == len(second) == 1  # fresh data: the primary answered
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "lags" in warnings[0] and "primary" in warnings[0]
        assert not connection.replica_health().usable
    finally:
        execute_sql(replica_url, "SELECT pg_wal_replay_resume()")
    _wait_for(_caught_up(primary_url, replica_url), "the standby caught up again")
    _wait_for(lambda: connection.replica_health().usable, "the replica is usable again", 10)
    assert len(manager.get_recent_trades(10, session_id=sid)) == 1


def test_an_unreachable_replica_falls_back_to_the_primary_with_one_warning(
    servers, manager_with_replica, caplog
):
    _, replica_url = servers
    nowhere = replica_url.replace(f"port={_port(replica_url)}", f"port={_port(replica_url) + 7}")
    manager = manager_with_replica(replica=nowhere)
    sid = manager.create_trading_session("unreachable", "BTCUSDT", "1h", "PAPER", 1000)
    log_trade(manager, session_id=sid)

    with caplog.at_level(logging.WARNING, logger="atb.db"):
        for _ in range(3):
            assert len(manager.get_recent_trades(10, session_id=sid)) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0]


def _port(url: str) -> int:
    return int(url.rsplit("port=", 1)[1].split("&")[0])


def test_verify_reports_the_replica_and_its_lag(servers, monkeypatch):
    primary_url, replica_url = servers
    monkeypatch.setenv("DATABASE_REPLICA_URL", replica_url)
    runner = CliRunner()

    healthy = runner.invoke(cli, ["db", "verify", "--json", "--url", primary_url])
    text = runner.invoke(cli, ["db", "verify", "--url", primary_url])
    monkeypatch.setenv("DATABASE_REPLICA_URL", primary_url)  # the primary is no standby
    wrong = runner.invoke(cli, ["db", "verify", "--url", primary_url])

    assert healthy.exit_code == 0, healthy.output
    replica = json.loads(healthy.output)["replica"]
    assert replica["standby"] is True and replica["serving_reads"] is True
    assert 0 <= replica["lag_s"] < 30 and replica["max_lag_s"] == 30
    assert text.exit_code == 0 and "serving dashboard reads" in text.output
    assert wrong.exit_code == 1 and "not a standby" in wrong.output
