"""Plain helpers shared by the test modules: `from helpers import ...` (tests/ is on sys.path
through tests/conftest.py). Fixtures live in the conftest.py files and in atb.testing.

Naming: `make_*` writes rows straight through the models (the arrangement of a test), `log_*`
goes through the DatabaseManager (usually the behaviour under test).
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import subprocess
import sys
from collections.abc import Mapping
from decimal import Decimal as D
from pathlib import Path

import peewee as pw
from click.testing import CliRunner, Result

from atb.cli import cli
from atb.db import fields
from atb.db.enums import OrderStatus, OrderType, PartialOperationType
from atb.db.manager import DatabaseManager
from atb.db.models import (
    MODELS_BY_TABLE,
    Order,
    PartialTrade,
    PerformanceMetrics,
    Position,
    PredictionCache,
    Trade,
    TradingSession,
)

UTC = dt.UTC

# --- the command line -------------------------------------------------------------------------

# Variables that would point a command at another database or make it think it runs in
# production or inside Railway; unset for every command a test runs.
CLEAN_ENV: dict[str, str | None] = {
    "DATABASE_URL": None,
    "DATABASE_PUBLIC_URL": None,
    "ATB_ENV": None,
    "RAILWAY_ENVIRONMENT_NAME": None,
    "RAILWAY_ENVIRONMENT": None,
    "RAILWAY_DEPLOYMENT_ID": None,
    "RAILWAY_REPLICA_ID": None,
    "ATB_INSIDE_RAILWAY": None,
}

INSERT_LIVE_SESSION_SQL = (
    "INSERT INTO trading_sessions (start_time, mode, initial_balance, strategy_name, symbol,"
    " timeframe) VALUES (now(), 'LIVE', 100, 's', 'BTC', '1h')"
)


def atb_db(
    *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None
) -> Result:
    """`atb db *args` in-process (CliRunner), in a clean environment plus `env` (None unsets)."""
    return CliRunner().invoke(cli, ["db", *args], input=input, env={**CLEAN_ENV, **(env or {})})


def atb_subprocess(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 120,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess:
    """`atb *args` as a real subprocess (in `cwd`), in a clean environment plus `env` (None unsets)."""
    script = Path(sys.executable).with_name("atb")
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from atb.cli import main; main()"]
    )
    overrides = {**CLEAN_ENV, **(env or {})}
    environment = {k: v for k, v in os.environ.items() if k not in overrides}
    environment.update({k: v for k, v in overrides.items() if v is not None})
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def scalar(db: pw.Database, sql: str, *params):
    """The first column of the first row of a raw query on `db`."""
    return db.execute_sql(sql, params).fetchone()[0]


# --- rows for model and DatabaseManager tests -------------------------------------------------


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def make_session(**overrides) -> TradingSession:
    """A TradingSession row: an active paper session, ml_basic on BTCUSDT 1h, 1000 to start."""
    values = dict(
        start_time=dt.datetime(2024, 1, 1, tzinfo=UTC),
        mode="PAPER",
        initial_balance=D("1000"),
        strategy_name="ml_basic",
        symbol="BTCUSDT",
        timeframe="1h",
    )
    values.update(overrides)
    return TradingSession.create(**values)


def new_session_id(
    *,
    initial_balance: str = "1000",
    ended_days_ago: float | None = None,
    active: bool | None = None,
) -> int:
    """The id of a session started a day ago (before its end): still running, or ended
    `ended_days_ago` days ago. `active` overrides the is_active flag that follows from that."""
    ended = ended_days_ago is not None
    return make_session(
        start_time=now() - dt.timedelta(days=(ended_days_ago or 0) + 1),
        end_time=now() - dt.timedelta(days=ended_days_ago) if ended else None,
        is_active=(not ended) if active is None else active,
        initial_balance=D(initial_balance),
    ).id


def make_trade(
    session_id: int | None,
    pnl: str,
    pnl_percent: str,
    *,
    hours: float = 1.0,
    exit_time: dt.datetime | None = None,
    position_id: int | None = None,
) -> int:
    """A closed trade of `hours`, exited at `exit_time` (five minutes ago by default)."""
    exit_time = exit_time or now() - dt.timedelta(minutes=5)
    return Trade.create(
        symbol="BTCUSDT",
        side="LONG",
        entry_price=D("100"),
        exit_price=D("101"),
        size=D("0.1"),
        entry_time=exit_time - dt.timedelta(hours=hours),
        exit_time=exit_time,
        pnl=D(pnl),
        pnl_percent=D(pnl_percent),
        strategy_name="ml_basic",
        session=session_id,
        position=position_id,
    ).id


def make_position(session_id: int) -> int:
    return Position.create(
        symbol="BTCUSDT",
        side="LONG",
        entry_price=D("100"),
        size=D("0.1"),
        entry_time=now(),
        strategy_name="ml_basic",
        session=session_id,
    ).id


# The tables that hold rows belonging to a session, in the order cleanup deletes them.
SESSION_TABLES = (
    "strategy_executions",
    "trades",
    "partial_trades",
    "orders",
    "positions",
    "account_history",
    "account_balances",
    "system_events",
    "performance_metrics",
    "dynamic_performance_metrics",
    "risk_adjustments",
    "optimization_cycles",
    "trading_sessions",
)


def populate_session(manager: DatabaseManager, session_id: int) -> None:
    """One row in every table of SESSION_TABLES, belonging to the session."""
    position_id = make_position(session_id)
    Order.create(
        position=position_id,
        order_type=OrderType.ENTRY,
        status=OrderStatus.FILLED,
        internal_order_id=f"entry-{position_id}",
        symbol="BTCUSDT",
        side="LONG",
        quantity=D("1"),
        strategy_name="ml_basic",
        session=session_id,
    )
    PartialTrade.create(
        position=position_id,
        operation_type=PartialOperationType.PARTIAL_EXIT,
        size=D("0.5"),
        price=D("105"),
    )
    trade_id = make_trade(session_id, "10", "1", position_id=position_id)
    manager.log_strategy_execution(
        "ml_basic", "BTCUSDT", "entry", "opened_long", 100, session_id=session_id, trade_id=trade_id
    )
    manager.log_account_snapshot(1000, 1000, 0, 1, 100, 0, session_id=session_id)
    manager.update_balance(1010, "trade_pnl", session_id=session_id)
    manager.log_event("TEST", "hello", session_id=session_id)
    PerformanceMetrics.create(
        period="daily", period_start=now(), period_end=now(), session=session_id
    )
    manager.log_dynamic_performance_metrics(session_id, rolling_win_rate=0.5)
    manager.log_risk_adjustment(
        session_id, "drawdown", "dd > 5%", "position_size_factor", 1, 0.5, 0.5
    )
    manager.record_optimization_cycle(
        "ml_basic",
        "BTCUSDT",
        "1h",
        {"sharpe": 1},
        None,
        None,
        None,
        "reject",
        session_id=session_id,
    )


def session_row_counts(session_id: int) -> dict[str, int]:
    """Per table of SESSION_TABLES: how many rows belong to the session."""
    positions = Position.select(Position.id).where(Position.session == session_id)
    counts = {}
    for table in SESSION_TABLES:
        model = MODELS_BY_TABLE[table]
        if model is TradingSession:
            query = model.select().where(model.id == session_id)
        elif model is PartialTrade:
            query = model.select().where(model.position.in_(positions))
        else:
            query = model.select().where(model.session == session_id)
        counts[table] = query.count()
    return counts


T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def log_trade(manager: DatabaseManager, **overrides) -> int:
    """`manager.log_trade` of a winning BTCUSDT long that exited at T0, with `overrides`."""
    args = {
        "symbol": "BTCUSDT", "side": "LONG", "entry_price": "100", "exit_price": "110",
        "size": "0.1", "entry_time": T0 - dt.timedelta(hours=1), "exit_time": T0, "pnl": "10",
        "exit_reason": "take_profit", "strategy_name": "ml_basic",
    }  # fmt: skip
    return manager.log_trade(**{**args, **overrides})


def log_position(manager: DatabaseManager, **overrides) -> int:
    """`manager.log_position` of an open BTCUSDT long, with `overrides`."""
    args = {"symbol": "BTCUSDT", "side": "long", "entry_price": "100", "size": "0.1",
            "strategy_name": "ml_basic", "quantity": "0.01"}  # fmt: skip
    return manager.log_position(**{**args, **overrides})


def cache_prediction(
    manager: DatabaseManager,
    key: str = "k1",
    *,
    model: str = "lstm",
    config: str = "c1",
    **overrides,
) -> int:
    """`manager.cache_prediction` of an up prediction at 43000.5 with confidence 0.8."""
    values = dict(
        features_hash="f" * 64,
        config_hash=config,
        predicted_price=43000.5,
        confidence=0.8,
        direction=1,
    )
    values.update(overrides)
    return manager.cache_prediction(key, model, **values)


def expire_prediction(key: str) -> None:
    """Move a cached prediction's expiry into the past."""
    PredictionCache.update(expires_at=now() - dt.timedelta(seconds=1)).where(
        PredictionCache.cache_key == key
    ).execute()


# --- makemigrations: a small stand-in for the atb models --------------------------------------


def stand_in_models(version: int) -> list[type[pw.Model]]:
    """A parent with an enum column and a child referencing it ON DELETE CASCADE.

    Version 1, or version 2: wider name, enum gains BLUE, two new columns, index made unique.
    """
    members = ["RED", "GREEN"] + (["BLUE"] if version >= 2 else [])
    color_enum = enum.StrEnum("Color", [(m, m) for m in members])
    proxy = pw.DatabaseProxy()

    class Base(pw.Model):
        class Meta:
            database = proxy
            legacy_table_names = False

    class Parent(Base):
        name = pw.CharField(max_length=20 if version == 1 else 40)
        color = fields.EnumField(color_enum, server_default="RED")
        created_at = fields.UTCDateTimeField(server_now=True, null=True)
        if version >= 2:
            note = pw.TextField(null=True)
            hits = fields.CountField()

        class Meta:
            table_name = "parents"

    class Child(Base):
        parent = pw.ForeignKeyField(Parent, on_delete="CASCADE", backref="children", index=False)
        amount = fields.MoneyField()
        data = fields.JsonField(null=True)

        class Meta:
            table_name = "children"
            indexes = ((("parent_id", "amount"), version >= 2),)

    return [Parent, Child]


def rows(db: pw.Database, table: str) -> list[tuple]:
    """Every row of a table, in id order."""
    return db.execute_sql(f'SELECT * FROM "{table}" ORDER BY id').fetchall()


def run_python_workers_together(script: str, argvs: list[list[str]], timeout: float = 120) -> None:
    """Run `python -c script ARGS...` once per argv, released at the same moment: each worker
    prints "ready" when set up and waits for a line on stdin. Asserts every one exits 0."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for argv in argvs
    ]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        _, err = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, err
