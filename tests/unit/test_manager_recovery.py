"""Restart recovery on SQLite: resume_trading_session, get_last_session_id, recover_last_balance.

The same calls run on PostgreSQL (REPEATABLE READ snapshot, statement count) in
tests/integration/test_recovery_pg.py."""

from __future__ import annotations

import datetime as dt
import decimal

from helpers import make_position, make_trade, new_session_id, now

from atb.db.models import AccountBalance

D = decimal.Decimal
UTC = dt.UTC


def _midnight() -> dt.datetime:
    return now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def test_recover_last_balance_returns_the_ledger_as_it_is_even_zero(manager):
    sid = new_session_id()
    make_trade(sid, "50", "5")
    manager.update_balance(0, "wiped out", session_id=sid)

    assert manager.recover_last_balance(sid) == 0.0
    assert AccountBalance.select().count() == 1


def test_recover_last_balance_rebuilds_from_trades_and_records_it_once(manager):
    sid = new_session_id(initial_balance="1000")
    make_trade(sid, "25.5", "2")
    make_trade(sid, "-10.25", "-1")
    manager.log_account_snapshot(5, 5, 0, 0, 0, 0, session_id=sid)  # snapshots are not the ledger

    first = manager.recover_last_balance(sid)
    second = manager.recover_last_balance(sid)

    rows = list(AccountBalance.select())
    assert first == second == 1015.25
    assert [(r.total_balance, r.update_reason) for r in rows] == [
        (D("1015.25"), "recovered_from_trades")
    ]


def test_recover_last_balance_without_trades_is_the_initial_balance(manager):
    assert manager.recover_last_balance(new_session_id(initial_balance="777")) == 777.0


def test_recover_last_balance_of_an_unknown_session_is_none_and_writes_nothing(manager):
    assert manager.recover_last_balance(999) is None
    assert AccountBalance.select().count() == 0


def test_get_last_session_id_skips_running_sessions_unless_asked(manager):
    ended_long_ago = new_session_id(ended_days_ago=3)
    ended_recently = new_session_id(ended_days_ago=1)
    running = new_session_id()

    assert manager.get_last_session_id() == ended_recently
    assert manager.get_last_session_id(include_active=True) == running
    assert ended_long_ago < ended_recently


def test_get_last_session_id_is_none_on_an_empty_database(manager):
    assert manager.get_last_session_id() is None
    assert manager.get_last_session_id(include_active=True) is None


def test_resume_finds_the_newest_active_session_and_everything_it_needs(manager):
    new_session_id(ended_days_ago=1)
    sid = new_session_id(initial_balance="1000")
    position_id = make_position(sid)
    working = manager.create_order(
        position_id=position_id, order_type="ENTRY", symbol="BTCUSDT", side="BUY",
        quantity="1", strategy_name="ml_basic", price="100", session_id=sid,
    )  # fmt: skip
    make_trade(sid, "40", "4", exit_time=_midnight() - dt.timedelta(hours=2))  # yesterday
    make_trade(sid, "-15", "-1.5")  # today
    manager.log_account_snapshot(1100, 1120, 0, 0, 0, 0, session_id=sid)

    state = manager.resume_trading_session()

    assert state["session"]["id"] == sid
    assert [p["id"] for p in state["positions"]] == [position_id]
    assert working in [o["id"] for o in state["orders"]]
    assert state["balance"] == 1025.0 and state["balance_source"] == "trades"
    assert state["day_start_balance"] == 1040.0
    assert state["peak_equity"] == 1120.0
    assert state["day_start"] == _midnight()
    assert manager._current_session_id == sid
    assert AccountBalance.select().count() == 0  # resuming writes nothing


def test_resume_prefers_the_ledger_and_its_last_row_before_today(manager):
    sid = new_session_id(initial_balance="1000")
    AccountBalance.insert_many(
        [
            dict(session=sid, total_balance=D("990"), available_balance=D("990"),
                 last_updated=_midnight() - dt.timedelta(minutes=1)),
            dict(session=sid, total_balance=D("1300"), available_balance=D("1300"),
                 last_updated=_midnight() - dt.timedelta(days=2)),
            dict(session=sid, total_balance=D("1010"), available_balance=D("1010"),
                 last_updated=now()),
        ]
    ).execute()  # fmt: skip

    state = manager.resume_trading_session(sid)

    assert (state["balance"], state["balance_source"]) == (1010.0, "ledger")
    assert state["day_start_balance"] == 990.0
    assert state["peak_equity"] == 1300.0


def test_resume_with_nothing_to_resume_is_none(manager):
    new_session_id(ended_days_ago=1)
    assert manager.resume_trading_session() is None
    assert manager.resume_trading_session(12345) is None
