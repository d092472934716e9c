"""Log a short, realistic paper-trading session through DatabaseManager and print what was stored.

Copy it as a starting point for your own scripts. The database is DATABASE_URL (or --url), else
the local embedded PostgreSQL server in development:

    DATABASE_URL=postgresql://user@localhost/atb python scripts/demo_session.py
    python scripts/demo_session.py --url postgresql://user@localhost/atb --quiet

Every call here is part of the public API (README.md, "DatabaseManager methods"); nothing is cleaned up
afterwards, so the session stays in the database for dashboards to show.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import uuid
from decimal import Decimal
from typing import Any

from atb.db import DatabaseError, DatabaseManager, redact_url

STRATEGY = "ml_basic"
UTC = dt.UTC


def log_demo_session(db: DatabaseManager) -> int:
    """Write one session: positions, fills, partial exit, scale-in, trades, events, predictions."""
    run = uuid.uuid4().hex[:8]  # exchange order ids are unique database-wide
    start_balance = Decimal("10000")
    session_id = db.create_trading_session(
        STRATEGY,
        "BTCUSDT",
        "1h",
        mode="paper",
        initial_balance=start_balance,
        strategy_config={"stop_loss_pct": 0.02, "take_profit_pct": 0.04, "model": "lstm-v3"},
        session_name=f"demo-{run}",
    )
    db.update_balance(start_balance, "session_start")
    db.log_account_snapshot(start_balance, start_balance, 0, 0, 0, 0)

    # The strategy looks at the market; indicators may hold NaN and Decimal (stored as JSON).
    db.log_strategy_execution(
        STRATEGY,
        "BTCUSDT",
        "entry",
        "opened_long",
        42000,
        timeframe="1h",
        signal_strength=0.72,
        confidence_score=0.81,
        indicators={"rsi": 31.4, "atr": Decimal("412.5"), "ema_200": float("nan")},
        ml_predictions={"next_close": 42650.0, "direction": 1},
        position_size=0.1,
        reasons=["rsi_oversold", "model_up"],
    )
    btc = db.log_position(
        "BTCUSDT",
        "long",
        42000,
        0.1,
        STRATEGY,
        entry_order_id=f"bin-{run}-1",
        stop_loss=41160,
        take_profit=43680,
        quantity=Decimal("0.0238"),
        confidence_score=0.81,
    )
    db.log_strategy_execution(
        STRATEGY,
        "ETHUSDT",
        "entry",
        "opened_short",
        2500,
        timeframe="1h",
        indicators={"rsi": 71.2, "macd": Decimal("-3.25"), "volume_z": float("nan")},
        reasons=["rsi_overbought"],
    )
    eth = db.log_position(
        "ETHUSDT", "sell", 2500, 0.05, STRATEGY, entry_order_id=f"bin-{run}-2", quantity="0.2"
    )

    # Prices move; the engine marks both positions to market.
    db.update_position(btc, current_price=42350)
    db.update_position(eth, current_price=2480)
    db.log_account_snapshot(10008.33, 10012.33, 0, 2, 1500, 0)

    # Take half of the BTC position off: the exit order fills in two parts.
    exit_order = db.create_order(
        btc,
        "partial_exit",
        "BTCUSDT",
        "sell",
        Decimal("0.0119"),
        STRATEGY,
        price=42600,
        exchange_order_id=f"bin-{run}-3",
        target_level=1,
        size_fraction=0.5,
    )
    db.update_order_status(
        exit_order, "partially_filled", filled_quantity="0.006", filled_price=42600
    )
    db.update_order_status(
        exit_order, "FILLED", filled_quantity="0.0119", filled_price=42605, commission="0.51"
    )
    db.apply_partial_exit_update(btc, 0.5, 42605, target_level=1, pnl="7.20")

    # Add to the ETH short after a small bounce.
    scale_order = db.create_order(
        eth, "scale_in", "ETHUSDT", "sell", "0.05", STRATEGY, price=2490, size_fraction=0.25
    )
    db.update_order_status(scale_order, "filled", filled_quantity="0.05", filled_price=2490)
    db.apply_scale_in_update(eth, 0.25, 2490, threshold_level=1)

    db.update_position(btc, current_price=43100, mfe=0.026, mfe_price=43100)
    db.update_position(eth, current_price=2530, mae=-0.012, mae_price=2530)
    db.log_event(
        "alert",
        "ETHUSDT moved against the short by 1.2%",
        severity="warning",
        component="risk_manager",
        details={"symbol": "ETHUSDT", "move_pct": Decimal("1.2"), "threshold_pct": 1.0},
    )

    # An ML prediction is cached and served once.
    db.cache_prediction(
        f"lstm-v3:BTCUSDT:1h:{run}",
        "lstm-v3",
        features_hash=uuid.uuid4().hex,
        config_hash="lstm-v3-default",
        predicted_price=43250.5,
        confidence=0.77,
        direction=1,
        ttl_seconds=300,
    )
    db.get_cached_prediction(f"lstm-v3:BTCUSDT:1h:{run}")

    # Close both positions and record the round trips.
    now = dt.datetime.now(UTC)
    trades = (
        (btc, "BTCUSDT", "LONG", 42000, 43100, Decimal("13.09"), "take_profit", 5),
        (eth, "ETHUSDT", "SHORT", 2500, 2530, Decimal("-7.50"), "stop_loss", 4),
    )
    for position, symbol, side, entry, exit_, pnl, reason, hours in trades:
        db.close_position(position, exit_price=exit_, pnl=pnl, exit_reason=reason)
        db.log_trade(
            symbol,
            side,
            entry,
            exit_,
            0.1 if symbol == "BTCUSDT" else 0.05,
            now - dt.timedelta(hours=hours),
            now,
            pnl,
            reason,
            STRATEGY,
            source="paper",
            order_id=f"bin-{run}-close-{position}",
            position_id=position,
        )
    final_balance = start_balance + sum(t[5] for t in trades)
    db.log_account_snapshot(final_balance, final_balance, final_balance - start_balance, 0, 0, 0.07)
    db.update_balance(final_balance, "trade_pnl")
    db.end_trading_session(final_balance=final_balance)
    return session_id


def _money(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.2f}"


def print_summary(db: DatabaseManager, session_id: int) -> None:
    """Read the session back from the database and print it."""
    session = db.get_trading_session(session_id) or {}
    print(f"Session #{session_id} {session.get('session_name')} ({session.get('mode')})")
    print(
        f"  balance {_money(session.get('initial_balance'))} -> "
        f"{_money(session.get('final_balance'))}, pnl {_money(session.get('total_pnl'))}, "
        f"trades {session.get('total_trades')}, win rate {_money(session.get('win_rate'))}%, "
        f"max drawdown {_money(session.get('max_drawdown'))}%"
    )
    print("Trades:")
    for trade in db.get_recent_trades(session_id=session_id):
        side = getattr(trade["side"], "value", trade["side"])
        print(
            f"  #{trade['id']} {trade['symbol']:<8} {side:<5} {_money(trade['entry_price'])} -> "
            f"{_money(trade['exit_price'])}  pnl {_money(trade['pnl'])} "
            f"({_money(trade['pnl_percent'])}%)  {trade.get('exit_reason') or ''}"
        )
    metrics = db.get_performance_metrics(session_id=session_id)
    print("Performance:")
    for key, value in metrics.items():
        shown = value if isinstance(value, int) else f"{value:,.4f}"
        print(f"  {key:<26} {shown}")
    print("Recent events:")
    for event in db.get_recent_events(limit=5, session_id=session_id):
        print(
            f"  {event['timestamp']:%H:%M:%S} {event['severity']:<8} {event['event_type']:<18} "
            f"{event['message']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", help="PostgreSQL URL (default: DATABASE_URL, else the local server)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the new session id")
    args = parser.parse_args(argv)
    try:
        db = DatabaseManager(args.url)
        session_id = log_demo_session(db)
        if args.quiet:
            print(session_id)
        else:
            print_summary(db, session_id)
        db.close()
    except DatabaseError as exc:
        target = f" ({redact_url(args.url)})" if args.url else ""
        print(f"demo_session: {exc}{target}", file=sys.stderr)
        return 1
    return 0


def _run() -> int:
    """main(), ending quietly when the reader of stdout goes away (`demo_session.py | head`)."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(_run())
