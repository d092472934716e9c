"""log_trades on PostgreSQL streams its rows: a generator is read in chunks, each sent with COPY.

What must hold: the rows stored are exactly what log_trade stores for the same arguments (COPY's
text format escaped right), the ids come back in input order, a bad row or a duplicate anywhere
in the stream leaves nothing written, a repeat returns the same ids, and a stream longer than
the statement timeout and the call time bound is not cut off for its length."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal as D

import peewee as pw
import pytest

from atb.db import DuplicateError, ValidationError, connection
from atb.db.manage import bulk
from atb.db.manager import DatabaseManager
from atb.db.models import Trade
from atb.testing import settings_for_tests

T0 = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)
AWKWARD = "tab\there, back\\slash, line\nbreak, cr\r, quote ' \" and é ✓"


@pytest.fixture
def manager(pg_db: pw.PostgresqlDatabase) -> DatabaseManager:
    return DatabaseManager(database=pg_db, apply_migrations=False)


def trade(i: int, **overrides) -> dict:
    row = {
        "symbol": "BTCUSDT", "side": "LONG" if i % 2 else "short", "entry_price": "42000.12345678",
        "exit_price": D("42010.5") + i, "size": "0.1", "entry_time": T0 - dt.timedelta(hours=1),
        "exit_time": T0 + dt.timedelta(seconds=i), "pnl": D(i % 7 - 3) / 3,
        "exit_reason": AWKWARD, "strategy_name": "bulk", "order_id": f"o-{i}",
        "strategy_config": {"text": AWKWARD, "n": D("0.1"), "nested": [1, None, True]},
        "confidence_score": 0.25, "mfe_time": T0, "commission": "0.00000001",
    }  # fmt: skip
    return {**row, **overrides}


def stored(trade_id: int) -> dict:
    row = Trade.select().where(Trade.id == trade_id).dicts().get()
    for key in ("id", "request_id", "created_at", "updated_at", "order_id"):
        row.pop(key)
    return row


def test_streamed_rows_are_stored_exactly_as_log_trade_stores_them(manager):
    single = manager.log_trade(**trade(1, order_id="single"))

    ids = manager.log_trades(trade(i) for i in range(bulk.CHUNK_ROWS * 2 + 7))

    assert len(ids) == bulk.CHUNK_ROWS * 2 + 7 and ids == sorted(ids)
    assert stored(ids[1]) == stored(single)
    assert stored(ids[1])["exit_reason"] == AWKWARD
    assert [t.order_id for t in Trade.select().where(Trade.id.in_(ids[:3])).order_by(Trade.id)] == [
        "o-0", "o-1", "o-2"
    ]  # fmt: skip


def test_a_bad_row_in_a_later_chunk_writes_nothing(manager):
    bad = bulk.CHUNK_ROWS + 3

    def rows():
        for i in range(bulk.CHUNK_ROWS * 2):
            yield trade(i, pnl="NaN") if i == bad else trade(i)

    with pytest.raises(ValidationError, match=rf"rows\[{bad}\]\.pnl"):
        manager.log_trades(rows())

    assert Trade.select().count() == 0


def test_a_duplicate_order_id_across_chunks_writes_nothing(manager):
    rows = [trade(i) for i in range(bulk.CHUNK_ROWS + 10)]
    rows[-1] = trade(0)  # the first row's order id again, in the second chunk

    with pytest.raises(DuplicateError):
        manager.log_trades(iter(rows))

    assert Trade.select().count() == 0


def test_a_repeated_stream_returns_the_first_ids_and_writes_nothing(manager):
    count = bulk.CHUNK_ROWS + 10
    first = manager.log_trades((trade(i) for i in range(count)), request_id="import-7")

    again = manager.log_trades((trade(i) for i in range(count)), request_id="import-7")

    assert again == first and Trade.select().count() == count


def test_a_stream_outlasting_the_statement_timeout_and_the_call_bound_completes(pg_database_url):
    settings = settings_for_tests(pg_database_url, statement_timeout_ms=1_000, call_timeout_s=1)
    db = connection.connect(settings=settings, replace=True)
    try:
        manager = DatabaseManager(database=db, apply_migrations=False)
        count = bulk.CHUNK_ROWS * 12

        def slow_source():  # a feed that takes its time: 12 chunks, 0.15 s apart (> 1.5 s)
            for i in range(count):
                if i % bulk.CHUNK_ROWS == 0:
                    time.sleep(0.15)
                yield trade(i)

        started = time.monotonic()
        ids = manager.log_trades(slow_source())

        assert time.monotonic() - started > 1.5  # longer than both limits, on any machine
        assert len(ids) == count and Trade.select().count() == count
    finally:
        Trade.delete().execute()
        connection.disconnect()
