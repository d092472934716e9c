"""Restart recovery on PostgreSQL: one consistent snapshot, a fixed number of statements."""

from __future__ import annotations

import logging

import peewee as pw
import pytest
from helpers import log_position, log_trade

from atb.db import DatabaseManager
from atb.db.models import AccountBalance

pytestmark = pytest.mark.postgres


@pytest.fixture
def manager(pg_db: pw.PostgresqlDatabase) -> DatabaseManager:
    return DatabaseManager(database=pg_db, apply_migrations=False)


def _statements(caplog, call) -> tuple[object, int]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        result = call()
    return result, sum(1 for r in caplog.records if r.name == "peewee")


def _session_with(manager: DatabaseManager, positions: int, trades: int) -> int:
    sid = manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "live", "10000")
    for _ in range(positions):
        log_position(manager, session_id=sid)
    for _ in range(trades):
        log_trade(manager, session_id=sid)
    manager.log_account_snapshot(10500, 10600, 0, 0, 0, 0, session_id=sid)
    return sid


def test_resume_takes_the_same_statements_whatever_the_session_holds(manager, caplog):
    small = _session_with(manager, positions=1, trades=1)
    large = _session_with(manager, positions=40, trades=120)

    few, few_count = _statements(caplog, lambda: manager.resume_trading_session(small))
    many, many_count = _statements(caplog, lambda: manager.resume_trading_session(large))

    assert (len(few["positions"]), len(many["positions"])) == (1, 40)
    assert all(p["orders"] for p in many["positions"])  # each with its ENTRY order
    assert 0 < few_count == many_count <= 7  # counted (the peewee logger sees every statement)
    assert many["peak_equity"] == max(10600.0, many["balance"]) and few["peak_equity"] >= 10600.0
    assert many["balance_source"] == "trades"


def test_resume_inside_a_callers_transaction_joins_it(manager):
    sid = _session_with(manager, positions=1, trades=0)
    with manager.get_session():
        state = manager.resume_trading_session(sid)
    assert state["session"]["id"] == sid


def test_recover_last_balance_records_the_rebuilt_balance_exactly(manager):
    sid = manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "live", "10000.12345678")
    log_trade(manager, session_id=sid, pnl="0.00000001")
    log_trade(manager, session_id=sid, pnl="-0.12345679")

    assert manager.recover_last_balance(sid) == 10000.0
    (row,) = AccountBalance.select().where(AccountBalance.session == sid)
    assert str(row.total_balance) == "10000.00000000"
    assert row.update_reason == "recovered_from_trades"
    assert manager.recover_last_balance(sid) == 10000.0
    assert AccountBalance.select().where(AccountBalance.session == sid).count() == 1
