"""Which statements get the SET LOCAL timeouts prefix: all but those that cannot run in a
transaction block, judged by their leading keywords only."""

import pytest

from atb.db.connection import _NON_TRANSACTIONAL


@pytest.mark.parametrize(
    "sql",
    [
        "VACUUM ANALYZE trades",
        "  create database x",
        "CREATE INDEX CONCURRENTLY ix ON trades (symbol)",
        "CREATE UNIQUE INDEX CONCURRENTLY ix ON trades (symbol)",
        "DROP INDEX CONCURRENTLY ix",
        "REINDEX TABLE CONCURRENTLY trades",
        "CREATE TABLESPACE fast LOCATION '/ssd'",
        "ALTER DATABASE atb SET TABLESPACE fast",
        "BEGIN",
        "COMMIT",
        "PREPARE TRANSACTION 'x'",
    ],
)
def test_statements_that_cannot_run_in_a_transaction_are_sent_as_they_are(sql):
    assert _NON_TRANSACTIONAL.match(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM trades WHERE exit_reason = 'TABLESPACE'",
        "SELECT 'CONCURRENTLY' AS word",
        "UPDATE positions SET notes = 'VACUUM later' WHERE id = 1",
        "INSERT INTO system_events (message) VALUES ('BEGIN')",
        "SELECT endpoint FROM t",  # starts like END, is not END
        "CREATE INDEX ix ON trades (symbol)",
    ],
)
def test_ordinary_statements_keep_their_timeouts(sql):
    assert not _NON_TRANSACTIONAL.match(sql)
