"""A transaction's BEGIN rides with its first statement: what reaches the server, counted at the
driver (every query string psycopg2 sends), and that the transaction is still one."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import psycopg2.extensions
import pytest

from atb.db import DatabaseManager
from atb.db.errors import DuplicateError
from atb.db.models import SystemEvent

pytestmark = pytest.mark.postgres


class _Recording(psycopg2.extensions.cursor):
    sent: list[str] = []

    def execute(self, query: Any, vars: Any = None) -> Any:
        _Recording.sent.append(query if isinstance(query, str) else query.decode())
        return super().execute(query, vars)

    def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> Any:
        _Recording.sent.append(sql)
        return super().copy_expert(sql, file, size)


@pytest.fixture
def sent(pg_db) -> Iterator[list[str]]:
    """Every query string sent on the pool's connections while the test body runs."""
    pg_db.close_all()
    pg_db.connect_params["cursor_factory"] = _Recording
    _Recording.sent = []
    try:
        yield _Recording.sent
    finally:
        pg_db.connect_params.pop("cursor_factory", None)
        pg_db.close_all()


@pytest.fixture
def manager(pg_db) -> DatabaseManager:
    return DatabaseManager(database=pg_db, apply_migrations=False)


def test_ending_a_session_sends_its_begin_with_its_first_statement(manager, sent):
    session_id = manager.create_trading_session("s", "BTCUSDT", "1h", "paper", 1000)
    sent.clear()
    assert manager.end_trading_session(session_id) is True
    assert len(sent) == 3, sent  # BEGIN + UPDATE, the ENGINE_STOP insert, COMMIT
    assert sent[0].startswith("BEGIN; SET LOCAL statement_timeout")
    assert "UPDATE" in sent[0]
    assert sent[-1] == "COMMIT"


def test_a_transaction_that_sends_nothing_costs_no_round_trip(manager, pg_db, sent):
    with manager.get_session():
        pass
    with pg_db.atomic():
        pass
    # get_session's check of the connection it checks out, and nothing else
    assert [sql for sql in sent if not sql.endswith("SELECT 1")] == []


def test_a_failed_first_statement_rolls_back_the_transaction(manager, pg_db, sent):
    manager.log_event("TEST", "first", request_id="taken")
    with pytest.raises(DuplicateError):
        with manager.get_session() as db:
            db.execute_sql(
                "INSERT INTO system_events (timestamp, event_type, severity, message, alert_sent,"
                " created_at, request_id) VALUES (now(), 'TEST', 'info', 'x', false, now(), %s)",
                ("taken",),
            )
    assert sent[-1] == "ROLLBACK"
    assert SystemEvent.select().count() == 1
    assert pg_db.connection().get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_a_cursor_taken_directly_inside_a_transaction_is_in_it(manager, pg_db):
    with pytest.raises(RuntimeError):
        with manager.get_session() as db:
            db.cursor().execute(
                "INSERT INTO system_events (timestamp, event_type, severity, message, alert_sent,"
                " created_at) VALUES (now(), 'TEST', 'info', 'direct', false, now())"
            )
            raise RuntimeError("undo it")
    assert SystemEvent.select().count() == 0


def test_a_bulk_copy_after_begin_stays_inside_the_transaction(manager, pg_db, sent):
    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        with pg_db.atomic():
            source = "1\t2024-01-01 00:00:00+00\tTEST\tinfo\tcopied\tf\t2024-01-01 00:00:00+00\n"
            pg_db.copy_from(
                "COPY system_events (id, timestamp, event_type, severity, message, alert_sent,"
                " created_at) FROM STDIN",
                io.StringIO(source),
            )
            raise Stop
    assert sent[0].startswith("BEGIN; SET LOCAL")  # sent on its own, ahead of the COPY
    assert sent[1].startswith("COPY")
    assert SystemEvent.select().count() == 0
