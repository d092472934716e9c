"""`atb db ui` through Flask's test client, on SQLite and on real PostgreSQL (`backend`)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from decimal import Decimal

import pytest
from click.testing import CliRunner
from peewee import PostgresqlDatabase
from ui_helpers import PASSWORD, T0, log_in, make_app, seed

from atb.cli import cli
from atb.db.errors import DatabaseUnavailable
from atb.db.models import Trade
from atb.ui import queries, security
from atb.ui.app import number
from atb.ui.config import UiConfig


@pytest.fixture
def seeded(backend):
    return backend, seed(backend)


def html(response) -> str:
    return response.get_data(as_text=True)


# ---- pages ----------------------------------------------------------------------------------


def test_sessions_are_listed_newest_first_with_their_figures(seeded):
    manager, ids = seeded
    page = html(make_app(manager).test_client().get("/sessions"))
    assert page.index(f">{ids['running']}</a>") < page.index(f">{ids['ended']}</a>")
    assert "mean_revert" in page and "ml_basic" in page
    # the ended session's stored totals, exactly as stored (numeric(18,8) on PostgreSQL)
    stored = queries.session_row(ids["ended"])
    ended = page[page.index(f">{ids['ended']}</a>") :].split("</tr>")[0]
    assert f">{number(stored.total_pnl)}<" in ended and stored.total_pnl == 100
    if isinstance(manager.database, PostgresqlDatabase):
        assert ">100.00000000<" in ended
    # the running one is computed now: 7 trades, 4 winners
    row = page[page.index(f">{ids['running']}</a>") :].split("</tr>")[0]
    assert ">7<" in row and "57.14285714" in row


def test_a_session_page_draws_the_equity_and_drawdown_charts(seeded):
    manager, ids = seeded
    page = html(make_app(manager).test_client().get(f"/sessions/{ids['running']}"))
    equity = re.search(r'<svg[^>]*id="equity-chart"[^>]*data-points="(\d+)"', page)
    assert equity and int(equity.group(1)) == 7
    line = re.search(r'<polyline class="equity" points="([^"]+)"', page).group(1)
    assert len(line.split()) == 7
    assert 'id="drawdown-chart"' in page and "deepest 20.00%" in page
    assert "7 account snapshots in 7 time buckets" in page


def test_numbers_are_shown_exactly_as_stored(seeded):
    manager, ids = seeded
    page = html(make_app(manager).test_client().get(f"/sessions/{ids['running']}"))
    for text in ("64123.00000001", "-5.00000001", "12.34567891"):
        assert text in page, text
    if isinstance(manager.database, PostgresqlDatabase):  # numeric(18,8) keeps its scale
        assert "65000.25000000" in page and "0.05000000" in page
    assert "E-" not in page  # never exponent notation


def test_positions_are_listed_open_first_with_their_orders(seeded):
    manager, ids = seeded
    page = html(make_app(manager).test_client().get(f"/sessions/{ids['running']}"))
    table = page[page.index('id="positions-table"') :]
    assert table.index("<td>OPEN</td>") < table.index("<td>CLOSED</td>")
    assert "ENTRY" in table and "PENDING" in table


def test_the_events_page_filters_by_severity_and_type(seeded):
    manager, _ = seeded
    client = make_app(manager).test_client()
    everything = html(client.get("/events"))
    assert "exchange timeout" in everything and "heartbeat" in everything
    errors = html(client.get("/events?severity=error"))
    assert "exchange timeout" in errors and "heartbeat" not in errors
    warnings = html(client.get("/events?type=WARNING"))
    assert "slippage" in warnings and "exchange timeout" not in warnings
    assert client.get("/events?severity=loud").status_code == 400


def test_a_missing_session_is_a_plain_404(seeded):
    manager, _ = seeded
    response = make_app(manager).test_client().get("/sessions/999999")
    assert response.status_code == 404 and "there is no trading session" in html(response)


def test_pages_load_nothing_from_elsewhere_and_run_no_script(seeded):
    manager, ids = seeded
    client = make_app(manager).test_client()
    for path in ("/sessions", f"/sessions/{ids['running']}", "/events"):
        response = client.get(path)
        page = html(response).replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "<script" not in page and "http://" not in page and "https://" not in page
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]


# ---- paging and sorting ---------------------------------------------------------------------


def test_trade_pages_walk_forward_and_back_over_every_row_once(backend):
    ids = seed(backend, trades=11)
    sid = ids["running"]
    expected = [t.id for t in Trade.select().where(Trade.session == sid).order_by(
        Trade.exit_time.desc(), Trade.id.desc())]  # fmt: skip
    pages, after = [], None
    while True:
        page = queries.trades_page(
            sid, sort=None, direction=None, after=after, before=None, limit=4
        )
        pages.append([row.id for row in page.rows])
        if page.next_after is None:
            break
        after = page.next_after
    assert [i for p in pages for i in p] == expected and len(pages) == 3
    back = queries.trades_page(
        sid, sort=None, direction=None, after=None, before=pages[2][0], limit=4
    )
    assert [row.id for row in back.rows] == pages[1]


def test_trades_sort_by_pnl_ascending_with_ties_broken_by_id(backend):
    sid = seed(backend, trades=6)["running"]
    first = queries.trades_page(sid, sort="pnl", direction="asc", after=None, before=None, limit=2)
    second = queries.trades_page(
        sid, sort="pnl", direction="asc", after=first.next_after, before=None, limit=2
    )
    rows = first.rows + second.rows
    assert [r.pnl for r in rows] == [Decimal("-5.00000001")] * 3 + [Decimal("12.34567891")]
    assert [r.id for r in rows[:3]] == sorted(r.id for r in rows[:3])


def test_the_session_page_links_to_the_next_page_of_trades(backend):
    sid = seed(backend, trades=25)["running"]
    client = make_app(backend, page_size=20).test_client()
    page = html(client.get(f"/sessions/{sid}"))
    after = re.search(r"t_after=(\d+)", page)
    assert after
    following = html(client.get(f"/sessions/{sid}?t_after={after.group(1)}"))
    assert following.count("exit1") >= 1 and "t_before=" in following


def test_the_equity_curve_is_downsampled_in_sql(backend):
    sid = backend.create_trading_session("s", "BTCUSDT", "1m", "paper", 1000)
    for i in range(300):
        backend.log_account_snapshot(
            balance=1000 + i, equity=Decimal(1000 + (i % 37)), total_pnl=0, open_positions=0,
            total_exposure=0, drawdown=0, session_id=sid, timestamp=T0 + dt.timedelta(minutes=i),
        )  # fmt: skip
    result = queries.equity_curve(sid, buckets=20)
    curve = result.buckets
    assert 1 < len(curve) <= 20 and result.snapshots == 300 and not result.sampled
    assert sum(b.count for b in curve) == 300
    assert min(b.low for b in curve) == Decimal(1000) and max(b.high for b in curve) == 1036
    assert curve[-1].last == Decimal(1000 + 299 % 37)


# ---- security -------------------------------------------------------------------------------


@pytest.fixture
def locked(seeded):
    manager, ids = seeded
    return make_app(manager, password=PASSWORD).test_client(), ids


def test_pages_need_a_login_when_a_password_is_set(locked):
    client, _ = locked
    response = client.get("/sessions")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.get("/db_info").status_code == 401


def test_the_right_password_opens_the_pages(locked):
    client, ids = locked
    assert log_in(client).status_code == 302
    assert client.get(f"/sessions/{ids['running']}").status_code == 200


def test_a_wrong_password_is_refused(locked):
    client, _ = locked
    response = log_in(client, "not the password")
    assert response.status_code == 401 and "Wrong password" in html(response)
    assert client.get("/sessions").status_code == 302


def test_a_post_without_the_csrf_token_is_refused(locked):
    client, _ = locked
    assert log_in(client).status_code == 302
    assert client.post("/logout").status_code == 400
    assert client.post("/login", data={"password": PASSWORD}).status_code == 400
    assert client.get("/sessions").status_code == 200  # still logged in


def test_login_attempts_are_rate_limited(locked):
    client, _ = locked
    for _ in range(5):
        assert log_in(client, "guess").status_code == 401
    blocked = log_in(client)  # even the right password, until the window passes
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0


def test_a_session_expires_after_the_idle_time(locked, monkeypatch):
    client, _ = locked
    log_in(client)
    now = security.time.time()
    monkeypatch.setattr(security.time, "time", lambda: now + 31 * 60)
    assert client.get("/sessions").status_code == 302


def test_changing_the_password_ends_existing_sessions(seeded):
    manager, _ = seeded
    key = "k" * 64
    first = make_app(manager, password=PASSWORD, secret_key=key).test_client()
    log_in(first)
    cookie = first.get_cookie("atb_ui_session").value
    second = make_app(manager, password="another password", secret_key=key).test_client()
    second.set_cookie("atb_ui_session", cookie)
    assert second.get("/sessions").status_code == 302


def test_db_info_is_redacted_and_needs_a_login(locked):
    client, _ = locked
    log_in(client)
    info = client.get("/db_info").get_json()
    assert info["backend"] in ("postgresql", "sqlite") and "password" not in str(info).lower()


def test_errors_show_a_reference_never_details(seeded, monkeypatch, caplog):
    manager, _ = seeded

    def boom(**_):
        raise RuntimeError("cannot reach postgresql://atb:hunter2@db.example.com/atb")

    monkeypatch.setattr(queries, "sessions_page", boom)
    with caplog.at_level(logging.ERROR, logger="atb.ui"):
        response = make_app(manager).test_client().get("/sessions")
    page = html(response)
    assert response.status_code == 500
    reference = re.search(r'id="reference">([0-9a-f]{8})<', page).group(1)
    assert "hunter2" not in page and "Traceback" not in page and "postgresql://" not in page
    assert reference in caplog.text and "hunter2" not in caplog.text and "***" in caplog.text


def test_a_database_outage_is_a_503_page(seeded, monkeypatch):
    manager, _ = seeded

    def down(**_):
        raise DatabaseUnavailable("postgresql://atb:hunter2@db/atb is not answering")

    monkeypatch.setattr(queries, "sessions_page", down)
    response = make_app(manager).test_client().get("/sessions")
    assert response.status_code == 503 and "hunter2" not in html(response)


# ---- /health --------------------------------------------------------------------------------


def test_health_is_200_when_reachable_and_at_head_without_login(locked):
    client, _ = locked
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200 and body["ok"] is True
    assert body["database"]["reachable"] is True and body["database"]["latency_ms"] >= 0
    assert body["migrations"]["at_head"] is True


def test_health_is_503_when_a_migration_is_pending(locked, monkeypatch):
    from atb.db import migrate

    client, _ = locked
    state = migrate.MigrationState(applied=("001_initial",), available=("001_initial", "002_x"))
    monkeypatch.setattr(migrate, "migration_state", lambda: state)
    response = client.get("/health")
    assert response.status_code == 503 and response.get_json()["migrations"]["pending"] == 1


def test_health_is_503_when_the_database_is_down(locked, monkeypatch):
    from atb.db import connection

    def down(*_, **__):
        raise DatabaseUnavailable("postgresql://atb:hunter2@db/atb: connection refused")

    client, _ = locked
    monkeypatch.setattr(connection, "ping", down)
    response = client.get("/health")
    assert response.status_code == 503 and "hunter2" not in html(response)
    assert response.get_json()["database"]["reachable"] is False


# ---- start-up guard -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "env", "refused"),
    [
        ("127.0.0.1", {}, False),
        ("::1", {}, False),
        ("localhost", {}, False),
        ("0.0.0.0", {}, True),
        ("192.168.1.5", {}, True),
        ("127.0.0.1", {"RAILWAY_ENVIRONMENT_NAME": "production"}, True),
        ("127.0.0.1", {"RAILWAY_DEPLOYMENT_ID": "d"}, True),
        ("127.0.0.1", {"ATB_ENV": "production"}, True),
        ("0.0.0.0", {"ATB_UI_PASSWORD": PASSWORD}, False),
        ("0.0.0.0", {"ATB_UI_PASSWORD": "short"}, True),
    ],
)
def test_the_ui_refuses_to_start_exposed_without_a_password(host, env, refused):
    problem = UiConfig.from_env(host=host, env=env).startup_problem()
    assert (problem is not None) is refused


def test_port_comes_from_the_environment_as_railway_sets_it():
    assert UiConfig.from_env(env={"PORT": "4321"}).port == 4321
    assert UiConfig.from_env(port=9000, env={"PORT": "4321"}).port == 9000
    assert UiConfig.from_env(env={}).port == 8000


def test_the_cli_refuses_with_one_clear_line(monkeypatch):
    monkeypatch.delenv("ATB_UI_PASSWORD", raising=False)
    result = CliRunner().invoke(cli, ["db", "ui", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: refusing to start:")
    assert "ATB_UI_PASSWORD" in lines[0]


@pytest.mark.postgres
def test_a_long_session_is_sampled_at_both_ends_of_each_bucket(pg_db, monkeypatch):
    from atb.db.manager import DatabaseManager

    manager = DatabaseManager(database=pg_db, apply_migrations=False)
    monkeypatch.setattr(queries, "FULL_RESOLUTION_LIMIT", 100)
    monkeypatch.setattr(queries, "SAMPLE_PER_BUCKET_END", 3)
    sid = manager.create_trading_session("s", "BTCUSDT", "1m", "paper", 1000)
    for i in range(400):
        manager.log_account_snapshot(
            balance=1000, equity=Decimal(1000 + i), total_pnl=0, open_positions=0,
            total_exposure=0, drawdown=0, session_id=sid, timestamp=T0 + dt.timedelta(minutes=i),
        )  # fmt: skip
    result = queries.equity_curve(sid, buckets=10)
    assert result.sampled and result.snapshots == 101 and len(result.buckets) == 10
    assert all(b.count == 6 for b in result.buckets)  # 3 at each end of 40 per bucket
    assert result.buckets[0].first == 1000 and result.buckets[-1].last == 1399
    assert [b.first for b in result.buckets] == [Decimal(1000 + 40 * k) for k in range(10)]


def test_a_session_too_large_for_unindexed_sorts_offers_only_the_indexed_ones(backend, monkeypatch):
    sid = seed(backend, trades=5)["running"]
    monkeypatch.setattr(queries, "UNINDEXED_SORT_LIMIT", 3)
    assert queries.trade_sorts(sid) == ("exit", "entry")
    page = html(make_app(backend).test_client().get(f"/sessions/{sid}?t_sort=pnl"))
    assert 'title="not sortable in a session this large">P&amp;L</th>' in page
    assert re.search(r'<th class="sorted"><a [^>]*>Exit ▼', page)  # fell back to the default


# ---- packaging ------------------------------------------------------------------------------


def test_atb_starts_without_importing_the_ui_extra():
    import subprocess
    import sys

    code = "import sys, atb.cli; print('flask' in sys.modules, 'waitress' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_without_the_extra_the_command_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "atb.ui.server", None)  # import fails as if not installed
    result = CliRunner().invoke(cli, ["db", "ui"])
    assert result.exit_code == 1 and "pip install 'atb[ui]'" in result.output


def test_a_missing_browser_fails_with_the_install_line(monkeypatch):
    import os
    import shutil

    import ui_helpers

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium chromium-driver"):
        ui_helpers.chromium_binaries()


def test_the_wheel_ships_the_templates_and_the_stylesheet(tmp_path):
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(root)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    names = set(zipfile.ZipFile(next(tmp_path.glob("atb-*.whl"))).namelist())
    assets = {
        p.relative_to(root).as_posix()
        for folder in ("templates", "static")
        for p in (root / "atb" / "ui" / folder).iterdir()
    }
    assert assets and assets <= names, assets - names


@pytest.mark.parametrize(
    "target", ["https://evil.example", "//evil.example", "/\t/evil.example", "/\\evil.example"]
)
def test_the_login_never_redirects_off_site(locked, target):
    client, _ = locked
    import re as _re

    page = client.get("/login").get_data(as_text=True)
    token = _re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"csrf_token": token, "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/sessions"


def test_a_slow_running_session_is_shown_as_computing_then_with_its_figures():
    import threading
    import time as _time

    release = threading.Event()

    class SlowManager:
        calls = 0

        def get_performance_metrics(self, period, session_id):
            SlowManager.calls += 1
            release.wait(10)
            return {"total_trades": 3, "total_pnl": 1.5, "win_rate": 50.0, "max_drawdown": 2.0}

    cache = queries.FiguresCache(SlowManager(), wait_s=0.05)
    started = _time.monotonic()
    assert cache.live(7).pending and _time.monotonic() - started < 1
    assert cache.live(7).pending  # still the same computation, not a second one
    release.set()
    deadline = _time.monotonic() + 10
    while cache.live(7).pending and _time.monotonic() < deadline:
        _time.sleep(0.01)
    figures = cache.live(7)
    assert not figures.pending and figures.trades == 3 and SlowManager.calls == 1


def test_position_pages_keep_open_ones_first_across_pages(backend):
    from atb.db.models import Position

    sid = backend.create_trading_session("s", "BTCUSDT", "1h", "paper", 1000)
    for i in range(9):
        pid = backend.log_position(
            "BTCUSDT", "long", entry_price="100", size=str(1 + i % 3), strategy_name="s",
            session_id=sid, entry_time=T0 + dt.timedelta(hours=i),
        )  # fmt: skip
        if i % 3 == 0:
            backend.close_position(pid, exit_price="101")
    expected = [
        p.id
        for p in sorted(
            Position.select().where(Position.session == sid),
            key=lambda p: (p.status != "OPEN", -p.entry_time.timestamp(), -p.id),
        )
    ]
    for sort, direction in ((None, None), ("size", "asc")):
        seen, after = [], None
        while True:
            page = queries.positions_page(
                sid, sort=sort, direction=direction, after=after, before=None, limit=2
            )
            seen += [row.id for row in page.rows]
            if page.next_after is None:
                break
            after = page.next_after
        statuses = [Position.get_by_id(i).status for i in seen]
        assert sorted(seen) == sorted(expected) and len(seen) == 9
        assert statuses == sorted(statuses, key=lambda s: s != "OPEN")  # every open one first
        if sort is None:
            assert seen == expected
