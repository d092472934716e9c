"""One binding per process: a second manager never silently moves the first one's writes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atb.db import DatabaseManager, connection
from atb.db.errors import ConfigurationError
from atb.testing import execute_sql

pytestmark = pytest.mark.postgres


def _sessions(url: str) -> list[str]:
    return [row[0] for row in execute_sql(url, "SELECT strategy_name FROM trading_sessions")]


def _start(manager: DatabaseManager, name: str) -> int:
    return manager.create_trading_session(name, "BTCUSDT", "1h", "PAPER", 1000)


@pytest.fixture
def two_urls(make_migrated_pg_database: Callable[..., str]) -> tuple[str, str]:
    return make_migrated_pg_database("atb_bind_a"), make_migrated_pg_database("atb_bind_b")


def test_a_manager_for_a_second_database_is_refused_and_the_first_keeps_its_own(two_urls):
    url_a, url_b = two_urls
    a = DatabaseManager(url_a)

    with pytest.raises(ConfigurationError, match="already bound.*replace=True"):
        DatabaseManager(url_b)
    _start(a, "written_by_a")

    assert _sessions(url_a) == ["written_by_a"]
    assert _sessions(url_b) == []


def test_replacing_makes_the_old_manager_refuse_instead_of_writing_elsewhere(two_urls):
    url_a, url_b = two_urls
    a = DatabaseManager(url_a)
    b = DatabaseManager(url_b, replace=True)

    with pytest.raises(ConfigurationError, match="no longer bound"):
        _start(a, "written_by_a")
    with pytest.raises(ConfigurationError, match="no longer bound"):
        with a.get_session():
            pass
    _start(b, "written_by_b")

    assert _sessions(url_a) == []
    assert _sessions(url_b) == ["written_by_b"]
    a.close()  # closing a replaced manager stays harmless
    assert b.test_connection()


def test_managers_on_the_same_database_share_one_pool(two_urls):
    url_a, _ = two_urls
    first = DatabaseManager(url_a)
    second = DatabaseManager(url_a)

    assert first.database is second.database
    _start(first, "one")
    _start(second, "two")
    assert sorted(_sessions(url_a)) == ["one", "two"]


def test_a_manager_refuses_to_run_after_disconnect(two_urls):
    url_a, _ = two_urls
    manager = DatabaseManager(url_a)
    connection.disconnect()

    with pytest.raises(ConfigurationError, match="no longer bound"):
        manager.get_recent_trades()
