"""Shared by the UI tests: a small, known trading history built through the manager's API, and
an app over it (`from ui_helpers import ...`; tests/ is on sys.path)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from atb.db.manager import DatabaseManager
from atb.ui.app import create_app
from atb.ui.config import UiConfig

PASSWORD = "correct horse battery"
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
# An equity path with a 20 % drawdown from 12,000 to 9,600, then a recovery.
EQUITY = ["10000", "11000", "12000", "10800", "9600", "10500", "12500.12345678"]


def seed(manager: DatabaseManager, trades: int = 7) -> dict[str, int]:
    """Two sessions: an ended one (totals stored) and a running one with snapshots, trades,
    an open and a closed position with orders, and events of several severities."""
    done = manager.create_trading_session("mean_revert", "ETHUSDT", "4h", "backtest", 5000)
    manager.log_trade(
        "ETHUSDT", "long", "3000", "3100", "1", T0 - dt.timedelta(days=3),
        T0 - dt.timedelta(days=2), "100", "tp", "mean_revert", session_id=done,
    )  # fmt: skip
    manager.end_trading_session(done)
    sid = manager.create_trading_session("ml_basic", "BTCUSDT", "1h", "paper", "10000")
    for i, equity in enumerate(EQUITY):
        manager.log_account_snapshot(
            balance=equity, equity=equity, total_pnl=0, open_positions=1, total_exposure=0,
            drawdown=0, session_id=sid, timestamp=T0 + dt.timedelta(hours=i),
        )  # fmt: skip
    for i in range(trades):
        pnl = Decimal("12.34567891") if i % 2 == 0 else Decimal("-5.00000001")
        manager.log_trade(
            "BTCUSDT", "long", "64000.5", "64123.00000001", "0.1", T0 + dt.timedelta(hours=i),
            T0 + dt.timedelta(hours=i, minutes=30), pnl, f"exit{i}", "ml_basic", session_id=sid,
        )  # fmt: skip
    closed = manager.log_position(
        "BTCUSDT", "long", entry_price="63000", size="0.2", strategy_name="ml_basic",
        session_id=sid, entry_time=T0,
    )  # fmt: skip
    manager.close_position(closed, exit_price="64000")
    opened = manager.log_position(
        "BTCUSDT", "short", entry_price="65000.25", size="0.05", strategy_name="ml_basic",
        session_id=sid, entry_time=T0 - dt.timedelta(days=1),
    )  # fmt: skip
    manager.create_order(opened, "ENTRY", "BTCUSDT", "short", "0.05", "ml_basic", session_id=sid)
    manager.log_event("ERROR", "exchange timeout", severity="error", session_id=sid)
    manager.log_event("WARNING", "slippage above 1%", severity="warning", session_id=sid)
    manager.log_event("TEST", "heartbeat", severity="info")
    return {"ended": done, "running": sid, "open": opened, "closed": closed}


def make_app(manager: DatabaseManager, **config):
    """The UI app over `manager`; `password=PASSWORD` turns the login on. Figures of running
    sessions are waited for (a loaded test machine must not see "computing")."""
    return create_app(UiConfig(**{"figures_wait_s": 30.0, **config}), manager)


def log_in(client, password: str = PASSWORD):
    """GET the login form (for its CSRF token), then POST the password."""
    import re

    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post(
        "/login", data={"csrf_token": token, "password": password, "next": "/sessions"}
    )


# ---- a real browser -------------------------------------------------------------------------

CHROMIUM_INSTALL_HINT = "install Chromium and its driver for the browser tests: apt-get install chromium chromium-driver"


def chromium_binaries() -> tuple[str, str]:
    """(chromium, chromedriver) from the Debian packages; fails the test (never skips) with the
    install hint when either is missing."""
    import os
    import shutil

    import pytest

    def find(names: tuple[str, ...], paths: tuple[str, ...]) -> str | None:
        for name in names:
            if found := shutil.which(name):
                return found
        return next((p for p in paths if os.access(p, os.X_OK)), None)

    browser = find(
        ("chromium", "chromium-browser"), ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
    )
    driver = find(("chromedriver",), ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"))
    if not browser or not driver:
        pytest.fail(CHROMIUM_INSTALL_HINT, pytrace=False)
    return browser, driver


def headless_chromium(width: int = 1280, height: int = 1400):
    """A Selenium driver for the system Chromium (no browser download, no Selenium Manager)."""
    import os

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    if os.geteuid() == 0:  # Chromium's sandbox refuses to run as root
        options.add_argument("--no-sandbox")
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def png_colours(png: bytes) -> int:
    """How many distinct byte values the image's pixel data holds (1-2 for a blank image)."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    data, pos = b"", 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(data)))
