"""End to end: `atb db ui` served by waitress on real PostgreSQL, driven by a real headless
Chromium (Debian's `chromium` and `chromium-driver`; without them these tests fail with the
install hint). `ATB_UI_SCREENSHOT=docs/ui.png` also saves the README's screenshot."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ui_helpers import PASSWORD, headless_chromium, png_colours, seed

from atb.db import connection
from atb.db.manager import DatabaseManager
from atb.testing import settings_for_tests
from atb.ui.app import create_app
from atb.ui.config import UiConfig

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def live_ui(make_migrated_pg_database):
    """The UI (password on) over a seeded database, on a free port of 127.0.0.1."""
    from waitress import create_server

    url = make_migrated_pg_database("atb_ui_e2e")
    db = connection.connect(settings=settings_for_tests(url), replace=True)
    manager = DatabaseManager(database=db, apply_migrations=False)
    ids = seed(manager, trades=30)
    ids["demo"] = demo_session(manager)
    app = create_app(UiConfig(password=PASSWORD, page_size=20, figures_wait_s=30.0), manager)
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}", ids
    finally:
        server.close()
        thread.join(10)
        connection.disconnect()


def demo_session(manager: DatabaseManager) -> int:
    """A running session with a few hundred snapshots of a wandering equity (for the screenshot)."""
    import datetime as dt
    import math
    from decimal import Decimal

    sid = manager.create_trading_session("ml_adaptive", "BTCUSDT", "15m", "paper", "10000")
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for i in range(360):
        wave = 600 * math.sin(i / 40) + 250 * math.sin(i / 7) + 4 * i
        equity = (Decimal(10000) + Decimal(wave)).quantize(Decimal("0.00000001"))
        manager.log_account_snapshot(
            balance=equity, equity=equity, total_pnl=0, open_positions=1, total_exposure=0,
            drawdown=0, session_id=sid, timestamp=start + dt.timedelta(minutes=15 * i),
        )  # fmt: skip
    for i in range(12):
        pnl = Decimal(37 * (i % 5) - 60) + Decimal("0.12345678")
        manager.log_trade(
            "BTCUSDT", "long" if i % 3 else "short", "64210.5", "64412.25", "0.15",
            start + dt.timedelta(hours=7 * i), start + dt.timedelta(hours=7 * i + 3), pnl,
            "take_profit" if pnl > 0 else "stop_loss", "ml_adaptive", session_id=sid,
        )  # fmt: skip
    manager.log_position(
        "BTCUSDT", "long", entry_price="64980.1", size="0.2", strategy_name="ml_adaptive",
        session_id=sid, entry_time=start + dt.timedelta(days=3),
    )  # fmt: skip
    manager.log_event("MODEL_UPDATE", "model retrained (AUC 0.61)", session_id=sid)
    return sid


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def _is_stale(element) -> bool:
    """True once `element` left the document. Chromedriver reports that either as a stale
    element or, during the page swap, as "Node with given id does not belong to the document"."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def navigate(browser, action) -> None:
    """Run `action` (a click or a submit) and wait until the next page has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(browser, 15).until(lambda _: _is_stale(page))
    WebDriverWait(browser, 15).until(
        lambda b: b.execute_script("return document.readyState") == "complete"
    )


def log_in(browser, base: str) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{base}/sessions")
    assert "/login" in browser.current_url  # refused without a login
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    navigate(browser, browser.find_element(By.ID, "login").click)
    assert browser.current_url.endswith("/sessions"), browser.current_url


def test_an_unauthenticated_browser_gets_the_login_page_not_the_data(live_ui, browser):
    from selenium.webdriver.common.by import By

    base, _ = live_ui
    browser.delete_all_cookies()
    browser.get(f"{base}/sessions")
    assert "/login" in browser.current_url
    assert browser.find_elements(By.ID, "sessions") == []
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/db_info", timeout=10)
    assert refused.value.code == 401


def test_a_wrong_password_is_refused_in_the_browser(live_ui, browser):
    from selenium.webdriver.common.by import By

    base, _ = live_ui
    browser.delete_all_cookies()
    browser.get(f"{base}/login")
    browser.find_element(By.ID, "password").send_keys("not the password")
    navigate(browser, browser.find_element(By.ID, "login").click)
    assert "Wrong password" in browser.find_element(By.ID, "login-error").text


def test_log_in_open_a_session_and_see_the_charts_drawn(live_ui, browser, tmp_path):
    from selenium.webdriver.common.by import By

    base, ids = live_ui
    log_in(browser, base)
    navigate(browser, browser.find_element(By.LINK_TEXT, str(ids["running"])).click)
    assert browser.current_url.endswith(f"/sessions/{ids['running']}")
    chart = browser.find_element(By.ID, "equity-chart")
    points = chart.find_element(By.CSS_SELECTOR, "polyline.equity").get_attribute("points")
    assert len(points.split()) == 7 and chart.get_attribute("data-points") == "7"
    assert chart.size["width"] > 300 and chart.size["height"] > 100
    assert png_colours(chart.screenshot_as_png) > 8  # not blank: band, line, axes, labels
    drawdown = browser.find_element(By.ID, "drawdown-chart")
    assert png_colours(drawdown.screenshot_as_png) > 8
    rows = browser.find_elements(By.CSS_SELECTOR, "#trades-table tbody tr")
    assert len(rows) == 10  # one page of the session's 30 trades
    browser.get(f"{base}/sessions/{ids['demo']}")
    demo = browser.find_element(By.ID, "equity-chart")
    assert demo.get_attribute("data-points") == "360"
    shot = Path(os.environ.get("ATB_UI_SCREENSHOT") or tmp_path / "ui.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shot))
    assert png_colours(shot.read_bytes()) > 8


def test_the_next_page_and_a_sort_link_work(live_ui, browser):
    from selenium.webdriver.common.by import By

    base, ids = live_ui
    log_in(browser, base)
    browser.get(f"{base}/sessions/{ids['running']}")
    first = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#trades-table tbody tr")]
    navigate(browser, browser.find_element(By.CSS_SELECTOR, "a[href*='t_after=']").click)
    second = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#trades-table tbody tr")]
    assert len(second) == 10 and not set(first) & set(second)
    navigate(browser, browser.find_element(By.LINK_TEXT, "P&L").click)
    pnls = [
        r.find_elements(By.TAG_NAME, "td")[8].text
        for r in browser.find_elements(By.CSS_SELECTOR, "#trades-table tbody tr")
    ]
    assert pnls[0] == "12.34567891"  # P&L, highest first


def test_the_event_filters_work(live_ui, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, _ = live_ui
    log_in(browser, base)
    browser.get(f"{base}/events")
    assert "heartbeat" in browser.page_source
    Select(browser.find_element(By.ID, "severity")).select_by_value("error")
    navigate(browser, browser.find_element(By.ID, "filter").click)
    WebDriverWait(browser, 10).until(lambda b: "severity=error" in b.current_url)
    messages = [r.text for r in browser.find_elements(By.CSS_SELECTOR, ".events-table tbody tr")]
    assert len(messages) == 1 and "exchange timeout" in messages[0]
    Select(browser.find_element(By.ID, "severity")).select_by_value("")
    Select(browser.find_element(By.ID, "type")).select_by_value("WARNING")
    navigate(browser, browser.find_element(By.ID, "filter").click)
    WebDriverWait(browser, 10).until(lambda b: "type=WARNING" in b.current_url)
    messages = [r.text for r in browser.find_elements(By.CSS_SELECTOR, ".events-table tbody tr")]
    assert len(messages) == 1 and "slippage" in messages[0]


def test_a_post_without_the_csrf_token_is_refused(live_ui, browser):
    from selenium.webdriver.common.by import By

    base, _ = live_ui
    log_in(browser, base)
    # A form like one another site would post: same session cookie, no CSRF token.
    navigate(
        browser,
        lambda: browser.execute_script(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/logout';"
            "document.body.appendChild(f); f.submit();"
        ),
    )
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("400")
    browser.get(f"{base}/sessions")
    assert browser.current_url.endswith("/sessions")  # still logged in
    navigate(
        browser, browser.find_element(By.CSS_SELECTOR, "form.logout button").click
    )  # the real form has it
    assert "/login" in browser.current_url
    browser.get(f"{base}/sessions")
    assert "/login" in browser.current_url


def test_health_answers_without_a_login(live_ui):
    import json

    base, _ = live_ui
    with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
        body = json.loads(response.read())
    assert response.status == 200 and body["ok"] is True


def test_the_cli_serves_on_the_port_railway_gives_it(pg_database_url):
    import json
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "ATB_UI_PASSWORD": PASSWORD}
    command = [sys.executable, "-m", "atb", "db", "ui", "--url", pg_database_url]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, body = time.monotonic() + 30, None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    body = json.loads(r.read())
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                time.sleep(0.2)
        assert body is not None and body["ok"] is True
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0].decode()
    assert f"atb UI on http://127.0.0.1:{port} (password required)" in output
    assert "atb UI stopped" in output and process.returncode == 0
    assert PASSWORD not in output


def test_the_ui_starts_without_its_database_and_health_says_503():
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port, dead = sock.getsockname()[1], sock.getsockname()[1] + 1
    url = f"postgresql://atb:hunter2secret@127.0.0.1:{dead}/atb"
    command = [sys.executable, "-m", "atb", "db", "ui", "--url", url, "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "ATB_UI_PASSWORD"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and status is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10)
                status = 200
            except urllib.error.HTTPError as exc:
                status = exc.code
                body = exc.read().decode()
            except OSError:
                assert process.poll() is None
                time.sleep(0.2)
        assert status == 503 and "hunter2" not in body
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0].decode()
    assert "warning: cannot reach" in output and "/health answers 503" in output
    assert "hunter2" not in output
